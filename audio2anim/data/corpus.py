"""The speech corpus folder ("audio2anim-corpus/1"): reading it and writing it safely.

Layout::

    CORPUS/manifest.json    {"format": "audio2anim-corpus/1", "sample_rate": 16000,
                             "utterances": [{"id", "voice", "text", "duration", "phoneset",
                                             "source", "augment", "text_source"}, ...]}
    CORPUS/audio/<id>.wav   16 kHz mono PCM_16
    CORPUS/phones/<id>.tsv  "start<TAB>end<TAB>phone" (seconds), contiguous, covering
                            [0, duration]; silence is "sil"
    CORPUS/params/<id>.npz  captured animation only: names, values [T, n], frame_rate

``phoneset`` is "arpabet" (CMUdict symbols, upper case, stress digits allowed) or "espeak"
(espeak-ng's English mnemonics); ``source`` says where the timings come from ("espeak",
"festival", "flite", "aligned", "livelink"); ``text_source`` says where ``text`` comes from:
"given" (the input's transcript or sentence; the default for an entry without the field) or
"recognized" (speech recognition, `data align` without a transcript for the file).

`CorpusWriter` writes every file to a temporary name and renames it into place, and rewrites
the manifest atomically (temp + ``os.replace``) only after an utterance's files exist, so an
interrupted build always leaves a valid corpus holding the utterances finished so far; running
the build again appends to it.
"""

from __future__ import annotations

import json
import os
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import NamedTuple

import numpy as np

from audio2anim.audio import MODEL_RATE as SAMPLE_RATE

FORMAT = "audio2anim-corpus/1"
PHONESETS = ("arpabet", "espeak")
SOURCES = ("espeak", "festival", "flite", "aligned", "livelink")
TEXT_SOURCES = ("given", "recognized")


class PhoneSegment(NamedTuple):
    """One phone: ``start`` and ``end`` in seconds, ``phone`` a symbol of the utterance's phoneset."""

    start: float
    end: float
    phone: str


@dataclass
class Utterance:
    """One manifest entry."""

    id: str
    voice: str
    text: str
    duration: float
    phoneset: str
    source: str
    augment: dict = field(default_factory=dict)
    text_source: str = "given"


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write ``data`` to a temporary file beside ``path``, then rename it into place."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def format_phones(segments: list[PhoneSegment]) -> str:
    """Phone segments → the ``phones/<id>.tsv`` text."""
    return "".join(f"{s.start:.4f}\t{s.end:.4f}\t{s.phone}\n" for s in segments)


def parse_phones(text: str, where: str = "<phones>") -> list[PhoneSegment]:
    """The ``phones/<id>.tsv`` text → segments; a malformed line is an error naming it."""
    segments = []
    for n, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        parts = line.split("\t")
        if len(parts) != 3:
            raise ValueError(f"{where}:{n}: expected start<TAB>end<TAB>phone, got {line!r}")
        try:
            start, end = float(parts[0]), float(parts[1])
        except ValueError:
            raise ValueError(f"{where}:{n}: start/end are not numbers: {line!r}") from None
        if end < start:
            raise ValueError(f"{where}:{n}: end {end} before start {start}")
        segments.append(PhoneSegment(start, end, parts[2].strip()))
    return segments


def segments_from_ends(
    ends: list[tuple[float, str]], duration: float, silence: set[str]
) -> list[PhoneSegment]:
    """A synthesizer's (end time, phone) list → contiguous upper-case ARPAbet segments covering
    [0, duration]; symbols in ``silence`` become one ``sil`` (runs merged, the tail padded)."""
    segments: list[PhoneSegment] = []
    prev = 0.0
    for end, phone in ends:
        end = min(end, duration)
        if end <= prev:
            continue
        symbol = "sil" if phone.lower() in silence else phone.upper()
        if segments and symbol == "sil" and segments[-1].phone == "sil":
            segments[-1] = PhoneSegment(segments[-1].start, end, "sil")
        else:
            segments.append(PhoneSegment(prev, end, symbol))
        prev = end
    if prev < duration:
        if segments and segments[-1].phone == "sil":
            segments[-1] = PhoneSegment(segments[-1].start, duration, "sil")
        else:
            segments.append(PhoneSegment(prev, duration, "sil"))
    return segments


