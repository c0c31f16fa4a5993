"""Log-odds offsets per output class (a prior correction): ``{"PP": 0.75}`` over a model's
class names → the vector added to its logits before the softmax, i.e. each named class's
posterior multiplied by e^offset and renormalized. The viseme front end (``viseme_bias``) and
wav2vec2's posteriors (``phone_bias``) use it: recognizers trained on synthetic voices hear
fewer P/B/M in real speech than are there, and lips that stay open on them look worse than an
occasional extra closure."""

from __future__ import annotations


def check_bias_names(bias: dict[str, float], names, what: str, kind: str) -> None:
    """ValueError naming the first class of ``bias`` not in ``names`` (``what``: the setting,
    e.g. 'viseme_bias'; ``kind``: what a class is, e.g. 'viseme'). Torch-free, so graph
    validation can call it before any model loads."""
    unknown = [name for name in bias if name not in names]
    if unknown:
        raise ValueError(f"{what}: unknown {kind} {unknown[0]!r} (known: {', '.join(names)})")


def bias_array(bias: dict[str, float], names, what: str, kind: str):
    """[len(names)] float32 numpy offsets (`check_bias_names` first); torch-free."""
    import numpy as np

    check_bias_names(bias, names, what, kind)
    values = np.zeros(len(names), np.float32)
    for name, value in bias.items():
        values[list(names).index(name)] = float(value)
    return values


def bias_vector(bias: dict[str, float], names, what: str, kind: str):
    """[len(names)] float32 torch offsets (`bias_array` as a tensor)."""
    import torch

    return torch.from_numpy(bias_array(bias, names, what, kind))


def set_viseme_bias(model, bias: dict[str, float]) -> None:
    """Set a viseme model's per-viseme log-odds offsets: its non-persistent ``logit_bias``
    buffer, and ``hparams["viseme_bias"]`` only when ``bias`` is not empty (so unbiased
    sidecars stay as they were). ``{}`` removes them; ValueError names an unknown viseme. The
    viseme front end and the Whisper viseme head both store their offsets this way."""
    from audio2anim.visemes import VISEMES

    model.logit_bias.copy_(bias_vector(bias, VISEMES, "viseme_bias", "viseme"))
    model.hparams.pop("viseme_bias", None)
    if bias:
        model.hparams["viseme_bias"] = {k: float(v) for k, v in bias.items()}
