"""Two viseme recognizers over the same audio, blended frame by frame: a weighted geometric mean
of their posteriors (log-linear pooling), then log-odds offsets per viseme, renormalized.

The offline Whisper graph blends the encoder fine-tuned on short windows (it reads more visemes
right) with the frozen encoder over whole clips (it closes the lips on more P/B/M); the blend
reads more visemes right on the real recorded sets than either alone (docs/performance.md).

Each stream emits ``len(samples) // 320`` frames over a stream, at its own pace: a frame leaves
the blend once every stream has produced it, so the blend waits for the slowest.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

# a class one stream gives (nearly) zero still counts as this unlikely, not impossible
_FLOOR = 1e-8


class BlendedVisemeStream:
    """``streams`` (each ``push(samples)``/``flush()`` → posteriors [k, 15], ``reset()``) →
    their blend: ``exp(Σ wᵢ log pᵢ + bias)`` renormalized, ``weights`` summing to 1, ``bias``
    [15] log-odds offsets (zeros: none)."""

    def __init__(self, streams: Sequence, weights: Sequence[float], bias: np.ndarray) -> None:
        if len(streams) != len(weights) or len(streams) < 2:
            raise ValueError("a blend needs two or more streams, one weight each")
        if any(w <= 0 for w in weights) or abs(sum(weights) - 1.0) > 1e-6:
            raise ValueError(f"blend weights must be positive and sum to 1, got {list(weights)}")
        self.streams, self.weights = list(streams), [float(w) for w in weights]
        self.bias = np.asarray(bias, np.float32)
        self._pending: list[list[np.ndarray]] = [[] for _ in self.streams]

    def reset(self) -> None:
        for s in self.streams:
            s.reset()
        self._pending = [[] for _ in self.streams]

    def push(self, samples: np.ndarray) -> np.ndarray:
        return self._take([s.push(samples) for s in self.streams])

    def flush(self) -> np.ndarray:
        """The rest of the stream; the next ``push`` starts a new one."""
        out = self._take([s.flush() for s in self.streams])
        left = [sum(len(p) for p in pending) for pending in self._pending]
        self.reset()
        if any(left):  # every stream emits len // 320 frames: a mismatch is a bug, not input
            raise RuntimeError(f"blended viseme streams ended {left} frames apart")
        return out

    def _take(self, outs: list[np.ndarray]) -> np.ndarray:
        for pending, out in zip(self._pending, outs, strict=True):
            if len(out):
                pending.append(np.asarray(out, np.float32))
        ready = min(sum(len(p) for p in pending) for pending in self._pending)
        if ready == 0:
            return np.zeros((0, len(self.bias)), np.float32)
        logits = self.bias.copy()[None, :].repeat(ready, axis=0)
        for i, (pending, w) in enumerate(zip(self._pending, self.weights, strict=True)):
            frames = np.concatenate(pending)
            logits += w * np.log(np.maximum(frames[:ready], _FLOOR))
            self._pending[i] = [frames[ready:]] if len(frames) > ready else []
        logits -= logits.max(axis=1, keepdims=True)
        probs = np.exp(logits)
        return (probs / probs.sum(axis=1, keepdims=True)).astype(np.float32)
