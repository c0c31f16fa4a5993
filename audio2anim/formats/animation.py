"""The animation every exchange format is written from: ARKit weights and viseme posteriors per frame.

An :class:`Animation` holds frames at a fixed rate ``fps``; frame ``k`` is at media time
``start + k / fps`` and stands for the interval up to the next frame, so the animation covers
``[start, start + frames / fps)``. ``values`` are the ARKit blendshape weights named by
``names`` (spelled as in :mod:`audio2anim.arkit`); ``visemes`` are optional posteriors over the
15 Oculus visemes in the order of :data:`audio2anim.visemes.VISEMES`.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from audio2anim.visemes import N_VISEMES, VISEMES

#: The Oculus / Ready Player Me morph-target names of the 15 visemes, in ``VISEMES`` order.
VISEME_MORPHS: tuple[str, ...] = tuple(
    "viseme_" + v
    for v in ("sil", "PP", "FF", "TH", "DD", "kk", "CH", "SS", "nn", "RR", "aa", "E", "I", "O", "U")
)
assert len(VISEME_MORPHS) == len(VISEMES)


@dataclass(eq=False)
class Animation:
    """Frames of ARKit weights (and optionally viseme posteriors) at a fixed frame rate.

    ``names`` are the parameter names, spelled as ARKit spells them (``jawOpen``); any subset of
    :data:`audio2anim.arkit.ALL` in any order, and other parameters a model predicts (head
    rotations, say) are carried along under their own names. ``values`` is converted to float32 ``[frames, len(names)]`` and clipped into ``[0, 1]``
    (the range ARKit defines for every blendshape); ``visemes`` to float32 ``[frames, 15]``.
    Shape mismatches, non-finite numbers, a non-positive ``fps`` and repeated names raise
    ``ValueError`` with a one-line message.
    """

    fps: float
    names: tuple[str, ...]
    values: np.ndarray
    visemes: np.ndarray | None = None
    start: float = 0.0
    metadata: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        try:
            self.fps = float(self.fps)
            self.start = float(self.start)
        except (TypeError, ValueError) as e:
            raise ValueError(f"Animation: fps and start must be numbers ({e})") from None
        if not (math.isfinite(self.fps) and self.fps > 0):
            raise ValueError(f"Animation: fps must be a positive number, got {self.fps}")
        if not math.isfinite(self.start):
            raise ValueError(f"Animation: start must be finite, got {self.start}")
        self.names = tuple(str(n) for n in self.names)
        if len(set(self.names)) != len(self.names):
            dup = sorted({n for n in self.names if self.names.count(n) > 1})
            raise ValueError(f"Animation: repeated parameter names {dup}")
        values = np.asarray(self.values, dtype=np.float32)
        if values.ndim == 1 and len(self.names) == 0 and values.size == 0:
            values = values.reshape(0, 0)
        if values.ndim != 2 or values.shape[1] != len(self.names):
            raise ValueError(
                f"Animation: values must be [frames, {len(self.names)}] for {len(self.names)} "
                f"names, got shape {list(values.shape)}"
            )
        _check_finite("values", values)
        self.values = np.clip(values, 0.0, 1.0)
        if self.visemes is not None:
            vis = np.asarray(self.visemes, dtype=np.float32)
            if vis.ndim != 2 or vis.shape != (len(values), N_VISEMES):
                raise ValueError(
                    f"Animation: visemes must be [{len(values)}, {N_VISEMES}] (frames x visemes), "
                    f"got shape {list(vis.shape)}"
                )
            _check_finite("visemes", vis)
            if (vis < 0).any():
                raise ValueError("Animation: visemes must be non-negative posteriors")
            self.visemes = vis
        self.metadata = dict(self.metadata)

    @property
    def frames(self) -> int:
        """Number of frames."""
        return int(self.values.shape[0])

    @property
    def times(self) -> np.ndarray:
        """Media time of every frame in seconds (float64): ``start + k / fps``."""
        return self.start + np.arange(self.frames, dtype=np.float64) / self.fps

    @property
    def duration(self) -> float:
        """Seconds covered by the frames: ``frames / fps``."""
        return self.frames / self.fps

    @property
    def end(self) -> float:
        """Media time where the animation ends: ``start + duration``."""
        return self.start + self.duration

    def column(self, name: str) -> np.ndarray | None:
        """The weights of parameter ``name`` (ARKit spelling, first letter in either case), or None."""
        for i, n in enumerate(self.names):
            if n == name or n[:1].lower() + n[1:] == name[:1].lower() + name[1:]:
                return self.values[:, i]
        return None

    def resample(self, fps: float) -> Animation:
        """The same animation at ``fps`` frames per second (24, 25, 30, 50, 60 or any positive rate).

        Output frame ``k`` lies at ``start + k / fps``, so timecodes computed from the new rate
        stay aligned with the media; the output covers the same span (``ceil(frames * fps /
        self.fps)`` frames, the last one holding the final input frame). Weights are linearly
        interpolated between the two input frames around each output time. Linear is right for
        blendshape weights because a face rig is linear in them: the mesh at a blend of two
        weight vectors is the same blend of the two meshes, so interpolating weights
        interpolates the face itself, never overshoots the range ``[0, 1]`` and adds no ringing
        around fast closures, unlike band-limited (sinc) resampling. Viseme posteriors are
        interpolated the same way and renormalised to sum to 1 in every frame. A pose held for
        less than one output frame can fall between two output frames and be softened.
        """
        try:
            fps = float(fps)
        except (TypeError, ValueError):
            raise ValueError(f"resample: fps must be a positive number, got {fps!r}") from None
        if not (math.isfinite(fps) and fps > 0):
            raise ValueError(f"resample: fps must be a positive number, got {fps}")
        n = self.frames
        m = math.ceil(n * fps / self.fps - 1e-9) if n else 0
        src = np.arange(n, dtype=np.float64) / self.fps
        dst = np.arange(m, dtype=np.float64) / fps
        values = _interp_columns(dst, src, self.values)
        visemes = None
        if self.visemes is not None:
            visemes = _interp_columns(dst, src, self.visemes)
            total = visemes.sum(axis=1, keepdims=True)
            visemes = np.where(total > 0, visemes / np.where(total > 0, total, 1), visemes)
        return Animation(
            fps=fps,
            names=self.names,
            values=values,
            visemes=visemes,
            start=self.start,
            metadata=dict(self.metadata),
        )


def _interp_columns(dst: np.ndarray, src: np.ndarray, data: np.ndarray) -> np.ndarray:
    """Linear interpolation of every column of ``data`` (sampled at ``src``) at ``dst``."""
    out = np.empty((len(dst), data.shape[1]), dtype=np.float32)
    if len(src) == 0 or len(dst) == 0:
        return out
    if len(src) == 1:
        out[:] = data[0]
        return out
    pos = np.clip(np.searchsorted(src, dst, side="right") - 1, 0, len(src) - 2)
    frac = np.clip((dst - src[pos]) / (src[pos + 1] - src[pos]), 0.0, 1.0)[:, None]
    lo = data[pos].astype(np.float64)
    hi = data[pos + 1].astype(np.float64)
    out[:] = lo + frac * (hi - lo)
    return out


def _check_finite(what: str, arr: np.ndarray) -> None:
    bad = ~np.isfinite(arr)
    if bad.any():
        frame, col = (int(i) for i in np.argwhere(bad)[0])
        raise ValueError(
            f"Animation: {what} has {int(bad.sum())} non-finite numbers "
            f"(first at frame {frame}, column {col})"
        )


def write_atomic(path: str | os.PathLike, data: str | bytes | Iterable[str]) -> None:
    """Write ``data`` (text, bytes, or text in pieces) beside ``path``, then rename it to ``path``.

    A reader never sees a half-written file, and an interrupted write leaves no temporary file.
    Pieces are written as they come, so a long document never has to be held in memory.
    """
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        if isinstance(data, bytes | bytearray):
            tmp.write_bytes(data)
        else:
            with open(tmp, "w", encoding="utf-8", newline="\n") as f:
                if isinstance(data, str):
                    f.write(data)
                else:
                    for piece in data:
                        f.write(piece)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
