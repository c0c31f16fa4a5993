"""``predictor.keras``: the original system's Keras ``.h5`` models as a graph predictor.

Sits where a ``predictor.*`` node sits: after ``feature.visemes`` (the original's visemeID →
parameter models; their input is the viseme probabilities, one-hot-like) or after
``feature.wav2vec2`` (its wav2vec → parameter models; give it the features the model was
trained on). Ports: ``in`` ← `Visemes` or `Features`; ``out`` → `Params` named ``names``, at the
input's frame rate, in [0, 1].

The model runs through Keras 3 on its torch backend (no TensorFlow; ``Lambda`` layers with
bytecode are refused), see `audio2anim.models.keras_h5`. Windowed models see frames
t - W//2 … t + (W-1)//2 (``alignment: center``, the original's) or t - W + 1 … t (``past``);
frame t leaves once its last window frame has arrived, so ``latency()`` is that lookahead.
The original normalized its parameters with min–max statistics: pass them as ``out_scale``
(max - min) and ``out_offset`` (min) to un-normalize.

```yaml
pred: {op: predictor.keras, params: {path: visemeID/model/visemeID-param-mlp.h5, names: mouth,
                                     out_scale: [...], out_offset: [...]}}
```
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, field_validator

from audio2anim import arkit, streams
from audio2anim.graph.formats import Format
from audio2anim.graph.operator import MediaClock, Operator, OperatorParams, Outputs, Port
from audio2anim.graph.packets import Packet
from audio2anim.graph.registry import register
from audio2anim.streams import Features, Visemes


class KerasParams(OperatorParams):
    path: Path = Field(description="Keras .h5/.hdf5 model file")
    names: str = Field(
        "mouth",
        description="output names in the model's order: 'mouth', 'eyes' (the ARKit groups) or "
        "comma-separated ARKit names",
    )
    alignment: Literal["center", "past"] = Field(
        "center", description="window centred on frame t (the original's) or ending at t"
    )
    out_scale: float | list[float] | None = Field(None, description="un-normalize: y * scale")
    out_offset: float | list[float] | None = Field(None, description="… + offset")

    @field_validator("path")
    @classmethod
    def _model_file(cls, p: Path) -> Path:
        if not p.is_file():
            raise ValueError(f"no such Keras model file: {p}")
        if p.suffix not in (".h5", ".hdf5"):
            raise ValueError(f"expected a .h5/.hdf5 Keras file: {p}")
        return p

    @field_validator("names")
    @classmethod
    def _arkit_names(cls, v: str) -> str:
        if v not in arkit.GROUPS:
            unknown = [n for n in v.split(",") if n.strip() not in arkit.ALL]
            if unknown:
                raise ValueError(f"not ARKit blendshape names: {', '.join(unknown)}")
        return v


@register("predictor.keras")
class KerasPredictorOp(Operator):
    """Runs a Keras .h5 model (the original system's) over viseme or feature frames."""

    requires = ("keras", "h5py")

    Params = KerasParams
    executor = "thread"
    inputs = {"in": Port(object, doc="Visemes (their probabilities) or Features")}
    outputs = {"out": Port(streams.Params, doc="ARKit-named weights in [0, 1]")}

    def setup(self) -> None:
        from audio2anim.models.keras_h5 import load_keras_h5

        p = self.params
        self.names = arkit.GROUPS.get(p.names) or tuple(n.strip() for n in p.names.split(","))
        self.model = load_keras_h5(
            p.path, alignment=p.alignment, out_scale=p.out_scale, out_offset=p.out_offset
        )
        if self.model.out_dim != len(self.names):
            raise ValueError(
                f"{p.path}: the model has {self.model.out_dim} outputs but names lists "
                f"{len(self.names)}"
            )
        self.stream = None
        self.rate = 50.0
        self.clock = MediaClock()

    def reset(self) -> None:
        self.stream = None  # a new window at the next packet
        self.clock.reset()

    def output_format(self, port, inputs):
        rate = inputs["in"].rate if "in" in inputs else None
        return Format(rate, width=len(self.names))

    def latency(self) -> float:
        stream = getattr(self, "stream", None)
        return 0.0 if stream is None else stream.lookahead_frames / self.rate

    def process(self, port: str, packet: Packet) -> Outputs:
        from audio2anim.models.keras_h5 import KerasStream

        payload = packet.payload
        if isinstance(payload, Visemes):
            frames, rate = payload.probs, payload.frame_rate
        elif isinstance(payload, Features):
            frames, rate = payload.data, payload.frame_rate
        else:
            raise TypeError(f"takes Visemes or Features, got {type(payload).__name__}")
        if self.stream is None:
            self.stream = KerasStream(self.model, frames.shape[1])
            self.rate = self.clock.rate = float(rate)
        self.clock.input(packet)
        return self._emit(self.stream.push(frames))

    def flush(self) -> Outputs:
        return None if self.stream is None else self._emit(self.stream.flush())

    def _emit(self, values) -> Outputs:
        if len(values) == 0:
            return None
        t = self.clock.take(len(values))
        return (Packet(streams.Params(values, self.names, self.rate), t),)
