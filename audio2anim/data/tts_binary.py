"""What the command-line TTS engines (Festival, Flite) share: checking a voice and the binary
before a run, and reading the waveform they write."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np


def require(engine: str, voice: str, voices, package: str) -> None:
    """Raise naming the problem if ``voice`` is not one of ``voices`` or ``engine`` is not on
    PATH (``package`` is the Debian package that provides it)."""
    if voice not in voices:
        raise ValueError(f"{engine}: unknown voice {voice!r} (known: {', '.join(voices)})")
    if shutil.which(engine) is None:
        raise RuntimeError(f"{engine} not found: install the Debian package {package} (setup.sh)")


def read_mono(path: Path) -> tuple[np.ndarray, int]:
    """A WAV file → (float32 mono samples, rate)."""
    import soundfile as sf

    audio, rate = sf.read(path, dtype="float32")
    if audio.ndim > 1:
        audio = audio.mean(axis=1)
    return audio, int(rate)
