"""Test helpers: tiny random checkpoints (see `audio2anim.models.random_checkpoints`) and
espeak-ng speech with its phone timings."""

from __future__ import annotations

from pathlib import Path

from audio2anim.models.random_checkpoints import (
    PREDICTORS,
    graph_overrides,
    make_random_checkpoints,
)

__all__ = ["PREDICTORS", "W2V_TINY", "graph_overrides", "make_tiny_checkpoints", "speak"]

# wav2vec2 dimensions for fast tests of the front end and its stream (`build_small(**W2V_TINY)`)
W2V_TINY = dict(
    hidden_size=32,
    num_hidden_layers=2,
    num_attention_heads=2,
    intermediate_size=64,
    conv_dim=(16,) * 7,
    num_conv_pos_embedding_groups=4,
)


def make_tiny_checkpoints(root: Path) -> dict[str, Path]:
    """The seven models at the tiny size, untrained (tests of code, not of learning)."""
    return make_random_checkpoints(root, size="tiny")


def speak(text: str, voice: str = "en-us", rate: int = 150):
    """espeak-ng speech → (float32 samples, sample rate, phone segments [(start, end, phone)])."""
    from audio2anim.data.espeak import ESpeak

    audio, sr, segments = ESpeak().synth(text, voice, rate=rate)
    return audio, sr, [(s.start, s.end, s.phone) for s in segments]
