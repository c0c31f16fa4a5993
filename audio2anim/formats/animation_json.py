"""The animation as JSON (ARKit weights and Oculus viseme weights per frame) and as a viseme CSV.

JSON layout (one frame per line, so long recordings stream and diff well)::

    {
      "format": "audio2anim.animation",
      "version": 1,
      "metadata": {"fps": 50.0, "start": 0.0, "duration": 1.0, "frames": 50,
                   "source": "hi.wav", "model": "...", ...},
      "names": ["jawOpen", ...],
      "visemeNames": ["viseme_sil", ..., "viseme_U"],
      "frames": [
        {"time": 0.0, "weights": [0.0, ...], "visemes": [1.0, ...]},
        ...
      ]
    }

``weights`` follow ``names`` (ARKit spelling); ``visemes`` follow ``visemeNames``, the Oculus /
Ready Player Me morph-target names of the 15 visemes, and are absent (with ``visemeNames``)
when the animation has no viseme posteriors. Numbers carry 7 decimals: values in [0, 1] read
back within float32 precision. Other ``metadata`` entries of the animation are written as
given (they must be JSON-serialisable).

Viseme CSV: a ``time`` column (seconds, media time) and the 15 ``viseme_*`` columns with the
viseme posteriors of every frame.
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
from pathlib import Path
from typing import Any

import numpy as np

from audio2anim.formats.animation import VISEME_MORPHS, Animation, write_atomic

FORMAT = "audio2anim.animation"
VERSION = 1
_DECIMALS = 7


def _num(x: float) -> float | int:
    r = round(float(x), _DECIMALS)
    return int(r) if r == int(r) and abs(r) < 1e15 else r


def format_animation_json(animation: Animation) -> str:
    """``animation`` as the JSON document described in the module docstring."""
    meta: dict[str, Any] = {
        "fps": animation.fps,
        "start": animation.start,
        "duration": animation.duration,
        "frames": animation.frames,
    }
    for key, value in animation.metadata.items():
        if key not in meta:
            meta[key] = value
    try:
        head = {
            "format": FORMAT,
            "version": VERSION,
            "metadata": meta,
            "names": list(animation.names),
        }
        if animation.visemes is not None:
            head["visemeNames"] = list(VISEME_MORPHS)
        head_text = json.dumps(head, ensure_ascii=False)
    except TypeError as e:
        raise ValueError(f"animation metadata is not JSON-serialisable: {e}") from None
    weights = np.round(animation.values.astype(np.float64), _DECIMALS)
    visemes = (
        None
        if animation.visemes is None
        else np.round(animation.visemes.astype(np.float64), _DECIMALS)
    )
    times = animation.times
    lines = []
    for k in range(animation.frames):
        frame = f'{{"time": {_num(times[k])!r}, "weights": {json.dumps(weights[k].tolist())}'
        if visemes is not None:
            frame += f', "visemes": {json.dumps(visemes[k].tolist())}'
        lines.append(frame + "}")
    body = ",\n    ".join(lines)
    frames = f'"frames": [\n    {body}\n  ]' if lines else '"frames": []'
    return head_text[:-1] + ",\n  " + frames + "\n}\n"


def parse_animation_json(text: str, where: str = "animation JSON") -> Animation:
    """The :class:`Animation` of a JSON document written by :func:`format_animation_json`."""
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as e:
        raise ValueError(f"{where}: not JSON ({e})") from None
    if not isinstance(doc, dict) or doc.get("format") != FORMAT:
        raise ValueError(f"{where}: not an audio2anim animation (format is not {FORMAT!r})")
    try:
        meta = dict(doc["metadata"])
        names = tuple(doc["names"])
        frames = doc["frames"]
        fps = meta.pop("fps")
        start = meta.pop("start", 0.0)
        meta.pop("duration", None)
        meta.pop("frames", None)
        values = np.array([f["weights"] for f in frames], dtype=np.float32).reshape(
            len(frames), len(names)
        )
        visemes = None
        if "visemeNames" in doc:
            if tuple(doc["visemeNames"]) != VISEME_MORPHS:
                raise ValueError(f"visemeNames must be {list(VISEME_MORPHS)}")
            visemes = np.array([f["visemes"] for f in frames], dtype=np.float32).reshape(
                len(frames), len(VISEME_MORPHS)
            )
    except (KeyError, TypeError, ValueError) as e:
        raise ValueError(f"{where}: bad animation JSON ({type(e).__name__}: {e})") from None
    try:
        return Animation(fps, names, values, visemes, start, meta)
    except ValueError as e:
        raise ValueError(f"{where}: {e}") from None


def write_animation_json(path: str | os.PathLike, animation: Animation) -> None:
    """Write ``animation`` as JSON to ``path`` (temporary name, renamed when complete)."""
    write_atomic(path, format_animation_json(animation))


def read_animation_json(path: str | os.PathLike) -> Animation:
    """The :class:`Animation` stored in a JSON file written by :func:`write_animation_json`."""
    return parse_animation_json(Path(path).read_text(encoding="utf-8"), str(path))


def format_viseme_csv(animation: Animation) -> str:
    """``time`` plus the 15 ``viseme_*`` columns (the posteriors) for every frame."""
    if animation.visemes is None:
        raise ValueError("viseme CSV needs viseme posteriors; this animation has none")
    out = io.StringIO()
    out.write(",".join(("time",) + VISEME_MORPHS) + "\n")
    times = animation.times
    for k in range(animation.frames):
        row = [f"{times[k]:.6f}"] + [
            f"{v:.7f}".rstrip("0").rstrip(".") for v in animation.visemes[k]
        ]
        out.write(",".join(row) + "\n")
    return out.getvalue()


def write_viseme_csv(path: str | os.PathLike, animation: Animation) -> None:
    """Write the viseme CSV of ``animation`` to ``path`` (temporary name, renamed when complete)."""
    write_atomic(path, format_viseme_csv(animation))


def read_viseme_csv(path: str | os.PathLike) -> tuple[np.ndarray, np.ndarray]:
    """``(times [frames] float64, posteriors [frames, 15] float32)`` from a viseme CSV."""
    where = str(path)
    with open(path, newline="", encoding="utf-8") as f:
        rows = list(csv.reader(f))
    if not rows or tuple(rows[0]) != ("time",) + VISEME_MORPHS:
        raise ValueError(f"{where}: header must be time,{','.join(VISEME_MORPHS)}")
    try:
        data = np.array([[float(x) for x in r] for r in rows[1:] if r], dtype=np.float64)
    except ValueError as e:
        raise ValueError(f"{where}: {e}") from None
    data = data.reshape(-1, 1 + len(VISEME_MORPHS))
    if not np.isfinite(data).all():
        raise ValueError(f"{where}: non-finite numbers")
    return data[:, 0], data[:, 1:].astype(np.float32)


def fps_of(times: np.ndarray) -> float:
    """The frame rate of evenly spaced ``times`` (NaN for fewer than two frames)."""
    if len(times) < 2:
        return math.nan
    return float((len(times) - 1) / (times[-1] - times[0]))
