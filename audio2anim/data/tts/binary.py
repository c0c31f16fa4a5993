"""What the command-line TTS engines (Festival, Flite) share: checking a voice and the binary
before a run, and reading the waveform they write."""

from __future__ import annotations

import shutil


def require(engine: str, voice: str, voices, package: str) -> None:
    """Raise naming the problem if ``voice`` is not one of ``voices`` or ``engine`` is not on
    PATH (``package`` is the Debian package that provides it)."""
    if voice not in voices:
        raise ValueError(f"{engine}: unknown voice {voice!r} (known: {', '.join(voices)})")
    if shutil.which(engine) is None:
        raise RuntimeError(f"{engine} not found: install the Debian package {package} (setup.sh)")
