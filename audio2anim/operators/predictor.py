"""``predictor.*``: the five animation-parameter predictors as streaming operators.

Sit between a feature operator and smoothing::

    vis  (feature.visemes)  → pred (predictor.viseme_mlp | predictor.viseme_cnn)  → smooth → …
    feat (feature.wav2vec2) → pred (predictor.w2v_cnn | w2v_ar | w2v_attention)   → smooth → …
    vis (feature.whisper_visemes) → probs (feature.viseme_probs) → pred (predictor.w2v_*) → …

The w2v predictors take the features their checkpoint was trained on (its sidecar's
``feature``): a wav2vec2 feature (stream kind ``w2v2-`` + the feature), or, for one trained on
a ``whisper-viseme-head``'s posteriors, the viseme probabilities as features (kind
``viseme-probs``, `audio2anim.operators.feature_viseme_probs`); another kind or width is
refused before the graph starts.

| op                       | checkpoint kind | input                         | default checkpoint          |
|--------------------------|-----------------|-------------------------------|-----------------------------|
| ``predictor.viseme_mlp`` | viseme-mlp      | `Visemes` (probabilities, 50 Hz) | ``checkpoints/viseme-mlp`` |
| ``predictor.viseme_cnn`` | viseme-cnn      | `Visemes`                     | ``checkpoints/viseme-cnn``  |
| ``predictor.w2v_cnn``    | w2v-cnn         | `Features` (50 Hz)            | ``checkpoints/w2v-cnn``     |
| ``predictor.w2v_ar``     | w2v-ar          | `Features`                    | ``checkpoints/w2v-ar``      |
| ``predictor.w2v_attention`` | w2v-attention | `Features`                   | ``checkpoints/w2v-attention`` |

One streaming core serves all five (`audio2anim.models.predictor_stream`): window models keep
the past input frames their receptive field needs and emit frame t once input t + lookahead has
arrived; the autoregressive model steps frame by frame and keeps its own previous outputs
across packets. The streamed output equals the model's whole-utterance prediction.

Ports: ``in`` (`Visemes` or `Features` as above) → ``out`` `Params`: the checkpoint's
parameters (the ARKit mouth + eyes groups, named exactly as ARKit spells them), un-normalized
with the checkpoint's statistics and clipped to [0, 1], at 50 Hz; media time of the first frame,
counted from the first input packet's. At a discontinuity the frames still waiting for their
lookahead leave (padded as at the end of a stream), the model's history (window buffer,
autoregressive outputs) is forgotten, and frames count again from the packet after the gap.

Params: ``checkpoint`` (directory), ``backend`` (``torch`` | ``onnx``: ONNX Runtime on the CPU;
the checkpoint's export comes from the on-disk cache of `models.onnx_export.cached_export`,
made at setup if missing, unless ``onnx`` names an exported file; torch is imported only to
export), ``device`` (torch only), ``batching`` (onnx only; set by ``audio2anim serve``, not in
graph files: the model calls go through the service's shared batcher,
`audio2anim.serve.batching`). ``latency()`` = the model's lookahead frames × 20 ms.

Example node::

    pred: {op: predictor.w2v_cnn, params: {checkpoint: checkpoints/w2v-cnn, backend: onnx}}
"""

from __future__ import annotations

from typing import Annotated, Any, ClassVar, Literal

import numpy as np
from pydantic import AfterValidator, Field

from audio2anim.graph.formats import Format
from audio2anim.graph.operator import MediaClock, Operator, OperatorParams, Outputs, Port
from audio2anim.graph.packets import Packet
from audio2anim.graph.registry import register
from audio2anim.models.model_call import awaitable, check_batching
from audio2anim.models.torch_threads import configure_torch_threads
from audio2anim.resources import require_checkpoint
from audio2anim.streams import Features, Params, Visemes
from audio2anim.visemes import VISEME_PROBS


def _params_model(default_checkpoint: str) -> type[OperatorParams]:
    class PredictorParams(OperatorParams):
        checkpoint: str = Field(default_checkpoint, description="predictor checkpoint directory")
        backend: Literal["torch", "onnx"] = Field(
            "torch", description="torch, or ONNX Runtime (CPU)"
        )
        device: Literal["cpu", "cuda"] = Field("cpu", description="torch backend: where it runs")
        onnx: str | None = Field(
            None, description="onnx backend: an exported .onnx (default: export at setup)"
        )
        batching: Annotated[Any, AfterValidator(check_batching)] = Field(
            None, exclude=True, description="onnx: shared model batchers (set by audio2anim serve)"
        )

    return PredictorParams


