"""Streaming inference of the five predictors, torch or ONNX Runtime: one core for all.

`open_predictor_stream(checkpoint, backend)` returns a `PredictorStream` whose
``push(frames [k, D])`` gives the parameter frames [j, O] now complete (output t needs input
``t + lookahead``) and whose ``flush()`` gives the rest at the end of the stream. The
concatenated output equals ``model.predict(all_frames)`` (denormalized, in [0, 1]) whatever the
block sizes:

- window models (viseme-mlp, viseme-cnn, w2v-cnn, w2v-attention): output t depends on inputs
  ``t - history … t + lookahead`` only (``history`` = the conv/MLP window's past, plus
  ``attn_layers × attn_window`` frames for the attention model). `WindowStream` keeps that
  many past input frames and runs the model's whole-sequence ``predict`` over history + new
  frames; outputs whose window lies inside the buffer are exact, and at the stream's start and
  end the model's own zero padding is the stream's.
- the autoregressive model (w2v-ar) feeds back its own outputs, so it steps frame by frame with
  explicit state: `ARStream` (torch, from `predictors`) or `OnnxARStream` (its exported step).

The difference between backends is only the function that runs the model: torch
``SequencePredictor.predict`` or `onnx_export.OnnxModel.predict` (the checkpoint's export from
the on-disk cache of `onnx_export.cached_export` unless an exported ``.onnx`` is given).

Model calls go through `audio2anim.models.model_call` (direct, or batched across the sessions
of `audio2anim serve`).
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from .checkpoint import read_sidecar
from .model_call import ModelBatching, arun_steps, model_call, run_steps


class PredictorStream(Protocol):
    lookahead: int

    def push(self, frames: np.ndarray) -> np.ndarray: ...

    def flush(self) -> np.ndarray: ...

    def reset(self) -> None: ...


def warm_up(stream, frames: np.ndarray) -> None:
    """Run ``frames`` through ``stream`` and reset it: the first real packet then does not pay
    for first-call allocations (in a live graph that cost showed up as the p99 latency)."""
    stream.push(frames)
    stream.flush()
    stream.reset()


def history_frames(sidecar: dict) -> int:
    """Past input frames an output frame of a window model depends on."""
    hp, kind = sidecar["hparams"], sidecar["kind"]
    if kind == "viseme-mlp":
        return hp["past"]
    past = hp["layers"] * (hp["kernel"] - 1) - hp["lookahead"]
    if kind == "w2v-attention":
        past += hp["attn_layers"] * hp["attn_window"]
    return past


class WindowStream:
    """Block-wise ``predict`` of a window model (see the module docstring)."""

    def __init__(
        self,
        predict: Callable[[np.ndarray], np.ndarray],
        in_dim: int,
        out_dim: int,
        history: int,
        lookahead: int,
    ) -> None:
        self.predict = predict
        self.in_dim, self.out_dim = in_dim, out_dim
        self.history, self.lookahead = history, lookahead
        self.reset()

    def reset(self) -> None:
        """Forget the stream: the next push starts a new one."""
        self.buf = np.zeros((0, self.in_dim), np.float32)
        self.buf_start = 0  # stream frame index of buf[0]
        self.seen = 0
        self.emitted = 0

    def push(self, frames: np.ndarray) -> np.ndarray:
        return run_steps(self._push(frames), self._predict)

    def flush(self) -> np.ndarray:
        return run_steps(self._emit(self.seen), self._predict)

    async def apush(self, frames: np.ndarray) -> np.ndarray:
        """`push`, its model call awaited (``predict`` has an ``acall``)."""
        return await arun_steps(self._push(frames), self._apredict)

    async def aflush(self) -> np.ndarray:
        return await arun_steps(self._emit(self.seen), self._apredict)

    def _predict(self, x):
        return self.predict(x)

    async def _apredict(self, x):
        return await self.predict.acall(x)

    def _push(self, frames: np.ndarray):
        x = np.asarray(frames, np.float32).reshape(-1, self.in_dim)
        self.buf = np.concatenate([self.buf, x])
        self.seen += len(x)
        return (yield from self._emit(self.seen - self.lookahead))

    def _emit(self, upto: int):
        if upto <= self.emitted:
            return np.zeros((0, self.out_dim), np.float32)
        y = yield self.buf
        out = y[self.emitted - self.buf_start : upto - self.buf_start]
        self.emitted = upto
        keep = max(self.buf_start, upto - self.history)
        self.buf = self.buf[keep - self.buf_start :]
        self.buf_start = keep
        return np.asarray(out, np.float32)


class OnnxARStream:
    """`predictors.ARStream` over the exported single step of an autoregressive model."""

    def __init__(self, onnx_model, in_mean: np.ndarray, in_std: np.ndarray, batching=None) -> None:
        hp = onnx_model.hp
        self.call = model_call(onnx_model, batching)
        # the exported step takes normalized input; the statistics are the checkpoint's buffers
        self.mean = np.asarray(in_mean, np.float32)
        self.std = np.asarray(in_std, np.float32)
        self.lookahead = hp["lookahead"]
        self.out_dim = hp["out_dim"]
        self.hp = hp
        self.reset()

    def reset(self) -> None:
        """Forget the stream: the next push starts a new one."""
        hp = self.hp
        rf = hp["layers"] * (hp["kernel"] - 1) + 1
        self.window = np.zeros((1, hp["in_dim"], rf), np.float32)  # normalized history
        self.prev = np.zeros((1, hp["prev_frames"], hp["out_dim"]), np.float32)
        self.seen = 0

    def _advance(self, xn: np.ndarray):
        self.window = np.concatenate([self.window[:, :, 1:], xn[None, :, None]], axis=2)
        self.seen += 1
        if self.seen - 1 - self.lookahead < 0:
            return None
        out = self.call({"window": self.window, "prev": self.prev})
        y, params = out["y"], out["params"]
        self.prev = np.concatenate([self.prev[:, 1:], y[:, None]], axis=1)
        return params[0]

    def _stack(self, outs) -> np.ndarray:
        if not outs:
            return np.zeros((0, self.out_dim), np.float32)
        return np.stack(outs).astype(np.float32, copy=False)

    def push(self, frames: np.ndarray) -> np.ndarray:
        xn = (np.asarray(frames, np.float32) - self.mean) / self.std
        return self._stack([y for f in xn if (y := self._advance(f)) is not None])

    def flush(self) -> np.ndarray:
        n = self.lookahead if self.seen else 0
        zero = np.zeros(len(self.mean), np.float32)  # normalized zero = the right padding
        return self._stack([y for _ in range(n) if (y := self._advance(zero)) is not None])


def _torch_window_run(checkpoint):
    """The exported window predictor's call in torch, for a batcher on another device:
    device → ({"features": [B, T, D]} → {"params": [B, T, O]} in [0, 1])."""

    def on_device(device: str):
        import torch

        from .checkpoint import load

        model, _ = load(checkpoint, device=device)

        def run(feeds):
            with torch.inference_mode():
                y = model(torch.from_numpy(feeds["features"]).to(device))
                return {"params": model.denormalize_out(y).clamp(0, 1).cpu().numpy()}

        return run

    return on_device


class _BatchedPredict:
    """`OnnxModel.predict` of a window model, its call batched with other sessions' (and
    awaitable: ``acall``)."""

    def __init__(self, call) -> None:
        self.call = call

    def __call__(self, x: np.ndarray) -> np.ndarray:
        return self.call({"features": np.asarray(x, np.float32)[None]})["params"][0]

    async def acall(self, x: np.ndarray) -> np.ndarray:
        out = await self.call.acall({"features": np.asarray(x, np.float32)[None]})
        return out["params"][0]


class _TorchAR:
    """`ARStream` with the ``lookahead`` attribute of the protocol."""

    def __init__(self, model) -> None:
        self.model = model
        self.lookahead = model.lookahead
        self.reset()

    def reset(self) -> None:
        """Forget the stream: the next push starts a new one."""
        from .predictors import ARStream

        self.inner = ARStream(self.model)

    def push(self, frames):
        return self.inner.push(frames)

    def flush(self):
        return self.inner.flush()


# Process-wide cache of ONNX models: (checkpoint directory, the modification times and sizes of
# its files) → (process id, session, exported file). The export itself comes from the on-disk
# cache shared by all processes (`onnx_export.cached_export`: exported once per checkpoint,
# weights and torch version, by whichever process needs it first); this one saves re-hashing
# the weights and reopening the session. One session serves any number of streams (a stream
# keeps its own state; onnxruntime's ``run`` is thread-safe). A checkpoint rewritten in place
# gets a new key. A forked child (a batch worker) opens its own session from the same file.
_ONNX_CACHE: dict[tuple, tuple[int, Any, Path]] = {}
_ONNX_LOCK = threading.Lock()


def cached_onnx_model(checkpoint: str | Path):
    """The `OnnxModel` of ``checkpoint``: from the on-disk export cache, opened once per
    process (see ``_ONNX_CACHE``)."""
    from .checkpoint import checkpoint_identity
    from .onnx_export import OnnxModel, cached_export

    key = checkpoint_identity(checkpoint)
    with _ONNX_LOCK:
        hit = _ONNX_CACHE.get(key)
        if hit is None or (hit[0] != os.getpid() and not hit[2].is_file()):
            model = cached_export(checkpoint)
            hit = _ONNX_CACHE[key] = (os.getpid(), model, model.path)
        elif hit[0] != os.getpid():
            hit = _ONNX_CACHE[key] = (os.getpid(), OnnxModel(hit[2]), hit[2])
    return hit[1]


def open_predictor_stream(
    checkpoint: str | Path,
    backend: str = "torch",
    device: str = "cpu",
    onnx_path: str | Path | None = None,
    batching: ModelBatching | None = None,
):
    """A streaming predictor for a checkpoint directory → ``(stream, sidecar, keepalive)``.

    ``backend``: ``"torch"`` (on ``device``) or ``"onnx"`` (onnxruntime, CPU; ``onnx_path``
    = an existing export, else the checkpoint's export from the on-disk cache, opened once per
    process by `cached_onnx_model`; ``keepalive`` is kept for callers and is None). The sidecar is the
    checkpoint's ``config.json``. ``batching`` (onnx only): its model calls go through the
    shared batchers (see the module docstring).
    """
    sidecar = read_sidecar(checkpoint)
    kind = sidecar["kind"]
    hp = sidecar["hparams"]
    keepalive = None
    if backend == "torch":
        from .checkpoint import load

        model, _ = load(checkpoint, device=device)
        if kind == "w2v-ar":
            return _TorchAR(model), sidecar, None
        predict = model.predict
    elif backend == "onnx":
        from .onnx_export import OnnxModel

        onnx = cached_onnx_model(checkpoint) if onnx_path is None else OnnxModel(onnx_path)
        if onnx.kind != kind:
            raise ValueError(
                f"{onnx_path or checkpoint}: holds a {onnx.kind!r} model, {checkpoint} a {kind!r}"
            )
        if kind == "w2v-ar":
            from safetensors.numpy import load_file

            from .sidecar import verify_files

            verify_files(checkpoint, sidecar.get("files"))
            weights = load_file(str(Path(checkpoint) / "model.safetensors"))
            stream = OnnxARStream(onnx, weights["in_mean"], weights["in_std"], batching)
            return stream, sidecar, keepalive
        if batching is None:
            predict = onnx.predict
        else:
            on_device = None if onnx_path is not None else _torch_window_run(checkpoint)
            predict = _BatchedPredict(model_call(onnx, batching, on_device=on_device))
    else:
        raise ValueError(f"backend {backend!r}: expected 'torch' or 'onnx'")
    stream = WindowStream(
        predict, hp["in_dim"], hp["out_dim"], history_frames(sidecar), hp["lookahead"]
    )
    return stream, sidecar, keepalive
