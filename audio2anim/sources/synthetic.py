"""``source.synthetic``: generated test audio — tone, noise, silence or a chirp.

Position: first node of a test or benchmark graph. Ports: out → Audio (float32 mono).
Params: ``kind``, ``frequency`` (Hz; the start frequency of a chirp), ``frequency_end`` (chirp),
``amplitude``, ``duration_s``, ``rate``, ``block_ms``, ``realtime``, ``seed`` (noise).

```yaml
src: {op: source.synthetic, params: {kind: tone, frequency: 440, duration_s: 2, rate: 48000}}
```
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Literal

import numpy as np
from pydantic import Field

from audio2anim.graph.formats import Format
from audio2anim.graph.operator import OperatorParams, Output, Port, Source
from audio2anim.graph.registry import register
from audio2anim.streams import Audio

from ._pacing import audio_packets


class SyntheticParams(OperatorParams):
    kind: Literal["tone", "noise", "silence", "chirp"] = Field("tone", description="signal kind")
    frequency: float = Field(440.0, gt=0, description="tone frequency, or chirp start (Hz)")
    frequency_end: float = Field(4000.0, gt=0, description="chirp end frequency (Hz)")
    amplitude: float = Field(0.5, ge=0, le=1, description="peak amplitude")
    duration_s: float = Field(1.0, gt=0, le=86_400, description="length of the stream")
    rate: int = Field(16000, ge=1000, le=384_000, description="sample rate (Hz)")
    block_ms: float = Field(20.0, gt=0, le=10_000, description="block length in milliseconds")
    realtime: bool = Field(False, description="release blocks at wall-clock rate")
    seed: int = Field(0, description="noise seed")


def synthesize(p: SyntheticParams, start: int, n: int, rng: np.random.Generator) -> np.ndarray:
    """Samples [start, start + n) of the signal ``p`` describes."""
    t = (start + np.arange(n)) / p.rate
    if p.kind == "tone":
        x = np.sin(2 * np.pi * p.frequency * t)
    elif p.kind == "chirp":  # linear sweep over the whole duration
        k = (p.frequency_end - p.frequency) / p.duration_s
        x = np.sin(2 * np.pi * (p.frequency * t + 0.5 * k * t * t))
    elif p.kind == "noise":
        x = rng.uniform(-1.0, 1.0, n)
    else:
        x = np.zeros(n)
    return (p.amplitude * x).astype(np.float32)


@register("source.synthetic")
class SyntheticSource(Source):
    """Emits a generated signal in blocks with exact media times."""

    Params = SyntheticParams
    outputs = {"out": Port(Audio, doc="mono audio at `rate`")}

    def output_format(self, port, inputs):
        return Format(rate=self.params.rate, channels=1)

    async def packets(self) -> AsyncIterator[Output]:
        p = self.params
        total = round(p.duration_s * p.rate)
        block = max(1, round(p.rate * p.block_ms / 1000))
        rng = np.random.default_rng(p.seed)

        def blocks():
            for start in range(0, total, block):
                yield synthesize(p, start, min(block, total - start), rng)

        async for pkt in audio_packets(blocks(), p.rate, p.realtime):
            yield pkt