class StreamingPredictor(Operator):
    """Shared body of the ``predictor.*`` operators; subclasses set ``kind`` and the input."""

    kind: ClassVar[str] = ""
    executor = "thread"
    outputs = {"out": Port(Params, doc="ARKit-named weights in [0, 1], 50 Hz")}

    def setup(self) -> None:
        from audio2anim.models.predictor_stream import open_predictor_stream, warm_up

        p = self.params
        self.torch = p.backend == "torch"  # the onnx backend runs without importing torch
        if self.torch:
            configure_torch_threads()
        where = f"{self.name}: checkpoint"
        path = require_checkpoint(p.checkpoint, where)
        stream, side, self._keepalive = open_predictor_stream(
            path, p.backend, p.device, p.onnx, p.batching
        )
        if side["kind"] != self.kind:
            op = "predictor." + side["kind"].replace("-", "_")
            raise ValueError(
                f"{where} {p.checkpoint!r} holds a {side['kind']!r} model, not {self.kind!r} "
                f"(use {op})"
            )
        self.stream = stream
        self.names = tuple(side["param_names"])
        self.in_dim = side["hparams"]["in_dim"]
        if p.batching is None:
            # batched, the model is the server's, warm since its start: a session's warm-up
            # would only add two odd-shaped calls to the batches of the sessions streaming
            warm_up(stream, np.full((25, self.in_dim), 1.0 / self.in_dim, np.float32))
        self.rate = float(side.get("output_frame_rate", 50.0))
        self.in_rate = float(side.get("input_frame_rate", 50.0))
        # which wav2vec2 feature the predictor was trained on ("posteriors", "hidden-3", ...)
        finfo = side.get("feature") or {}
        self.feature = finfo.get("feature")
        # the stream kind it takes: "w2v2-<feature>", "viseme-probs", or None (viseme input)
        if self.kind.startswith("viseme"):
            self.stream_kind = None
        elif finfo.get("kind") == VISEME_PROBS:
            self.stream_kind = VISEME_PROBS
        else:
            self.stream_kind = f"w2v2-{self.feature}" if self.feature else None
        self.clock = MediaClock(self.rate)
        if p.batching is not None and awaitable(getattr(stream, "predict", None)):
            # batched: the model call is awaited on the event loop, no worker thread per call
            self.process, self.flush = self._process_batched, self._flush_batched

    def reset(self) -> None:
        self.stream.reset()
        self.clock.reset()

    def input_format(self, port):
        return Format(self.in_rate, width=self.in_dim, kind=self.stream_kind)

    def output_format(self, port, inputs):
        return Format(self.rate, width=len(self.names))

    def latency(self) -> float:
        from audio2anim.models.checkpoint import read_sidecar

        try:
            side = read_sidecar(require_checkpoint(self.params.checkpoint, self.name))
            return side["hparams"]["lookahead"] / float(side.get("input_frame_rate", 50.0))
        except (OSError, ValueError, KeyError):
            return 0.0

    def _frames(self, payload) -> np.ndarray:
        if isinstance(payload, Visemes):
            data, rate = payload.probs, payload.frame_rate
        else:
            data, rate = payload.data, payload.frame_rate
        if abs(rate - self.in_rate) > 1e-6:
            raise ValueError(
                f"{self.name}: input is {rate:g} frames/s, the checkpoint takes {self.in_rate:g}"
            )
        kind = getattr(payload, "kind", "")
        if self.stream_kind and kind and kind != self.stream_kind:
            if self.stream_kind == VISEME_PROBS:
                raise ValueError(
                    f"{self.name}: input is {kind!r}, the checkpoint was trained on viseme "
                    "posteriors (feed it feature.whisper_visemes → feature.viseme_probs)"
                )
            if kind.startswith("w2v2-"):
                raise ValueError(
                    f"{self.name}: input is wav2vec2 {kind[5:]!r}, the checkpoint was trained on "
                    f"{self.feature!r} (set feature: {self.feature} on the feature.wav2vec2 node)"
                )
        if data.shape[1] != self.in_dim:
            raise ValueError(
                f"{self.name}: input has {data.shape[1]} dims, the checkpoint takes {self.in_dim} "
                "(features of another wav2vec2 model or feature choice?)"
            )
        return data

    def process(self, port: str, packet: Packet) -> Outputs:
        if self.torch:
            configure_torch_threads()
        self.clock.input(packet)
        return self._emit(self.stream.push(self._frames(packet.payload)))

    def flush(self) -> Outputs:
        if self.torch:
            configure_torch_threads()
        return self._emit(self.stream.flush())

    async def _process_batched(self, port: str, packet: Packet) -> Outputs:
        self.clock.input(packet)
        return self._emit(await self.stream.apush(self._frames(packet.payload)))

    async def _flush_batched(self) -> Outputs:
        return self._emit(await self.stream.aflush())

    def close(self) -> None:
        keep = getattr(self, "_keepalive", None)
        if keep is not None:
            keep.cleanup()

    def _emit(self, values: np.ndarray) -> Outputs:
        if len(values) == 0:
            return None
        return (Packet(Params(values, self.names, self.rate), self.clock.take(len(values))),)


@register("predictor.viseme_mlp")
class VisemeMLP(StreamingPredictor):
    """Visemes → ARKit parameters with a window MLP (viseme method)."""

    kind = "viseme-mlp"
    Params = _params_model("checkpoints/viseme-mlp")
    inputs = {"in": Port(Visemes, doc="viseme probabilities at 50 Hz")}


@register("predictor.viseme_cnn")
class VisemeCNN(StreamingPredictor):
    """Visemes → ARKit parameters with stacked 1-D convolutions (viseme method)."""

    kind = "viseme-cnn"
    Params = _params_model("checkpoints/viseme-cnn")
    inputs = {"in": Port(Visemes, doc="viseme probabilities at 50 Hz")}


@register("predictor.w2v_cnn")
class W2vCNN(StreamingPredictor):
    """Features (wav2vec2, or viseme-probs) → ARKit parameters with stacked 1-D convolutions."""

    kind = "w2v-cnn"
    Params = _params_model("checkpoints/w2v-cnn")
    inputs = {"in": Port(Features, doc="wav2vec2 features or viseme-probs at 50 Hz")}


@register("predictor.w2v_ar")
class W2vAR(StreamingPredictor):
    """Features → ARKit parameters, a CNN fed its own previous outputs (stateful)."""

    kind = "w2v-ar"
    Params = _params_model("checkpoints/w2v-ar")
    inputs = {"in": Port(Features, doc="wav2vec2 features or viseme-probs at 50 Hz")}


@register("predictor.w2v_attention")
class W2vAttention(StreamingPredictor):
    """Features → ARKit parameters, a CNN with windowed self-attention."""

    kind = "w2v-attention"
    Params = _params_model("checkpoints/w2v-attention")
    inputs = {"in": Port(Features, doc="wav2vec2 features or viseme-probs at 50 Hz")}
