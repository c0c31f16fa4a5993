"""The checkpoint sidecar's vocabulary: format tags and the conversion to strict JSON.

Torch-free and importing nothing else of the package, so every checkpoint module
(`checkpoint`, `wav2vec`, `wav2vec_ensemble`) can use it.
"""

from __future__ import annotations

import math

FORMAT = "audio2anim-model/1"
WAV2VEC2_ENSEMBLE_FORMAT = "audio2anim-wav2vec2-ensemble/1"  # see models/wav2vec_ensemble.py


def jsonable(obj):
    """``obj`` with numpy arrays/scalars as lists/numbers and NaN/inf as None (strict JSON)."""
    import numpy as np

    if isinstance(obj, dict):
        return {str(k): jsonable(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [jsonable(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, np.generic):
        obj = obj.item()
    if isinstance(obj, float) and not math.isfinite(obj):
        return None  # strict JSON has no NaN/inf (e.g. a recall with no segments to count)
    return obj
