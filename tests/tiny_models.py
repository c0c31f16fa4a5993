"""Test helpers: tiny random checkpoints (see `audio2anim.train.random_checkpoints`) and
espeak-ng speech with its phone timings."""

from __future__ import annotations

from pathlib import Path

from audio2anim.models.wav2vec import WAV2VEC2_SIZES
from audio2anim.train.random_checkpoints import (
    PREDICTORS,
    graph_overrides,
    make_random_checkpoints,
)

__all__ = ["PREDICTORS", "W2V_TINY", "graph_overrides", "make_tiny_checkpoints", "speak"]

# wav2vec2 dimensions for fast tests of the front end and its stream (`build_small(**W2V_TINY)`):
# the tiny size with two encoder layers, so that the tests can stream hidden-1 and hidden-2
W2V_TINY = {**WAV2VEC2_SIZES["tiny"], "num_hidden_layers": 2}


def make_tiny_checkpoints(root: Path) -> dict[str, Path]:
    """The seven models at the tiny size, untrained (tests of code, not of learning)."""
    return make_random_checkpoints(root, size="tiny")


def speak(text: str, voice: str = "en-us", rate: int = 150):
    """espeak-ng speech → (float32 samples, sample rate, phone segments [(start, end, phone)])."""
    from audio2anim.data.espeak_ng import ESpeak

    audio, sr, segments = ESpeak().synth(text, voice, rate=rate)
    return audio, sr, [(s.start, s.end, s.phone) for s in segments]
