"""Tiny randomly initialized checkpoints of all seven models, and espeak-ng test speech.

For tests that check code (streaming equals offline, graphs run, formats load), not what a
model learned: the weights are random, the architectures and sidecars are the real ones
(tiny hyper-parameters of `audio2anim.train.recipes.HPARAMS`).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from audio2anim import arkit

PREDICTORS = ("viseme-mlp", "viseme-cnn", "w2v-cnn", "w2v-ar", "w2v-attention")
PARAM_NAMES = arkit.MOUTH + arkit.EYES


def make_tiny_checkpoints(root: Path, seed: int = 0) -> dict[str, Path]:
    """Write the seven tiny checkpoints under ``root`` → kind → directory."""
    import torch

    from audio2anim.models.checkpoint import build, save
    from audio2anim.models.logmel import DEFAULT as LM
    from audio2anim.models.wav2vec import build_small
    from audio2anim.train.recipes import HPARAMS

    torch.manual_seed(seed)
    tiny = HPARAMS["tiny"]
    out: dict[str, Path] = {}
    fe = build("viseme-frontend", tiny["viseme-frontend"])
    out["viseme-frontend"] = save(
        fe, root / "viseme-frontend", {"feature": {"kind": "logmel", **LM.to_dict()}}
    )
    w2v_hp = dict(tiny["wav2vec2"])
    chunk, left = w2v_hp.pop("chunk_frames"), w2v_hp.pop("left_chunks")
    front = build_small(chunk_frames=chunk, left_chunks=left, seed=seed, **w2v_hp)
    out["wav2vec2"] = save(front, root / "wav2vec2", {"output_frame_rate": 50.0})
    rng = np.random.default_rng(seed)
    for kind in PREDICTORS:
        in_dim = 15 if kind.startswith("viseme") else front.feature_dim
        model = build(kind, dict(in_dim=in_dim, out_dim=len(PARAM_NAMES), **tiny[kind]))
        # output statistics inside (0, 1), so the clipped outputs still move
        model.set_normalization(
            np.zeros(in_dim) if in_dim == 15 else np.full(in_dim, 1 / in_dim),
            np.ones(in_dim) if in_dim == 15 else np.full(in_dim, 0.05),
            rng.uniform(0.2, 0.5, len(PARAM_NAMES)),
            np.full(len(PARAM_NAMES), 0.1),
        )
        side = {
            "input_frame_rate": 50.0,
            "output_frame_rate": 50.0,
            "param_names": list(PARAM_NAMES),
        }
        out[kind] = save(model, root / kind, side)
    return out


def speak(text: str, voice: str = "en-us", rate: int = 150):
    """espeak-ng speech → (float32 samples, sample rate, phone segments [(start, end, phone)])."""
    from audio2anim.data.espeak import ESpeak

    audio, sr, segments = ESpeak().synth(text, voice, rate=rate)
    return audio, sr, [(s.start, s.end, s.phone) for s in segments]
