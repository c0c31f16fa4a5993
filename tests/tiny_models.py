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


def swelling_tone(samples: int, noise: float = 0.02, seed: int = 0):
    """A 220 Hz tone swelling at 3 Hz plus white noise, 16 kHz float32: speech-like energy."""
    import numpy as np

    rng = np.random.default_rng(seed)
    t = np.arange(samples) / 16000
    x = 0.3 * np.sin(2 * np.pi * 220 * t) * (1 + np.sin(2 * np.pi * 3 * t))
    return (x + noise * rng.standard_normal(len(t))).astype(np.float32)


def one_line(e) -> str:
    """The message of a `pytest.raises` result, asserted to be a single line."""
    message = str(e.value)
    assert "\n" not in message
    return message


def bilabials_closed(gap, segments, fps: float = 50.0, slack_s: float = 0.06) -> list[bool]:
    """Per bilabial phone of ``segments``: is the lip gap closed somewhere within ``slack_s``
    of it (frames at ``fps``)?"""
    from audio2anim.train.metrics import CLOSED
    from audio2anim.visemes import phone_class

    closed = []
    for start, end, phone in segments:
        if phone_class(phone, "espeak") == "bilabial":
            lo, hi = max(0, int((start - slack_s) * fps)), int((end + slack_s) * fps) + 1
            closed.append(gap[lo:hi].min() <= CLOSED)
    return closed


def make_logmel_predictor(path: Path, feature: str | None = None) -> Path:
    """A tiny random w2v-cnn predictor that reads 80-band log-mel at 100 Hz (three outputs);
    ``feature`` records a wav2vec2 feature in its sidecar instead, as a trained one does."""
    import numpy as np
    import torch

    from audio2anim.models.checkpoint import build, save
    from audio2anim.train.config import HPARAMS

    torch.manual_seed(0)
    names = ["jawOpen", "mouthClose", "mouthFunnel"]
    model = build("w2v-cnn", dict(in_dim=80, out_dim=len(names), **HPARAMS["tiny"]["w2v-cnn"]))
    model.set_normalization(np.full(80, -5.0), np.full(80, 3.0), np.full(3, 0.4), np.full(3, 0.2))
    side = {"input_frame_rate": 100.0, "output_frame_rate": 100.0, "param_names": names}
    if feature:
        side["feature"] = {"feature": feature}
    return save(model, path, side)


def save_tiny_whisper(folder: Path, width: int = 16, encoder_layers: int = 2) -> Path:
    """A random Whisper (two heads, ``width`` wide) saved as a Hugging Face folder."""
    import torch
    from transformers import WhisperConfig, WhisperForConditionalGeneration

    config = WhisperConfig(
        vocab_size=100, pad_token_id=0, bos_token_id=1, eos_token_id=2,
        decoder_start_token_id=3, num_mel_bins=80, d_model=width,
        encoder_layers=encoder_layers, decoder_layers=1, encoder_attention_heads=2,
        decoder_attention_heads=2, encoder_ffn_dim=32, decoder_ffn_dim=32,
        max_source_positions=1500, max_target_positions=32,
    )  # fmt: skip
    torch.manual_seed(0)
    WhisperForConditionalGeneration(config).save_pretrained(folder)
    return folder
