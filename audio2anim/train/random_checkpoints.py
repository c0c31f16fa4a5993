"""Untrained checkpoints of all seven models at the shipped (``full``) or the ``tiny`` size.

Random weights, real architectures and sidecars (hyper-parameters of
`audio2anim.train.config.HPARAMS`): for tests of streaming code and for timing the method
graphs before (or without) trained models — speed depends on the architecture, not the weights.

    make_random_checkpoints("/tmp/ckpts", size="full")   # → {"viseme-mlp": Path, ...}
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from audio2anim import arkit

PREDICTORS = ("viseme-mlp", "viseme-cnn", "w2v-cnn", "w2v-ar", "w2v-attention")
PARAM_NAMES = arkit.MOUTH + arkit.EYES


def make_random_checkpoints(
    root: str | Path, size: str = "tiny", seed: int = 0, w2v_size: str | None = None
) -> dict[str, Path]:
    """Write the seven checkpoints under ``root`` (one directory per kind) → kind → directory.

    ``w2v_size="base"`` makes the wav2vec2 model base-sized (``WAV2VEC2_SIZES["base"]`` of `models.wav2vec`) instead of ``size``.
    """
    import torch

    from audio2anim.models.checkpoint import build, save
    from audio2anim.models.logmel import DEFAULT as LM
    from audio2anim.models.wav2vec import WAV2VEC2_SIZES, build_small

    from .config import HPARAMS

    root = Path(root)
    torch.manual_seed(seed)
    hp = HPARAMS[size]
    out: dict[str, Path] = {}
    fe = build("viseme-frontend", hp["viseme-frontend"])
    out["viseme-frontend"] = save(
        fe, root / "viseme-frontend", {"feature": {"kind": "logmel", **LM.to_dict()}}
    )
    w2v_hp = dict(hp["wav2vec2"])
    chunk, left = w2v_hp.pop("chunk_frames"), w2v_hp.pop("left_chunks")
    if w2v_size == "base":
        w2v_hp = dict(WAV2VEC2_SIZES["base"])
    front = build_small(chunk_frames=chunk, left_chunks=left, seed=seed, **w2v_hp)
    out["wav2vec2"] = save(front, root / "wav2vec2", {"output_frame_rate": 50.0})
    rng = np.random.default_rng(seed)
    for kind in PREDICTORS:
        in_dim = 15 if kind.startswith("viseme") else front.feature_dim
        model = build(kind, dict(in_dim=in_dim, out_dim=len(PARAM_NAMES), **hp[kind]))
        # statistics that keep the clipped outputs moving inside (0, 1)
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


def graph_overrides(graph: str, ckpts: dict[str, Path]) -> list[str]:
    """``--set`` overrides (``NODE.PARAM=VALUE``) that point the model nodes of the method graph
    ``graph`` (``viseme_mlp`` … ``pocketsphinx``) at ``ckpts``."""
    pred = {"pocketsphinx": "viseme-cnn"}.get(graph, graph.replace("_", "-"))
    sets = [f"pred.checkpoint={ckpts[pred]}"]
    if graph.startswith("viseme"):
        sets.append(f"vis.model={ckpts['viseme-frontend']}")
    if graph.startswith("w2v"):
        from audio2anim.models.checkpoint import read_sidecar

        sets.append(f"feat.model={ckpts['wav2vec2']}")
        # the wav2vec2 output these predictors were made for (the shipped graphs name theirs)
        feature = (read_sidecar(ckpts[pred]).get("feature") or {}).get("feature")
        sets.append(f"feat.feature={feature or 'posteriors'}")
    return sets
