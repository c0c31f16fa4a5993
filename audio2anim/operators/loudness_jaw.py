"""``params.loudness_jaw``: the model-free baseline — louder audio opens the jaw.

Where it sits: directly after an audio source (any rate), in place of a feature extractor and a
predictor. It is what simple avatar tools do when they have no lip-sync model: per animation
frame, the RMS level of the audio in that frame, mapped linearly from ``floor_db`` (closed) to
``ceil_db`` (fully open), becomes ``jawOpen``; ``mouthClose`` is its complement scaled by
``close_gain``. It knows nothing of phonemes (bilabials do not close the mouth), so it is the
floor the trained methods are measured against, and a way to drive an avatar before any model
is trained.

Ports: ``in`` (Audio) -> ``out`` (Params: ``jawOpen``, ``mouthClose`` at ``frame_rate``).

Latency: a frame is emitted once all of its audio has arrived: ``1 / frame_rate``. At a
discontinuity the partial frame before the gap leaves, and frames count again from the packet
after it.

Example node::

    jaw: {op: params.loudness_jaw, params: {frame_rate: 60, floor_db: -50, ceil_db: -15}}
"""

from __future__ import annotations

from typing import ClassVar

import numpy as np
from pydantic import Field, model_validator

from ..graph.formats import Format
from ..graph.operator import Operator, OperatorParams, Outputs, Port
from ..graph.packets import Packet
from ..graph.registry import register
from ..streams import Audio
from ..streams import Params as ParamsStream

NAMES = ("jawOpen", "mouthClose")


class LoudnessJawParams(OperatorParams):
    frame_rate: float = Field(60.0, gt=0, le=1000, description="output frames per second")
    floor_db: float = Field(-50.0, description="RMS level (dBFS) at or below which jawOpen = 0")
    ceil_db: float = Field(-15.0, description="RMS level (dBFS) at or above which jawOpen = 1")
    close_gain: float = Field(
        0.3, ge=0, le=1, description="mouthClose = close_gain * (1 - jawOpen)"
    )

    @model_validator(mode="after")
    def _ceil_above_floor(self) -> LoudnessJawParams:
        if self.ceil_db <= self.floor_db:
            raise ValueError(f"ceil_db ({self.ceil_db}) must be above floor_db ({self.floor_db})")
        return self


@register("params.loudness_jaw")
class LoudnessJaw(Operator):
    """Per-frame RMS level of the audio, mapped to jawOpen (model-free baseline)."""

    Params = LoudnessJawParams
    inputs: ClassVar[dict[str, Port]] = {"in": Port(Audio, doc="mono audio, any rate")}
    outputs: ClassVar[dict[str, Port]] = {"out": Port(ParamsStream, doc="jawOpen, mouthClose")}

    def __init__(self, params: LoudnessJawParams) -> None:
        super().__init__(params)
        self.reset()

    def reset(self) -> None:
        self._rate = 0  # the next packet sets it and the media time frames count from
        self._pending = np.zeros(0, dtype=np.float64)
        self._consumed = 0  # samples before self._pending
        self._frames = 0  # frames emitted
        self._t0 = 0.0

    def output_format(self, port, inputs):
        return Format(self.params.frame_rate, width=len(NAMES))

    def _boundary(self, k: int) -> int:
        """First sample of frame k (exact boundaries, so no drift at non-integer hops)."""
        return round(k * self._rate / self.params.frame_rate)

    def process(self, port: str, packet: Packet) -> Outputs:
        audio = packet.payload
        if not isinstance(audio, Audio):
            raise TypeError(f"params.loudness_jaw: expected Audio, got {type(audio).__name__}")
        if self._rate == 0:
            self._rate, self._t0 = audio.rate, packet.media_time
        elif audio.rate != self._rate:
            raise ValueError(
                f"params.loudness_jaw: sample rate changed mid-stream ({self._rate} -> "
                f"{audio.rate})"
            )
        self._pending = np.concatenate([self._pending, audio.samples.astype(np.float64)])
        return self._emit(final=False)

    def flush(self) -> Outputs:
        return self._emit(final=True)

    def _emit(self, final: bool) -> Outputs:
        if self._rate == 0:
            return None  # no audio since the start or the last reset
        p = self.params
        available = self._consumed + len(self._pending)
        levels = []
        k = self._frames
        while True:
            start, end = self._boundary(k), self._boundary(k + 1)
            if end > available and not (final and start < available):
                break
            chunk = self._pending[start - self._consumed : min(end, available) - self._consumed]
            rms = float(np.sqrt(np.mean(chunk * chunk)))
            # a non-finite block (broken driver) reads as silence rather than NaN weights
            levels.append(20.0 * np.log10(max(rms, 1e-10)) if np.isfinite(rms) else p.floor_db)
            k += 1
        if not levels:
            return None
        first = self._frames
        self._frames = k
        cut = min(self._boundary(k), available) - self._consumed
        self._pending = self._pending[cut:]
        self._consumed += cut
        jaw = np.clip((np.array(levels) - p.floor_db) / (p.ceil_db - p.floor_db), 0.0, 1.0)
        values = np.stack([jaw, p.close_gain * (1.0 - jaw)], axis=1).astype(np.float32)
        media_time = self._t0 + first / p.frame_rate
        return [Packet(ParamsStream(values, NAMES, p.frame_rate), media_time)]

    def latency(self) -> float:
        return 1.0 / self.params.frame_rate
