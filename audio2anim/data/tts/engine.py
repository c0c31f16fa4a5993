"""The TTS-engine interface of the synthetic corpus.

An engine speaks text in one of its voices and says what its phone segments are:

- ``name``: the engine part of voice ids (``espeak`` in ``espeak:en-us``);
- ``voices``: its voice names, or an empty tuple when it takes any name it knows itself
  (espeak-ng's voices and variants); `knows` checks a name;
- ``phoneset``: the alphabet of its segments (``espeak`` or ``arpabet``);
- ``timings``: where the segment times come from, the manifest's ``source`` (the engine's
  name, or ``aligned`` when forced alignment supplies them);
- ``speak(text, voice, rng)`` → (float32 samples, sample rate, phone segments, the prosody it
  drew from ``rng``).

`StretchEngine` is the shape shared by the engines whose one prosody control is a duration
stretch (Festival, Flite, Piper, Kokoro): a ``synth(text, voice, duration_stretch)`` function,
which also takes a ``seed`` when the engine samples its audio (Piper).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from ..corpus import PhoneSegment

Speech = tuple[np.ndarray, int, list[PhoneSegment], dict]


class Engine:
    """A TTS engine of the voice registry (`audio2anim.data.tts`)."""

    name: str = ""
    voices: tuple[str, ...] = ()
    phoneset: str = "arpabet"
    timings: str = ""

    def knows(self, voice: str) -> bool:
        return voice in self.voices if self.voices else bool(voice)

    def speak(self, text: str, voice: str, rng: np.random.Generator) -> Speech:
        raise NotImplementedError


class StretchEngine(Engine):
    """An engine driven by a seeded duration stretch in [0.85, 1.2] (> 1 speaks slower)."""

    def __init__(
        self,
        name: str,
        voices,
        synth: Callable[..., tuple[np.ndarray, int, list[PhoneSegment]]],
        timings: str | None = None,
        sampled: bool = False,
    ) -> None:
        self.name, self.voices, self.synth = name, tuple(voices), synth
        self.timings = timings or name
        self.sampled = sampled  # ``synth`` takes a seed: its audio is drawn at random

    def speak(self, text: str, voice: str, rng: np.random.Generator) -> Speech:
        stretch = round(float(rng.uniform(0.85, 1.2)), 3)
        # engines that sample their audio are seeded from the job, so corpora reproduce
        seed = {"seed": int(rng.integers(2**31))} if self.sampled else {}
        audio, sr, segments = self.synth(text, voice, duration_stretch=stretch, **seed)
        return audio, sr, segments, {"duration_stretch": stretch}
