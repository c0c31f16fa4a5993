"""Text-to-speech engines and the voice registry of the synthetic corpus.

A voice id is ``engine:name``; the registry resolves it to an `Engine` (`engine.py`) and a
voice of it:

- ``espeak:<voice>[+variant]``: espeak-ng through its C library, exact phone times (`espeak`);
- ``festival:kal|ked|slt``: Festival, the synthesizer's own segment times (`festival`);
- ``flite:awb|rms``: Flite, likewise (`flite`);
- ``piper:joe``: a Piper neural voice, phone times from forced alignment (`piper`);
- ``kokoro:<voice>``: Kokoro-82M's 27 English voices, likewise (`kokoro`).

``engine:all`` stands for all of an engine's voices (`expand_voices`). Engine modules are
imported on first use, and each engine keeps what it loads (libraries, models, sessions) for
the life of the process.
"""

from __future__ import annotations

import importlib
from functools import cache

from .engine import Engine, StretchEngine

__all__ = ["ENGINES", "Engine", "StretchEngine", "engine", "expand_voices", "parse_voice",
           "resolve"]  # fmt: skip

ENGINES: tuple[str, ...] = ("espeak", "festival", "flite", "piper", "kokoro")


@cache
def engine(name: str) -> Engine:
    """The engine called ``name`` (its module is imported on first use)."""
    if name not in ENGINES:
        raise ValueError(f"unknown TTS engine {name!r} (known: {', '.join(ENGINES)})")
    return importlib.import_module(f"{__name__}.{name}").ENGINE


def resolve(voice_id: str) -> tuple[Engine, str]:
    """``"espeak:en-us+f3"`` → (the espeak engine, "en-us+f3"); raises on an unknown voice."""
    name, _, voice = voice_id.partition(":")
    if name in ENGINES and engine(name).knows(voice):
        return engine(name), voice
    known = " or ".join(
        f"{e.name}:{{{','.join(e.voices)}}}" if e.voices else f"{e.name}:<voice>"
        for e in map(engine, ENGINES)
    )
    raise ValueError(f"voice {voice_id!r}: expected {known}")


def parse_voice(voice_id: str) -> tuple[str, str]:
    """``"espeak:en-us+f3"`` → ("espeak", "en-us+f3"); raises on an unknown engine/voice."""
    eng, voice = resolve(voice_id)
    return eng.name, voice


def expand_voices(voice_ids) -> tuple[str, ...]:
    """Voice ids with each ``engine:all`` replaced by that engine's voices (``kokoro:all``)."""
    out: list[str] = []
    for voice_id in voice_ids:
        name, _, voice = voice_id.partition(":")
        if voice == "all" and name in ENGINES and engine(name).voices:
            out += [f"{name}:{v}" for v in engine(name).voices]
        else:
            out.append(voice_id)
    return tuple(out)