def check_segments(segments: list[PhoneSegment], duration: float, where: str = "") -> None:
    """Raise if segments do not cover [0, duration] contiguously (1 ms tolerance)."""
    if not segments:
        raise ValueError(f"{where}: no phone segments")
    if abs(segments[0].start) > 1e-3 or abs(segments[-1].end - duration) > 1e-3:
        raise ValueError(
            f"{where}: segments span [{segments[0].start}, {segments[-1].end}], "
            f"audio is [0, {duration:.4f}]"
        )
    for a, b in zip(segments, segments[1:], strict=False):
        if abs(a.end - b.start) > 1e-3:
            raise ValueError(f"{where}: gap or overlap between {a} and {b}")


class Corpus:
    """Read access to a corpus folder."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        manifest_path = self.path / "manifest.json"
        if not manifest_path.exists():
            raise FileNotFoundError(f"{manifest_path}: no corpus manifest here")
        try:
            manifest = json.loads(manifest_path.read_text())
        except json.JSONDecodeError as exc:
            raise ValueError(f"{manifest_path}: not valid JSON ({exc})") from None
        if manifest.get("format") != FORMAT:
            raise ValueError(
                f"{manifest_path}: format is {manifest.get('format')!r}, not {FORMAT!r}"
            )
        self.sample_rate = int(manifest.get("sample_rate", SAMPLE_RATE))
        self.utterances: list[Utterance] = []
        for i, entry in enumerate(manifest.get("utterances", [])):
            try:
                utt = Utterance(
                    id=str(entry["id"]),
                    voice=str(entry["voice"]),
                    text=str(entry.get("text", "")),
                    duration=float(entry["duration"]),
                    phoneset=str(entry["phoneset"]),
                    source=str(entry["source"]),
                    augment=dict(entry.get("augment") or {}),
                    text_source=str(entry.get("text_source", "given")),
                )
            except KeyError as exc:
                raise ValueError(f"{manifest_path}: utterances[{i}] lacks field {exc}") from None
            if utt.phoneset not in PHONESETS:
                raise ValueError(
                    f"{manifest_path}: utterances[{i}].phoneset {utt.phoneset!r} not in {PHONESETS}"
                )
            if utt.text_source not in TEXT_SOURCES:
                raise ValueError(
                    f"{manifest_path}: utterances[{i}].text_source {utt.text_source!r} "
                    f"not in {TEXT_SOURCES}"
                )
            self.utterances.append(utt)
        self._by_id = {u.id: u for u in self.utterances}

    def __len__(self) -> int:
        return len(self.utterances)

    def utterance(self, uid: str) -> Utterance:
        try:
            return self._by_id[uid]
        except KeyError:
            raise KeyError(f"{self.path}: no utterance {uid!r}") from None

    def audio(self, uid: str) -> np.ndarray:
        """float32 mono samples at ``self.sample_rate``."""
        from audio2anim.audio import read_audio

        self.utterance(uid)
        samples, rate = read_audio(self.path / "audio" / f"{uid}.wav")
        if rate != self.sample_rate:
            raise ValueError(
                f"{self.path}/audio/{uid}.wav: {rate} Hz, manifest says {self.sample_rate}"
            )
        return samples

    def phones(self, uid: str) -> list[PhoneSegment]:
        self.utterance(uid)
        path = self.path / "phones" / f"{uid}.tsv"
        return parse_phones(path.read_text(), str(path))

    def phoneset(self, uid: str) -> str:
        return self.utterance(uid).phoneset

    def params(self, uid: str) -> dict | None:
        """Captured animation {"names", "values" [T, n], "frame_rate"} or None."""
        self.utterance(uid)
        path = self.path / "params" / f"{uid}.npz"
        if not path.exists():
            return None
        with np.load(path, allow_pickle=False) as z:
            return {
                "names": [str(n) for n in z["names"]],
                "values": z["values"].astype(np.float32),
                "frame_rate": float(z["frame_rate"]),
            }

    def hours(self) -> float:
        return sum(u.duration for u in self.utterances) / 3600.0

    def voices(self) -> list[str]:
        return sorted({u.voice for u in self.utterances})


class CorpusWriter:
    """Create or append to a corpus. Use as a context manager; ``add`` per utterance.

    The manifest is rewritten atomically at most every ``flush_every_s`` seconds and on close,
    so a crash loses at most the last few seconds of work and never corrupts the corpus.
    """

    def __init__(
        self, path: str | Path, sample_rate: int = SAMPLE_RATE, flush_every_s: float = 5.0
    ):
        self.path = Path(path)
        self.sample_rate = sample_rate
        self.flush_every_s = flush_every_s
        self.path.mkdir(parents=True, exist_ok=True)
        for sub in ("audio", "phones"):
            (self.path / sub).mkdir(exist_ok=True)
        if (self.path / "manifest.json").exists():
            existing = Corpus(self.path)
            if existing.sample_rate != sample_rate:
                raise ValueError(
                    f"{self.path}: corpus is {existing.sample_rate} Hz, writer asked for {sample_rate}"
                )
            self.utterances = existing.utterances
        else:
            self.utterances = []
        self._ids = {u.id for u in self.utterances}
        self._last_flush = time.monotonic()
        self._dirty = False
        self.flush()

    def __contains__(self, uid: str) -> bool:
        return uid in self._ids

    def add(
        self,
        utt: Utterance,
        audio: np.ndarray,
        segments: list[PhoneSegment],
        params: dict | None = None,
    ) -> None:
        """Write one utterance (audio at the corpus rate, segments covering it, optional params)."""
        import io

        import soundfile as sf

        if utt.id in self._ids:
            raise ValueError(f"{self.path}: utterance {utt.id!r} already exists")
        if (utt.phoneset not in PHONESETS or utt.source not in SOURCES
                or utt.text_source not in TEXT_SOURCES):  # fmt: skip
            raise ValueError(
                f"utterance {utt.id}: bad phoneset {utt.phoneset!r}, source {utt.source!r} "
                f"or text_source {utt.text_source!r}"
            )
        audio = np.asarray(audio, dtype=np.float32)
        utt.duration = round(len(audio) / self.sample_rate, 6)
        check_segments(segments, utt.duration, where=f"utterance {utt.id}")
        buf = io.BytesIO()
        sf.write(buf, np.clip(audio, -1.0, 1.0), self.sample_rate, subtype="PCM_16", format="WAV")
        atomic_write_bytes(self.path / "audio" / f"{utt.id}.wav", buf.getvalue())
        atomic_write_bytes(self.path / "phones" / f"{utt.id}.tsv", format_phones(segments).encode())
        if params is not None:
            buf = io.BytesIO()
            np.savez(
                buf,
                names=np.array(params["names"], dtype=str),
                values=np.asarray(params["values"], dtype=np.float32),
                frame_rate=np.float64(params["frame_rate"]),
            )
            atomic_write_bytes(self.path / "params" / f"{utt.id}.npz", buf.getvalue())
        self.utterances.append(utt)
        self._ids.add(utt.id)
        self._dirty = True
        if time.monotonic() - self._last_flush >= self.flush_every_s:
            self.flush()

    def flush(self) -> None:
        """Rewrite the manifest atomically."""
        manifest = {
            "format": FORMAT,
            "sample_rate": self.sample_rate,
            "utterances": [asdict(u) for u in self.utterances],
        }
        atomic_write_bytes(self.path / "manifest.json", json.dumps(manifest, indent=1).encode())
        self._last_flush = time.monotonic()
        self._dirty = False

    def close(self) -> None:
        self.flush()

    def __enter__(self) -> CorpusWriter:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
