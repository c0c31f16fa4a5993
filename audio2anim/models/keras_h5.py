"""Keras ``.h5`` models as the original system saved them, run through Keras 3 on torch.

The original research code trained tf.keras models (visemeID → params MLP/CNN, wav2vec →
params CNN variants) and saved them as legacy HDF5 files. Keras 3 reads that format without
TensorFlow when its backend is torch; `load_keras_h5` sets ``KERAS_BACKEND=torch`` before
Keras is first imported (and refuses to run if Keras was already imported with another
backend). Loading uses ``safe_mode=True``: a ``Lambda`` layer carrying Python bytecode is
refused rather than executed.

`KerasPredictor.predict(x [T, D]) → [T, O]` adapts the model's input layout:

- input ``(None, D)``: one frame in, one frame out;
- input ``(None, W, D)`` or ``(None, W * D)``: a window of W frames around each frame
  (``alignment="center"``: frames t - W//2 … t + (W-1)//2, the original's centred windows;
  ``"past"``: t - W + 1 … t), zero-padded at the ends, flattened for the 2-D case;
- output ``(None, O)`` per window, or ``(None, W', O)`` from which the frame aligned like the
  input window is taken.

Outputs are un-normalized with ``out_scale``/``out_offset`` (``y * scale + offset``, e.g. the
original's min–max scaler) when given, then clipped to [0, 1].
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import numpy as np


def _import_keras():
    if "keras" in sys.modules:
        import keras

        if keras.backend.backend() != "torch":
            raise RuntimeError(
                f"keras is already imported with the {keras.backend.backend()!r} backend; "
                "predictor.keras needs KERAS_BACKEND=torch set before the first keras import"
            )
        return keras
    os.environ["KERAS_BACKEND"] = "torch"
    import keras

    return keras


class KerasPredictor:
    """A loaded Keras model with the predictors' numpy API."""

    def __init__(
        self,
        model,
        alignment: str = "center",
        out_scale: np.ndarray | None = None,
        out_offset: np.ndarray | None = None,
    ) -> None:
        if alignment not in ("center", "past"):
            raise ValueError(f"alignment must be 'center' or 'past', got {alignment!r}")
        self.model = model
        self.alignment = alignment
        shape = tuple(model.input_shape)
        self.input_shape = shape
        self.out_dim = int(model.output_shape[-1])
        self.out_scale = None if out_scale is None else np.asarray(out_scale, np.float32)
        self.out_offset = None if out_offset is None else np.asarray(out_offset, np.float32)

    def window(self, in_dim: int) -> int:
        """Frames per model input (1 for a frame-wise model)."""
        shape = self.input_shape
        if len(shape) == 3:
            return int(shape[1])
        if len(shape) == 2:
            if shape[1] % in_dim:
                raise ValueError(f"model input {shape} is not a multiple of {in_dim} features")
            return int(shape[1]) // in_dim
        raise ValueError(f"unsupported model input shape {shape}")

    def _offset(self, w: int) -> int:
        return w // 2 if self.alignment == "center" else w - 1

    def predict(self, x: np.ndarray, batch: int = 512) -> np.ndarray:
        """[T, D] inputs → [T, O] parameters in [0, 1]."""
        x = np.asarray(x, np.float32)
        t, d = x.shape
        w = self.window(d)
        off = self._offset(w)
        padded = np.concatenate(
            [np.zeros((off, d), np.float32), x, np.zeros((w - 1 - off, d), np.float32)]
        )
        windows = np.lib.stride_tricks.sliding_window_view(padded, (w, d))[:, 0]  # [T, W, D]
        if len(self.input_shape) == 2:
            windows = windows.reshape(t, w * d)
        outs = []
        for i in range(0, t, batch):
            y = self.model.predict_on_batch(windows[i : i + batch])
            y = np.asarray(y.detach().cpu() if hasattr(y, "detach") else y, np.float32)
            if y.ndim == 3:
                y = y[:, min(self._offset(y.shape[1]), y.shape[1] - 1)]
            outs.append(y)
        y = np.concatenate(outs) if outs else np.zeros((0, self.out_dim), np.float32)
        if self.out_scale is not None:
            y = y * self.out_scale
        if self.out_offset is not None:
            y = y + self.out_offset
        return np.clip(y, 0.0, 1.0)


class KerasStream:
    """Block-wise `KerasPredictor.predict`: ``push(frames)`` returns the outputs whose window is
    complete, ``flush()`` the rest at the end; concatenated, they equal ``predict`` of the whole
    input. Output frame t waits for ``lookahead_frames`` future frames (centred windows)."""

    def __init__(self, pred: KerasPredictor, in_dim: int) -> None:
        w = pred.window(in_dim)
        self.pred = pred
        self.before = pred._offset(w)
        self.lookahead_frames = w - 1 - self.before
        self.buf = np.zeros((self.before, in_dim), np.float32)  # = predict's own start padding

    def push(self, frames: np.ndarray) -> np.ndarray:
        self.buf = np.concatenate([self.buf, np.asarray(frames, np.float32)])
        return self._ready()

    def flush(self) -> np.ndarray:
        pad = np.zeros((self.lookahead_frames, self.buf.shape[1]), np.float32)
        self.buf = np.concatenate([self.buf, pad])
        return self._ready()

    def _ready(self) -> np.ndarray:
        n = len(self.buf) - self.before - self.lookahead_frames
        if n <= 0:
            return np.zeros((0, self.pred.out_dim), np.float32)
        y = self.pred.predict(self.buf)[self.before : self.before + n]
        self.buf = self.buf[n:]  # keep the context the next frames' windows need
        return y


def load_keras_h5(path: str | Path, **kwargs) -> KerasPredictor:
    """Load a Keras ``.h5``/``.hdf5`` model file → `KerasPredictor` (kwargs: its options)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such Keras model file")
    if path.suffix not in (".h5", ".hdf5"):
        raise ValueError(f"{path}: expected a .h5/.hdf5 Keras file")
    keras = _import_keras()
    try:
        model = keras.saving.load_model(str(path), compile=False, safe_mode=True)
    except Exception as e:
        raise ValueError(f"{path}: Keras could not load it: {e}") from None
    return KerasPredictor(model, **kwargs)
