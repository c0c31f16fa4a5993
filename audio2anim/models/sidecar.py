"""The checkpoint sidecar's vocabulary: format tags, the conversion to strict JSON, and the
sha256 of the files a checkpoint directory carries.

Torch-free and importing nothing else of the package, so every checkpoint module
(`checkpoint`, `wav2vec`, `wav2vec_ensemble`) can use it.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
from pathlib import Path

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


# Files of a checkpoint directory whose sha256 the sidecar records under ``"files"``
# (``{"model.safetensors": "sha256:<hex>"}``; ``encoder.safetensors``: a live Whisper head's
# fine-tuned encoder); config.json itself is the sidecar.
HASHED_FILES = ("model.safetensors", "vocab.json", "encoder.safetensors")

# (resolved path, mtime_ns, size) → hex digest of files this process has already verified
_verified: dict[tuple[str, int, int], str] = {}


class ChecksumError(ValueError):
    """A checkpoint file whose sha256 differs from the one its sidecar records."""


def sha256_file(path: str | Path) -> str:
    """The hex sha256 of a file, read in 1 MiB blocks."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def file_digests(directory: str | Path) -> dict[str, str]:
    """``{"model.safetensors": "sha256:<hex>", ...}`` for the `HASHED_FILES` in ``directory``."""
    directory = Path(directory)
    return {
        name: "sha256:" + sha256_file(directory / name)
        for name in HASHED_FILES
        if (directory / name).is_file()
    }


def stamp_files(directory: str | Path) -> dict[str, str]:
    """Record the sha256 of ``directory``'s files in its config.json (under ``"files"``; in a
    Hugging Face wav2vec2 directory, under ``"audio2anim"``). Returns the digests written."""
    cfg_path = Path(directory) / "config.json"
    config = json.loads(cfg_path.read_text())
    digests = file_digests(directory)
    if config.get("model_type") == "wav2vec2":
        config.setdefault("audio2anim", {})["files"] = digests
    else:
        config["files"] = digests
    cfg_path.write_text(json.dumps(config, indent=1) + "\n")
    return digests


def verify_files(directory: str | Path, files: dict | None) -> None:
    """Check each file of ``files`` (a sidecar's ``"files"``: name → ``"sha256:<hex>"``) in
    ``directory``; raise `ChecksumError` naming the first that differs. No ``files`` (a
    checkpoint saved without them): nothing is checked. A file already verified by this process
    with the same modification time and size is not read again."""
    for name, expected in (files or {}).items():
        path = Path(directory) / name
        want = str(expected).removeprefix("sha256:").lower()
        try:
            st = os.stat(path)
        except FileNotFoundError:
            raise ChecksumError(f"{path}: missing (its sidecar records a sha256 for it)") from None
        key = (str(path.resolve()), st.st_mtime_ns, st.st_size)
        if _verified.get(key) == want:
            continue
        if sha256_file(path) != want:
            raise ChecksumError(f"{path}: sha256 mismatch — file corrupted or replaced")
        _verified[key] = want
