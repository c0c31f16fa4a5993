"""The windows of the Whisper viseme front end, without torch: which frames come from which
encoder window, each frame's context for the head, and the settings of a checkpoint.

`audio2anim.models.whisper_head` (the encoder and the head in torch) and
`audio2anim.models.whisper_onnx` (both in ONNX Runtime) run the same streams from here, each with
its own encoder and head functions:

- `WindowedEncoder`: ``encode(samples) → states [ceil(len / 320), dim]`` over windows of at most
  30 s → the states of each 20 ms frame exactly once, in order (the window rule is in
  `audio2anim.models.whisper_head`'s docstring).
- `ContextStream`: ``run(x [n, (2c + 1) dim]) → log-posteriors [n, 15]`` over a stream of
  states; a frame leaves once its ``context`` right neighbours have arrived (at the end of the
  stream the last frame is repeated).
- `VisemeWindowStream`: the two together; push 16 kHz samples → posteriors of the frames done.

Importing this module imports numpy only, so that graph validation (`resolve_windows`), the
operator's declared latency and the ONNX path need no torch.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np

from audio2anim.visemes import N_VISEMES

FRAME_SAMPLES = 320  # 16 kHz samples per 20 ms encoder frame
FRAME_RATE = 50
#: the offline defaults (seconds): window, hop, lookahead (see `whisper_head`'s docstring)
OFFLINE_WINDOW = {"window_s": 30.0, "hop_s": 20.0, "lookahead_s": 5.0}


def frames_of(seconds: float) -> int:
    """Seconds → whole 20 ms frames (rounded)."""
    return round(seconds * FRAME_RATE)


def check_window(window: int, hop: int, lookahead: int, max_window: int = 1500) -> None:
    """ValueError (one line) unless 1 ≤ hop, 0 ≤ lookahead, hop + lookahead ≤ window ≤
    ``max_window`` (frames; 1500 = Whisper's 30 s)."""
    if hop < 1:
        raise ValueError(f"hop_s must be at least one 20 ms frame, got {hop} frames")
    if lookahead < 0:
        raise ValueError(f"lookahead_s must not be negative, got {lookahead} frames")
    if window > max_window:
        raise ValueError(
            f"window_s {window / FRAME_RATE:g} s is longer than the encoder's "
            f"{max_window / FRAME_RATE:g} s"
        )
    if hop + lookahead > window:
        raise ValueError(
            f"hop_s + lookahead_s ({(hop + lookahead) / FRAME_RATE:g} s) must not exceed "
            f"window_s ({window / FRAME_RATE:g} s)"
        )


def latency_frames(hop: int, lookahead: int, context: int) -> int:
    """Worst-case frames between the end of a frame and its output: the first frame of a hop
    waits for the hop and the lookahead (less itself); the last waits for the lookahead and
    for its ``context`` right neighbours, which come with the next hop(s)."""
    first = hop + lookahead - 1
    return max(first, math.ceil(context / hop) * hop + lookahead) if context else first


def _lib(x):
    if isinstance(x, np.ndarray):
        return np
    import torch

    return torch


def with_context(x, context: int):
    """[T, D] (numpy or torch) → [T, (2 context + 1) D]: each frame with ``context`` frames
    either side, the edges repeated (frames t − c … t + c side by side, earliest first)."""
    if context == 0:
        return x
    edges = [x[:1]] * context, [x[-1:]] * context
    return valid_context(_lib(x).concatenate([*edges[0], x, *edges[1]]), context)


def valid_context(padded, context: int):
    """[T + 2c, D] (c frames of context at each end) → [T, (2c + 1) D]."""
    n = len(padded) - 2 * context
    return _lib(padded).concatenate([padded[k : k + n] for k in range(2 * context + 1)], 1)


def log_softmax(x: np.ndarray) -> np.ndarray:
    """Log-softmax over the last axis, in float32."""
    x = np.asarray(x, np.float32)
    shifted = x - x.max(axis=-1, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(axis=-1, keepdims=True))


class WindowedEncoder:
    """The encoder over windows: ``push(samples)`` → the states [k, dim] of the frames now done,
    ``flush()`` → the rest. ``encode(samples)`` runs the encoder on one window (at most
    ``max_window`` frames of 16 kHz samples) → [ceil(len / 320), dim]."""

    def __init__(
        self,
        encode: Callable[[np.ndarray], np.ndarray],
        dim: int,
        window: int,
        hop: int,
        lookahead: int,
        max_window: int = 1500,
    ) -> None:
        check_window(window, hop, lookahead, max_window)
        self.encode, self.dim = encode, dim
        self.window, self.hop, self.lookahead = window, hop, lookahead
        self.reset()

    def reset(self) -> None:
        self.audio = np.zeros(0, np.float32)
        self.audio_start = 0  # frame index of audio[0]
        self.samples = 0
        self.emitted = 0

    def _states(self, lo: int, hi: int, first: int, last: int) -> np.ndarray:
        a = (lo - self.audio_start) * FRAME_SAMPLES
        b = (hi - self.audio_start) * FRAME_SAMPLES
        return np.asarray(self.encode(self.audio[a:b]), np.float32)[first - lo : last - lo]

    def _advance(self, final: bool) -> np.ndarray:
        n = self.samples // FRAME_SAMPLES
        outs = []
        while n - self.emitted >= self.hop + self.lookahead:
            last = self.emitted + self.hop
            hi = last + self.lookahead
            outs.append(self._states(max(0, hi - self.window), hi, self.emitted, last))
            self.emitted = last
        if final and self.emitted < n:
            outs.append(self._states(max(0, n - self.window), n, self.emitted, n))
            self.emitted = n
        # the last window of the stream may start up to `window` frames before `emitted`
        drop = max(0, self.emitted - self.window) - self.audio_start
        if drop > 0:
            self.audio = self.audio[drop * FRAME_SAMPLES :]
            self.audio_start += drop
        return np.concatenate(outs) if outs else np.zeros((0, self.dim), np.float32)

    def push(self, samples: np.ndarray) -> np.ndarray:
        x = np.asarray(samples, np.float32).reshape(-1)
        self.audio = np.concatenate([self.audio, x])
        self.samples += len(x)
        return self._advance(final=False)

    def flush(self) -> np.ndarray:
        return self._advance(final=True)


class ContextStream:
    """A head over a stream of states [k, dim]: ``push`` → log-posteriors of the frames whose
    right context has arrived, ``flush()`` → the rest (last frame repeated). ``run`` maps
    [n, (2 context + 1) dim] → log-posteriors [n, 15]."""

    def __init__(self, run: Callable[[np.ndarray], np.ndarray], context: int) -> None:
        self.run, self.context = run, context
        self.reset()

    def reset(self) -> None:
        self.buf: np.ndarray | None = None  # c frames of left context + frames not yet out

    def _run(self) -> np.ndarray:
        c = self.context
        n = len(self.buf) - 2 * c
        if n <= 0:
            return np.zeros((0, N_VISEMES), np.float32)
        out = np.asarray(self.run(valid_context(self.buf, c)), np.float32)
        self.buf = self.buf[n:]
        return out

    def push(self, states: np.ndarray) -> np.ndarray:
        if len(states) == 0:
            return np.zeros((0, N_VISEMES), np.float32)
        c = self.context
        start = np.repeat(states[:1], c, 0) if self.buf is None else self.buf
        self.buf = np.concatenate([start, states])
        return self._run()

    def flush(self) -> np.ndarray:
        if self.buf is None:
            return np.zeros((0, N_VISEMES), np.float32)
        c = self.context
        self.buf = np.concatenate([self.buf, np.repeat(self.buf[-1:], c, 0)])
        out = self._run()
        self.buf = None
        return out


class VisemeWindowStream:
    """16 kHz samples → viseme posteriors [k, 15] at 50 Hz: a `WindowedEncoder` and a
    `ContextStream`. ``push``/``flush``/``reset`` as the other streaming recognizers
    (`audio2anim.models.viseme_streams`); the concatenated output has ``len // 320`` frames."""

    def __init__(self, states: WindowedEncoder, head: ContextStream) -> None:
        self.states, self.head = states, head

    @property
    def latency_frames(self) -> int:
        """`latency_frames` of this stream's windows and head."""
        return latency_frames(self.states.hop, self.states.lookahead, self.head.context)

    def reset(self) -> None:
        self.states.reset()
        self.head.reset()

    def push(self, samples: np.ndarray) -> np.ndarray:
        return np.exp(self.head.push(self.states.push(samples)))

    def flush(self) -> np.ndarray:
        out = [self.head.push(self.states.flush()), self.head.flush()]
        return np.exp(np.concatenate(out))


# -- a checkpoint's settings -------------------------------------------------------------------


def live_settings(sidecar: dict, where=None) -> dict | None:
    """A live checkpoint's ``"streaming"`` settings (None for an offline head); ValueError
    (one line, naming ``where``, default ``config.json``) when only one of
    ``encoder_weights`` / ``streaming`` is there or a setting is missing."""
    where = "config.json" if where is None else where
    weights, streaming = sidecar.get("encoder_weights"), sidecar.get("streaming")
    if weights is None and streaming is None:
        return None
    if not isinstance(weights, str) or not isinstance(streaming, dict):
        raise ValueError(
            f"{where}: a live head needs both 'encoder_weights' (a file name) and 'streaming' "
            "(a mapping)"
        )
    keys = ("window_s", "hop_s", "lookahead_s", "trained_lookahead_frames")
    missing = [k for k in keys if k not in streaming]
    if missing:
        raise ValueError(f"{where}: field 'streaming' lacks {missing[0]!r}")
    return streaming


def resolve_windows(live: dict | None, window_s=None, hop_s=None, lookahead_s=None):
    """(window, hop, lookahead) frames from the given seconds, the rest from ``live`` (a live
    checkpoint's settings) or `OFFLINE_WINDOW`; ValueError (one line) when they do not fit:
    `check_window`, and for a live head the window it was fine-tuned on and lookaheads it was
    trained on."""
    base = live if live is not None else OFFLINE_WINDOW
    given = {"window_s": window_s, "hop_s": hop_s, "lookahead_s": lookahead_s}
    secs = {k: float(base[k]) if v is None else float(v) for k, v in given.items()}
    window, hop, lookahead = (frames_of(secs[k]) for k in ("window_s", "hop_s", "lookahead_s"))
    check_window(window, hop, lookahead)
    if live is not None:
        trained = frames_of(float(live["window_s"]))
        if window != trained:
            raise ValueError(
                f"window_s {window / FRAME_RATE:g} s: this live head's encoder was fine-tuned "
                f"on {trained / FRAME_RATE:g} s windows"
            )
        lo, hi = (int(v) for v in live["trained_lookahead_frames"])
        if lookahead < lo or lookahead + hop - 1 > hi:
            raise ValueError(
                f"hop_s {hop / FRAME_RATE:g} s, lookahead_s {lookahead / FRAME_RATE:g} s: the "
                f"frames' lookaheads {20 * lookahead}-{20 * (lookahead + hop - 1)} ms leave "
                f"the {20 * lo}-{20 * hi} ms this live head was trained on"
            )
    return window, hop, lookahead


def declared_latency_s(sidecar: dict, window_s=None, hop_s=None, lookahead_s=None) -> float:
    """The algorithmic latency (seconds) of a checkpoint's stream with these settings."""
    live = live_settings(sidecar)
    _, hop, lookahead = resolve_windows(live, window_s, hop_s, lookahead_s)
    if live is not None:
        from .whisper_live import live_latency_s

        return live_latency_s(hop, lookahead)
    return latency_frames(hop, lookahead, int(sidecar["hparams"].get("context", 1))) / FRAME_RATE


__all__ = [
    "FRAME_RATE",
    "FRAME_SAMPLES",
    "OFFLINE_WINDOW",
    "ContextStream",
    "VisemeWindowStream",
    "WindowedEncoder",
    "check_window",
    "declared_latency_s",
    "frames_of",
    "latency_frames",
    "live_settings",
    "log_softmax",
    "resolve_windows",
    "valid_context",
    "with_context",
]
