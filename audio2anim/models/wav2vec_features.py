"""The feature names a wav2vec2 front end serves, parsed without torch: graph validation checks
them before any model loads, and `Wav2Vec2FrontEnd` reads its layer from them.

- ``posteriors``: the softmax of the CTC logits;
- ``hidden-N``: the hidden states after encoder layer N (0 = the projected CNN features);
- ``posteriors+hidden-N``: both, side by side.
"""

from __future__ import annotations

import re

EXPECTED = "'posteriors', 'hidden-N' or 'posteriors+hidden-N'"
_NAME = re.compile(r"posteriors|(posteriors\+)?hidden-(\d+)")


def hidden_layer(name: str) -> int | None:
    """The encoder layer a feature reads ('hidden-4', 'posteriors+hidden-4' → 4; 'posteriors'
    → None). ValueError naming the feature for anything else."""
    m = _NAME.fullmatch(name)
    if not m:
        raise ValueError(f"feature {name!r}: expected {EXPECTED}")
    return None if m.group(2) is None else int(m.group(2))
