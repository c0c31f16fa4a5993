"""espeak-ng voices in the voice registry: any espeak-ng voice and variant (``espeak:en-us+f3``),
spoken through its C library (`audio2anim.data.espeak_ng`) with exact phone times."""

from __future__ import annotations

import numpy as np

from ..espeak_ng import ESpeak
from .engine import Engine, Speech


class ESpeakEngine(Engine):
    """espeak-ng in the voice registry: any voice name, with a seeded rate, pitch and range."""

    name = timings = phoneset = "espeak"

    def speak(self, text: str, voice: str, rng: np.random.Generator) -> Speech:
        rate = int(rng.integers(140, 211))
        pitch = int(rng.integers(30, 71))
        range_ = int(rng.integers(35, 81))
        audio, sr, segments = ESpeak().synth(text, voice, rate=rate, pitch=pitch, range_=range_)
        return audio, sr, segments, {"rate_wpm": rate, "pitch": pitch, "range": range_}


ENGINE = ESpeakEngine()
