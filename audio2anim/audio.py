"""Audio files in, mono float32 samples out: the one reader every part of the package uses.

``MODEL_RATE`` is the rate every model of the package runs at (16 kHz). ``read_audio`` reads
anything libsndfile reads (WAV, FLAC, OGG, …) and, through PyAV, the audio track of a .mov,
.mp4 or .m4a, or a headerless G.722 stream (``.g722``: 16 kHz wideband, as Asterisk stores its
prompts). Several channels are averaged to mono. A WAV file whose header promises more audio
than the file holds (a recording cut short) is read as far as it goes, with one warning line
on stderr naming the file (`wav_truncation`). ``read_audio_channels`` reads the same files
with their channels and rate as they are (for muxing the input's audio into a video).
"""

from __future__ import annotations

import struct
import sys
from pathlib import Path

import numpy as np

MODEL_RATE = 16000

# read through PyAV; a headerless format needs its demuxer named
PYAV_FORMATS = {".mov": None, ".mp4": None, ".m4a": None, ".g722": "g722"}


def read_audio(path: str | Path, rate: int | None = None) -> tuple[np.ndarray, int]:
    """``path`` → (mono float32 samples, sample rate), resampled to ``rate`` when one is given.

    A missing or unreadable file raises ``FileNotFoundError`` / ``ValueError`` naming it.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such audio file")
    warn_if_truncated(path)
    if path.suffix.lower() in PYAV_FORMATS:
        audio, native = _read_pyav(path, rate)
    else:
        import soundfile as sf

        try:
            audio, native = sf.read(str(path), dtype="float32", always_2d=True)
        except Exception as e:  # libsndfile's own message says what is wrong with the file
            raise ValueError(f"{path}: cannot read audio ({e})") from None
        audio = audio.mean(axis=1) if audio.shape[1] > 1 else audio[:, 0]
    audio = np.ascontiguousarray(audio, dtype=np.float32)
    if rate is not None and native != rate and len(audio):
        import soxr

        try:
            audio = soxr.resample(audio, native, rate).astype(np.float32)
        except (ValueError, RuntimeError) as e:  # a rate soxr cannot convert from
            raise ValueError(f"{path}: cannot resample {native} Hz to {rate} Hz ({e})") from None
    if rate is not None:
        native = rate
    return audio, int(native)


def wav_truncation(path: str | Path) -> str | None:
    """For a RIFF/WAVE file whose ``data`` chunk declares more bytes than the file holds, a
    one-line description (``"truncated WAV: the header declares 2.00 s, the file holds
    0.50 s"``); None for a whole file, a streamed header (size 0 or 0xFFFFFFFF), or anything
    that is not a WAV file."""
    try:
        with open(path, "rb") as f:
            head = f.read(12)
            if len(head) < 12 or head[:4] != b"RIFF" or head[8:12] != b"WAVE":
                return None
            size = Path(path).stat().st_size
            byte_rate = 0
            while True:
                chunk = f.read(8)
                if len(chunk) < 8:
                    return None
                cid, n = chunk[:4], struct.unpack("<I", chunk[4:])[0]
                if cid == b"fmt ":
                    fmt = f.read(min(n, 16))
                    if len(fmt) >= 12:
                        byte_rate = struct.unpack("<I", fmt[8:12])[0]
                    f.seek(n - len(fmt) + (n & 1), 1)
                elif cid == b"data":
                    have = size - f.tell()
                    if n in (0, 0xFFFFFFFF) or n <= have:
                        return None
                    said, held = (
                        (f"{b / byte_rate:.2f} s" for b in (n, have)) if byte_rate else "  "
                    )
                    if said != held:
                        return f"truncated WAV: the header declares {said}, the file holds {held}"
                    return f"truncated WAV: the header declares {n} bytes, the file holds {have}"
                else:
                    f.seek(n + (n & 1), 1)
    except OSError:
        return None


def warn_if_truncated(path: str | Path) -> None:
    """Print `wav_truncation`'s line, naming the file, when there is one."""
    why = wav_truncation(path)
    if why:
        print(f"warning: {path}: {why}; reading what is there", file=sys.stderr)


def _read_pyav(path: Path, rate: int | None) -> tuple[np.ndarray, int]:
    import av

    with av.open(str(path), format=PYAV_FORMATS[path.suffix.lower()]) as container:
        if not container.streams.audio:
            raise ValueError(f"{path}: no audio stream")
        stream = container.streams.audio[0]
        out_rate = rate or stream.rate or MODEL_RATE
        resampler = av.AudioResampler(format="flt", layout="mono", rate=out_rate)
        chunks = []
        for frame in container.decode(stream):
            chunks.extend(f.to_ndarray().reshape(-1) for f in resampler.resample(frame))
        chunks.extend(f.to_ndarray().reshape(-1) for f in resampler.resample(None))
    audio = np.concatenate(chunks) if chunks else np.zeros(0, np.float32)
    return audio.astype(np.float32), int(out_rate)


def read_audio_channels(path: str | Path) -> tuple[np.ndarray, int]:
    """``path`` → (float32 samples ``[frames, channels]``, native sample rate), nothing mixed or
    resampled. Errors as `read_audio`."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such audio file")
    if path.suffix.lower() in PYAV_FORMATS:
        import av

        with av.open(str(path), format=PYAV_FORMATS[path.suffix.lower()]) as container:
            if not container.streams.audio:
                raise ValueError(f"{path}: no audio stream")
            stream = container.streams.audio[0]
            rate = stream.rate or MODEL_RATE
            channels = stream.channels or 1
            resampler = av.AudioResampler(format="fltp", layout=stream.layout, rate=rate)
            chunks = []
            for frame in container.decode(stream):
                chunks.extend(f.to_ndarray() for f in resampler.resample(frame))
            chunks.extend(f.to_ndarray() for f in resampler.resample(None))
        planar = np.concatenate(chunks, axis=1) if chunks else np.zeros((channels, 0), np.float32)
        return np.ascontiguousarray(planar.T, dtype=np.float32), int(rate)
    import soundfile as sf

    try:
        audio, rate = sf.read(str(path), dtype="float32", always_2d=True)
    except Exception as e:
        raise ValueError(f"{path}: cannot read audio ({e})") from None
    return np.ascontiguousarray(audio, dtype=np.float32), int(rate)
