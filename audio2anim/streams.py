"""Payload types of the streams that flow between operators.

Ports declare one of these classes; the graph checks before a run that an output's type is the
same as, or a subclass of, the input it feeds (``object`` on a port means "any stream").
Payloads are immutable by convention: a fanned-out packet is shared, never copied, so an
operator must not modify arrays it received.

| stream   | class      | payload                                                        |
|----------|------------|----------------------------------------------------------------|
| audio    | `Audio`    | float32 mono samples + sample rate                             |
| features | `Features` | [frames, dims] float32 + frame rate                            |
| visemes  | `Visemes`  | per-frame viseme ID + class probabilities + frame rate         |
| params   | `Params`   | per-frame animation parameters, ARKit-named, + frame rate      |
| frames   | `Frames`   | rendered RGB images (uint8) + frame rate                       |

A packet's media time (see `audio2anim.graph.packets.Packet`) is the time of the first sample
or frame in its payload.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True, slots=True)
class Audio:
    """Mono float32 samples in [-1, 1] at ``rate`` Hz."""

    samples: np.ndarray
    rate: int

    @property
    def duration(self) -> float:
        return len(self.samples) / self.rate

    def summary(self) -> dict:
        return {"samples": int(len(self.samples)), "rate": self.rate}

    def require_rate(self, rate: int, owner: str) -> None:
        """Raise one ValueError naming ``owner`` (the operator) unless this audio is at ``rate``
        Hz: operators that need a fixed rate leave resampling to a `resample` node."""
        if self.rate != rate:
            raise ValueError(
                f"{owner}: input audio is {self.rate} Hz, needs {rate} Hz "
                "(put a resample node before it)"
            )


@dataclass(frozen=True, slots=True)
class Features:
    """A block of feature frames, ``data`` shaped [frames, dims], at ``frame_rate`` Hz."""

    data: np.ndarray
    frame_rate: float
    kind: str = ""  # e.g. "logmel", "w2v2-posteriors", "w2v2-hidden-3"

    def summary(self) -> dict:
        return {
            "frames": int(self.data.shape[0]),
            "dims": int(self.data.shape[1]),
            "kind": self.kind,
        }


@dataclass(frozen=True, slots=True)
class Visemes:
    """Per-frame viseme IDs (Oculus 15-class set) and their probabilities [frames, 15]."""

    ids: np.ndarray
    probs: np.ndarray
    frame_rate: float

    def summary(self) -> dict:
        return {"frames": int(len(self.ids)), "ids": self.ids.tolist()}


@dataclass(frozen=True, slots=True)
class Params:
    """Animation parameters, ``values`` shaped [frames, len(names)], weights in [0, 1]."""

    values: np.ndarray
    names: tuple[str, ...]
    frame_rate: float

    def summary(self) -> dict:
        return {"frames": int(self.values.shape[0]), "params": len(self.names)}


@dataclass(frozen=True, slots=True)
class Frames:
    """Rendered RGB images, ``images`` shaped [n, height, width, 3] uint8."""

    images: np.ndarray
    frame_rate: float

    def summary(self) -> dict:
        n, h, w = self.images.shape[:3]
        return {"frames": int(n), "size": [int(w), int(h)]}


def summarize(payload: object) -> object:
    """A small JSON-able description of a payload, for logs and the JSONL sink."""
    summary = getattr(payload, "summary", None)
    if callable(summary):
        return summary()
    return repr(payload)[:200]
