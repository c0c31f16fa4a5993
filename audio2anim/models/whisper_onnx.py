"""The offline Whisper viseme front end in ONNX Runtime: no torch, no transformers at run time.

`OnnxWhisperVisemes` is `audio2anim.models.whisper_head.WhisperVisemes` for an offline head
(``stream()``, ``posteriors()``, the same windows and frames) with every piece outside torch:

- the log-mel: numpy (`audio2anim.models.whisper_mel`, equal to the torch recipe within float
  rounding);
- the encoder: Whisper's encoder exported once to ONNX (mel [B, n_mels, 2T] → the head's layers
  side by side, any T up to 30 s) and cached on disk (`audio2anim.models.onnx_export.
  cached_whisper_encoder`, keyed by the model folder's files and the versions that made it);
- the head: its ONNX export (frames with context → logits, normalization baked in), cached by
  `audio2anim.models.onnx_export.cached_export`; the viseme bias and the log-softmax in numpy;
- the windows and the head's context: `audio2anim.models.whisper_windows`, the code the torch
  path runs.

The first use on a machine exports (torch and transformers are imported then, and it takes some
seconds); every later process opens the cached files, once per process. Both sessions run on
one thread each, as the other ONNX models of the graphs (a batch runs one process per core).
"""

from __future__ import annotations

import os
import threading
from pathlib import Path

import numpy as np

from audio2anim.visemes import VISEMES

from .whisper_mel import default_model_folder, log_mel, mel_filters
from .whisper_windows import (
    FRAME_SAMPLES,
    ContextStream,
    VisemeWindowStream,
    WindowedEncoder,
    live_settings,
    log_softmax,
    resolve_windows,
)

KIND = "whisper-viseme-head"
_SESSIONS: dict[str, tuple[int, object]] = {}  # cache key → (pid, OnnxModel)
_LOCK = threading.Lock()


def _shared(key: str, open_model):
    """The `OnnxModel` of cache entry ``key``, opened once per process (``open_model()``): every
    run of a graph builds its operators afresh, and an ONNX Runtime session of the encoder
    takes tens of milliseconds to open. A forked process opens its own."""
    with _LOCK:
        hit = _SESSIONS.get(key)
        if hit is None or hit[0] != os.getpid() or not hit[1].path.is_file():
            hit = _SESSIONS[key] = (os.getpid(), open_model())
    return hit[1]


class OnnxWhisperVisemes:
    """An offline ``whisper-viseme-head`` checkpoint and its encoder in ONNX Runtime.

    ``checkpoint``: the head's directory; ``encoder``: a Whisper model folder (None = the
    packaged tiny.en). ValueError (one line) for a live head (its fine-tuned encoder runs in
    `audio2anim.models.whisper_live`) or a head that does not fit the encoder."""

    def __init__(self, checkpoint: str | Path, encoder: str | Path | None = None) -> None:
        from .checkpoint import CheckpointError, read_sidecar
        from .onnx_export import (
            cache_key,
            cached_export,
            cached_whisper_encoder,
            whisper_encoder_key,
        )

        checkpoint = Path(checkpoint)
        self.sidecar = read_sidecar(checkpoint)
        where = checkpoint / "config.json"
        if self.sidecar.get("kind") != KIND:
            raise CheckpointError(f"{where}: a {self.sidecar.get('kind')}, not a {KIND}")
        if live_settings(self.sidecar, where) is not None:
            raise ValueError(f"{checkpoint}: a live head (its own encoder); not for this path")
        hp = self.sidecar["hparams"]
        self.layers = [int(k) for k in hp.get("layers", (-1, 3))]
        self.context = int(hp.get("context", 1))
        folder = default_model_folder() if encoder is None else Path(encoder)
        key = whisper_encoder_key(folder, self.layers)
        self.encoder = _shared(key, lambda: cached_whisper_encoder(folder, self.layers))
        enc = self.encoder.hp
        if int(hp.get("width", 384)) != enc["width"]:
            raise ValueError(
                f"encoder {folder} width {enc['width']} differs from the head's {hp.get('width')}"
            )
        self.head = _shared(cache_key(checkpoint), lambda: cached_export(checkpoint))
        self.filters = mel_filters(enc["n_mels"])
        self.max_frames = int(enc["max_frames"])
        self.dim = enc["width"] * len(self.layers)
        self.set_viseme_bias(hp.get("viseme_bias") or {})

    def set_viseme_bias(self, bias: dict[str, float]) -> None:
        """Replace the per-viseme log-odds offsets ({} removes them; ValueError names an unknown
        viseme), as `audio2anim.models.class_bias.set_viseme_bias` does for the torch head."""
        from .class_bias import bias_array

        self.bias = bias_array(bias, VISEMES, "viseme_bias", "viseme")

    def encode(self, samples16k: np.ndarray) -> np.ndarray:
        """16 kHz samples (≤ 30 s) → the head's layers side by side [ceil(len / 320), dim]."""
        x = np.asarray(samples16k, np.float32).reshape(-1)
        frames = max(1, -(-len(x) // FRAME_SAMPLES))
        if frames > self.max_frames:
            raise ValueError(
                f"{len(x) / 16000:.2f} s is longer than the encoder's "
                f"{self.max_frames * FRAME_SAMPLES / 16000:.0f} s window"
            )
        x = np.pad(x, (0, frames * FRAME_SAMPLES - len(x)))
        return self.encoder.states(log_mel(x, self.filters)[None])[0]

    def head_log_posteriors(self, x: np.ndarray) -> np.ndarray:
        """[n, (2 context + 1) dim] frames with context → log-posteriors [n, 15]."""
        return log_softmax(self.head.logits(x) + self.bias)

    def stream(self, window_s=None, hop_s=None, lookahead_s=None) -> VisemeWindowStream:
        """A `VisemeWindowStream` with these windows (seconds; unset: the offline defaults)."""
        window, hop, lookahead = resolve_windows(None, window_s, hop_s, lookahead_s)
        return VisemeWindowStream(
            WindowedEncoder(self.encode, self.dim, window, hop, lookahead, self.max_frames),
            ContextStream(self.head_log_posteriors, self.context),
        )

    def posteriors(self, audio: np.ndarray, **window) -> np.ndarray:
        """[n] 16 kHz samples → [n // 320, 15] posteriors (offline windows by default)."""
        s = self.stream(**window)
        return np.concatenate([s.push(audio), s.flush()])


__all__ = ["OnnxWhisperVisemes"]
