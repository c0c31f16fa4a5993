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
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from audio2anim.formats.animation import VISEME_MORPHS, Animation, write_atomic

FORMAT = "audio2anim.animation"
VERSION = 1
_DECIMALS = 7


def fixed_rows(arr: np.ndarray, sep: str = ", ") -> list[str]:
    """Every row of ``arr`` as ``sep``-joined numbers with 7 decimals (``0.1234567``).

    Values in [0, 1] are formatted by integer arithmetic on the whole array at once (ten times
    faster than Python's float formatting, which matters for hour-long recordings); other
    values fall back to ``%.7f``.
    """
    arr = np.asarray(arr, dtype=np.float64)
    if arr.ndim != 2 or arr.shape[1] == 0:
        return [""] * (len(arr) if arr.ndim else 0)
    n, c = arr.shape
    if arr.size and (arr.min() < 0 or arr.max() > 1):
        fmt = sep.join(["%.7f"] * c)
        return [fmt % tuple(row) for row in arr.tolist()]
    ints = np.rint(arr * 1e7).astype(np.int64)
    sep_b = sep.encode("ascii")
    width = 9 + len(sep_b)
    out = np.empty((n, c, width), np.uint8)
    out[:, :, 0] = 48 + ints // 10**7
    out[:, :, 1] = ord(".")
    frac = ints % 10**7
    for d in range(7):
        out[:, :, 8 - d] = 48 + frac % 10
        frac //= 10
    out[:, :, 9:] = np.frombuffer(sep_b, np.uint8)
    rows = out.reshape(n, c * width)[:, : c * width - len(sep_b)]
    return [r.decode("ascii") for r in np.ascontiguousarray(rows).view(f"S{rows.shape[1]}")[:, 0]]


def _num(x: float) -> float | int:
    r = round(float(x), _DECIMALS)
    return int(r) if r == int(r) and abs(r) < 1e15 else r


def format_animation_json(animation: Animation) -> str:
    """``animation`` as the JSON document described in the module docstring."""
    return "".join(animation_json_pieces(animation))


def animation_json_pieces(animation: Animation, frames_per_piece: int = 1000) -> Iterator[str]:
    """The JSON document of ``animation`` in pieces of ``frames_per_piece`` frames (streaming)."""
    meta: dict[str, Any] = {
        "fps": animation.fps,
        "start": animation.start,
        "duration": animation.duration,
        "frames": animation.frames,
    }
    for key, value in animation.metadata.items():
        if key not in meta:
            meta[key] = value
    head: dict[str, Any] = {
        "format": FORMAT,
        "version": VERSION,
        "metadata": meta,
        "names": list(animation.names),
    }
    if animation.visemes is not None:
        head["visemeNames"] = list(VISEME_MORPHS)
    try:
        head_text = json.dumps(head, ensure_ascii=False)
    except TypeError as e:
        raise ValueError(f"animation metadata is not JSON-serialisable: {e}") from None
    if animation.frames == 0:
        yield head_text[:-1] + ', "frames": []}\n'
        return
    yield head_text[:-1] + ',\n  "frames": [\n'
    times = animation.times
    for lo in range(0, animation.frames, frames_per_piece):
        hi = min(lo + frames_per_piece, animation.frames)
        weights = fixed_rows(animation.values[lo:hi])
        visemes = None if animation.visemes is None else fixed_rows(animation.visemes[lo:hi])
        lines = []
        for k in range(hi - lo):
            line = f'    {{"time": {_num(times[lo + k])!r}, "weights": [{weights[k]}]'
            if visemes is not None:
                line += f', "visemes": [{visemes[k]}]'
            lines.append(line + "}")
        yield ",\n".join(lines) + (",\n" if hi < animation.frames else "\n")
    yield "  ]\n}\n"


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
    write_atomic(path, animation_json_pieces(animation))


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
    rows = fixed_rows(animation.visemes, ",")
    for k in range(animation.frames):
        out.write(f"{times[k]:.6f},{rows[k]}\n")
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
