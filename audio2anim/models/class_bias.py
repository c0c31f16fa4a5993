"""Log-odds offsets per output class (a prior correction): ``{"PP": 0.75}`` over a model's
class names → the vector added to its logits before the softmax, i.e. each named class's
posterior multiplied by e^offset and renormalized. The viseme front end (``viseme_bias``) and
wav2vec2's posteriors (``phone_bias``) use it: recognizers trained on synthetic voices hear
fewer P/B/M in real speech than are there, and lips that stay open on them look worse than an
occasional extra closure."""

from __future__ import annotations

import torch


def bias_vector(bias: dict[str, float], names, what: str, kind: str) -> torch.Tensor:
    """[len(names)] float32 offsets; ValueError naming an unknown class (``what``: the setting,
    e.g. 'viseme_bias'; ``kind``: what a class is, e.g. 'viseme')."""
    values = torch.zeros(len(names))
    for name, value in bias.items():
        if name not in names:
            raise ValueError(f"{what}: unknown {kind} {name!r} (known: {', '.join(names)})")
        values[list(names).index(name)] = float(value)
    return values
