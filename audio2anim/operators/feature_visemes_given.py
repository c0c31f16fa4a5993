"""``feature.visemes_given``: viseme posteriors known in advance, paced by the audio.

Takes the place of ``feature.visemes`` in a viseme graph when the visemes of a recording are
already known — `audio2anim.animate.text` makes them from a forced alignment of the transcript
(``audio2anim animate --text``) — so the same viseme predictor, smoothing and sinks turn them
into parameters::

    src → rs (resample 16000) → vis (feature.visemes_given) → pred (predictor.viseme_cnn) → …

Ports: ``in`` `Audio` (16 kHz mono) → ``out`` `Visemes` (IDs + probabilities [frames, 15] at
``frame_rate``). It emits frame j of ``probs`` once the audio up to its end has arrived, so a
recording gives exactly as many frames, with the same media times, as ``feature.visemes``
gives for it (frame j of a 50 Hz stream covers [20 j, 20 j + 20) ms, ``samples // 320``
frames in all). Audio beyond ``probs`` repeats its last row (the stream is never short). No
lookahead: ``latency()`` is 0.

Params: ``probs`` ([frames, 15] probabilities, rows summing to 1: a numpy array, so the node
is built in code, not in a YAML file), ``frame_rate`` (50 or 100).

Example (in code)::

    graph.nodes["vis"] = Node("vis", GivenVisemes, GivenVisemeParams(probs=p, frame_rate=50))
"""

from __future__ import annotations

from typing import Any, Literal

import numpy as np
from pydantic import ConfigDict, Field, field_validator

from audio2anim.audio import MODEL_RATE as SAMPLE_RATE
from audio2anim.graph.operator import Operator, OperatorParams, Outputs, Port
from audio2anim.graph.packets import Packet
from audio2anim.graph.registry import register
from audio2anim.streams import Audio, Visemes
from audio2anim.visemes import N_VISEMES


class GivenVisemeParams(OperatorParams):
    model_config = ConfigDict(extra="forbid", frozen=True, arbitrary_types_allowed=True)
    probs: Any = Field(description="viseme probabilities [frames, 15], rows summing to 1")
    frame_rate: Literal[50, 100] = Field(50, description="frames per second of probs")

    @field_validator("probs")
    @classmethod
    def _probabilities(cls, x: Any) -> np.ndarray:
        a = np.ascontiguousarray(x, dtype=np.float32)
        if a.ndim != 2 or a.shape[1] != N_VISEMES or len(a) == 0:
            raise ValueError(f"probs must be [frames > 0, {N_VISEMES}], got {list(a.shape)}")
        if not np.isfinite(a).all() or (a < 0).any():
            raise ValueError("probs must be finite and non-negative")
        if not np.allclose(a.sum(axis=1), 1.0, atol=1e-3):
            raise ValueError("probs rows must sum to 1")
        return a


@register("feature.visemes_given")
class GivenVisemes(Operator):
    """16 kHz audio → the given viseme probabilities, one frame per frame of audio received."""

    Params = GivenVisemeParams
    inputs = {"in": Port(Audio, doc="16 kHz mono audio (it paces the output)")}
    outputs = {"out": Port(Visemes, doc="the given viseme IDs + probabilities at frame_rate")}

    def setup(self) -> None:
        self.hop = SAMPLE_RATE // self.params.frame_rate
        self.samples = 0
        self.emitted = 0
        self.start: float | None = None

    def latency(self) -> float:
        return 0.0

    def process(self, port: str, packet: Packet) -> Outputs:
        audio: Audio = packet.payload
        audio.require_rate(SAMPLE_RATE, "feature.visemes_given")
        if self.start is None:
            self.start = packet.media_time
        self.samples += len(audio.samples)
        n = self.samples // self.hop - self.emitted
        if n <= 0:
            return None
        probs = self.params.probs
        rows = np.minimum(np.arange(self.emitted, self.emitted + n), len(probs) - 1)
        x = np.ascontiguousarray(probs[rows])
        t = self.start + self.emitted / self.params.frame_rate
        self.emitted += n
        return (Packet(Visemes(x.argmax(axis=1), x, float(self.params.frame_rate)), t),)
