"""``feature.visemes``: 16 kHz audio → per-frame Oculus visemes, streaming.

Sits after ``resample`` and before a viseme predictor (the viseme method)::

    src → rs (resample 16000) → vis (feature.visemes) → pred (predictor.viseme_mlp|cnn) → smooth → …

Ports: ``in`` `Audio` (16 kHz mono) → ``out`` `Visemes` (IDs + probabilities [frames, 15] of
the 15 Oculus visemes, at ``frame_rate``). A packet's media time is that of its first frame;
frame j of a 50 Hz stream covers the audio [20 j, 20 j + 20) ms. At a discontinuity the
recognizer flushes and restarts (no recurrent state crosses the gap) and frames count again
from the packet after the gap.

An adapter over the streaming recognizers of `audio2anim.models.viseme_streams`
(``backend``):

- ``torch`` (default) / ``onnx``: the trained viseme front end (``model``, default
  ``checkpoints/viseme-frontend``), `TorchFrontEndStream` / `OnnxFrontEndStream`. The model
  labels each 10 ms frame after hearing ``lookahead`` more frames (40 ms for the shipped
  model): that is this operator's ``latency()``, plus 10 ms at 50 Hz (a 20 ms frame averages
  two 10 ms ones, so its first half waits for its second). The output equals the offline
  ``downsample_posteriors(front.posteriors(logmel(audio)))`` whatever the block sizes.
- ``pocketsphinx``: phone-loop recognition, `PocketsphinxVisemes`; a frame leaves once the
  partial hypothesis has moved ``stable_ms`` past it, which is this backend's ``latency()``.

Params: ``model``, ``backend``, ``frame_rate`` (50 = what the viseme predictors take, or 100),
``viseme_bias`` (trained front end only: log-odds offsets per viseme, e.g. ``{PP: 1.5}``, that
replace the checkpoint's own ``viseme_bias``; ``{}`` = none: each posterior is reweighted by
e^(new − stored) and renormalized, which is what the model would output with that bias),
``stable_ms`` and ``restart_s`` (pocketsphinx only), ``batching`` (onnx only; set by
``audio2anim serve``, not in graph files: the front end's calls go through the service's
shared model batcher, `audio2anim.serve.batching`).

Example node::

    vis: {op: feature.visemes, params: {model: checkpoints/viseme-frontend, frame_rate: 50}}
    vis: {op: feature.visemes, params: {backend: pocketsphinx, stable_ms: 120}}
    vis: {op: feature.visemes, params: {viseme_bias: {PP: 1.5}}}   # lips close more eagerly
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

import numpy as np
from pydantic import AfterValidator, Field, field_validator, model_validator

from audio2anim.audio import MODEL_RATE as SAMPLE_RATE
from audio2anim.graph.formats import Format
from audio2anim.graph.operator import MediaClock, Operator, OperatorParams, Outputs, Port
from audio2anim.graph.packets import Packet
from audio2anim.graph.registry import register
from audio2anim.models.model_call import awaitable, check_batching
from audio2anim.models.torch_threads import configure_torch_threads
from audio2anim.models.viseme_streams import (
    FRAME_S,
    OnnxFrontEndStream,
    PocketsphinxVisemes,
    TorchFrontEndStream,
    bias_reweighting,
    frontend_lookahead_s,
)
from audio2anim.resources import require_checkpoint
from audio2anim.streams import Audio, Visemes
from audio2anim.visemes import N_VISEMES


class VisemeFeatureParams(OperatorParams):
    model: str = Field(
        "checkpoints/viseme-frontend", description="viseme front-end checkpoint directory"
    )
    backend: Literal["torch", "onnx", "pocketsphinx"] = Field(
        "torch", description="trained front end (torch or ONNX Runtime) or pocketsphinx phones"
    )
    frame_rate: Literal[50, 100] = Field(
        50, description="output frames per second (50: pairs of 10 ms frames averaged)"
    )
    stable_ms: float = Field(
        120.0, ge=0, le=2000, description="pocketsphinx: age of a frame before it is emitted"
    )
    restart_s: float = Field(
        20.0, ge=1, le=600, description="pocketsphinx: start a new utterance after this long"
    )
    viseme_bias: dict[str, float] | None = Field(
        None,
        description="trained front end: log-odds offset per viseme, e.g. {PP: 1.5}, replacing "
        "the checkpoint's (None: the checkpoint's; {}: none)",
    )

    batching: Annotated[Any, AfterValidator(check_batching)] = Field(
        None, exclude=True, description="onnx: shared model batchers (set by audio2anim serve)"
    )

    @field_validator("viseme_bias")
    @classmethod
    def _known_visemes(cls, bias):
        from audio2anim.models.class_bias import check_bias_names
        from audio2anim.visemes import VISEMES

        check_bias_names(bias or {}, VISEMES, "viseme_bias", "viseme")
        return bias

    @model_validator(mode="after")
    def _bias_needs_a_model(self):
        if self.viseme_bias is not None and self.backend == "pocketsphinx":
            raise ValueError("viseme_bias applies to the trained front end (backend torch or onnx)")
        return self


@register("feature.visemes")
class VisemeFeatures(Operator):
    """16 kHz audio → Oculus viseme IDs and probabilities (trained front end or pocketsphinx)."""

    Params = VisemeFeatureParams
    inputs = {"in": Port(Audio, doc="16 kHz mono audio")}
    outputs = {"out": Port(Visemes, doc="viseme IDs + probabilities at frame_rate")}
    executor = "thread"

    @classmethod
    def required_modules(cls, params: VisemeFeatureParams) -> tuple[str, ...]:
        return ("pocketsphinx",) if params.backend == "pocketsphinx" else ()

    def setup(self) -> None:
        p = self.params
        self.torch = p.backend == "torch"  # onnx and pocketsphinx run without torch
        if self.torch:
            configure_torch_threads()
        self.reweight = None  # posteriors as the model gives them
        if p.backend == "pocketsphinx":
            self.recognizer = PocketsphinxVisemes(p.stable_ms, p.restart_s)
        else:
            model_dir = require_checkpoint(p.model, "feature.visemes: model")
            if p.backend == "torch":
                self.recognizer = TorchFrontEndStream(model_dir)
            else:
                self.recognizer = OnnxFrontEndStream(model_dir, p.batching)
            if p.viseme_bias is not None:
                self.reweight = bias_reweighting(model_dir, p.viseme_bias)
        # first calls allocate; pay for that here, not on the first live packet
        self.recognizer.push(np.zeros(SAMPLE_RATE // 2, np.float32))
        self.recognizer.flush()
        self.recognizer.reset()
        if p.batching is not None and awaitable(getattr(self.recognizer, "call", None)):
            # batched: the model call is awaited on the event loop, no worker thread per call
            self.process, self.flush = self._process_batched, self._flush_batched
        self.factor = 100 // p.frame_rate
        self.pending = np.zeros((0, N_VISEMES), np.float32)  # 10 ms frames not yet paired
        self.clock = MediaClock(p.frame_rate)

    def reset(self) -> None:
        self.recognizer.reset()
        self.pending = np.zeros((0, N_VISEMES), np.float32)
        self.clock.reset()

    def input_format(self, port):
        return Format(rate=SAMPLE_RATE, channels=1)

    def output_format(self, port, inputs):
        return Format(rate=self.params.frame_rate, width=N_VISEMES)

    def latency(self) -> float:
        p = self.params
        pairing = FRAME_S if p.frame_rate == 50 else 0.0
        if p.backend == "pocketsphinx":
            return p.stable_ms / 1000 + pairing
        try:
            return (
                frontend_lookahead_s(require_checkpoint(p.model, "feature.visemes: model"))
                + pairing
            )
        except (OSError, ValueError, KeyError):
            return pairing

    def process(self, port: str, packet: Packet) -> Outputs:
        if self.torch:
            configure_torch_threads()
        audio: Audio = packet.payload
        audio.require_rate(SAMPLE_RATE, "feature.visemes")
        self.clock.input(packet)
        return self._emit(self.recognizer.push(audio.samples))

    def flush(self) -> Outputs:
        if self.torch:
            configure_torch_threads()
        return self._emit(self.recognizer.flush())

    async def _process_batched(self, port: str, packet: Packet) -> Outputs:
        audio: Audio = packet.payload
        audio.require_rate(SAMPLE_RATE, "feature.visemes")
        self.clock.input(packet)
        return self._emit(await self.recognizer.apush(audio.samples))

    async def _flush_batched(self) -> Outputs:
        return self._emit(await self.recognizer.aflush())

    def _emit(self, probs: np.ndarray) -> Outputs:
        if len(probs) == 0:
            return None
        if self.reweight is not None:
            probs = probs * self.reweight
            probs /= probs.sum(axis=1, keepdims=True)
        x = np.concatenate([self.pending, probs]) if len(self.pending) else probs
        n = len(x) // self.factor
        self.pending = x[n * self.factor :]
        if n == 0:
            return None
        x = x[: n * self.factor].reshape(n, self.factor, N_VISEMES).mean(axis=1)
        x = np.ascontiguousarray(x, dtype=np.float32)
        payload = Visemes(x.argmax(axis=1), x, float(self.params.frame_rate))
        return (Packet(payload, self.clock.take(n)),)
