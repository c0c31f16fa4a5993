"""Audio files in, mono float32 samples out: the one reader every part of the package uses.

``MODEL_RATE`` is the rate every model of the package runs at (16 kHz). ``read_audio`` reads
anything libsndfile reads (WAV, FLAC, OGG, …) and, through PyAV, the audio track of a .mov,
.mp4 or .m4a, or a headerless G.722 stream (``.g722``: 16 kHz wideband, as Asterisk stores its
prompts). Several channels are averaged to mono. ``read_audio_channels`` reads the same files
with their channels and rate as they are (for muxing the input's audio into a video).
"""

from __future__ import annotations

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
    if rate is not None and native != rate:
        import soxr

        audio = soxr.resample(audio, native, rate).astype(np.float32)
        native = rate
    return audio, int(native)


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
