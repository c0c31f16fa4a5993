"""``resample``: streaming sample-rate conversion with soxr.

Position: right after a source, before anything that needs a fixed rate (16 kHz for the
feature extractors). Ports: in ← Audio (any rate, fixed for the stream); out → Audio at ``rate``.
Params: ``rate`` (output Hz), ``quality`` (soxr preset).

The filter state carries across packets, so the output does not depend on how the input was cut
into blocks; the tail is flushed at end of stream so the output has the exact expected length
(round(n_in * rate / rate_in) samples). Media time counts output samples from the first
input packet's media time; at a discontinuity (packets dropped before this node) the filter's
tail is flushed, the filter restarts, and the count re-anchors on the packet after the gap.

```yaml
rs: {op: resample, params: {rate: 16000}}
```
"""

from __future__ import annotations

from typing import Literal

import numpy as np
import soxr
from pydantic import Field

from audio2anim.graph.formats import Format
from audio2anim.graph.operator import MediaClock, Operator, OperatorParams, Outputs, Port
from audio2anim.graph.packets import Packet
from audio2anim.graph.registry import register
from audio2anim.streams import Audio


class ResampleParams(OperatorParams):
    rate: int = Field(16000, ge=1000, le=384_000, description="output sample rate (Hz)")
    quality: Literal["QQ", "LQ", "MQ", "HQ", "VHQ"] = Field("HQ", description="soxr quality preset")


@register("resample")
class Resample(Operator):
    """Converts an audio stream of any fixed rate to ``rate``."""

    Params = ResampleParams
    inputs = {"in": Port(Audio, doc="audio at any fixed rate")}
    outputs = {"out": Port(Audio, doc="audio at `rate`")}

    def setup(self) -> None:
        self._in_rate: int | None = None
        self._stream: soxr.ResampleStream | None = None
        self.clock = MediaClock(self.params.rate)

    def reset(self) -> None:
        self._stream = None  # a new filter for the stream after the gap
        self._in_rate = None
        self.clock.reset()

    def output_format(self, port, inputs) -> Format:
        return Format(rate=self.params.rate, channels=1)

    def _emit(self, samples: np.ndarray) -> Outputs:
        if len(samples) == 0:
            return None
        return (Packet(Audio(samples, self.params.rate), self.clock.take(len(samples))),)

    def process(self, port: str, packet: Packet) -> Outputs:
        audio: Audio = packet.payload
        self.clock.input(packet)
        if self._in_rate is None:
            self._in_rate = audio.rate
            if audio.rate != self.params.rate:
                self._stream = soxr.ResampleStream(
                    audio.rate, self.params.rate, 1, dtype="float32", quality=self.params.quality
                )
        elif audio.rate != self._in_rate:
            raise ValueError(
                f"input rate changed mid-stream from {self._in_rate} to {audio.rate} Hz"
            )
        if self._stream is None:
            return self._emit(audio.samples)
        return self._emit(self._stream.resample_chunk(audio.samples, last=False))

    def flush(self) -> Outputs:
        if self._stream is None:
            return None
        return self._emit(self._stream.resample_chunk(np.zeros(0, np.float32), last=True))
