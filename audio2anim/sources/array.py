"""``source.array``: audio held in memory (a numpy array), emitted block by block.

Position: first node of a graph run from Python (`audio2anim.animate.api.Animator` feeds numpy
audio through it). Ports: out → Audio (float32 mono at ``rate``). Params: ``samples`` (a 1-D
array, or ``[samples, channels]`` averaged to mono), ``rate`` (Hz), ``block_ms``. The params
hold an array, so the node is built from Python, never from a graph file's YAML::

    graph.nodes["src"] = Node("src", ArraySource, ArraySourceParams(samples=x, rate=44100))
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import numpy as np
from pydantic import ConfigDict, Field, field_validator

from audio2anim.graph.formats import Format
from audio2anim.graph.operator import OperatorParams, Output, Port, Source
from audio2anim.graph.registry import register
from audio2anim.streams import Audio

from ._pacing import audio_packets


class ArraySourceParams(OperatorParams):
    model_config = ConfigDict(extra="forbid", frozen=True, arbitrary_types_allowed=True)
    samples: Any = Field(description="audio samples: [n] or [n, channels], any float/int dtype")
    rate: int = Field(gt=0, le=1_000_000, description="sample rate in Hz")
    block_ms: float = Field(1000.0, gt=0, le=10_000, description="block length in milliseconds")

    @field_validator("samples")
    @classmethod
    def _mono_finite(cls, x: Any) -> np.ndarray:
        a = np.asarray(x)
        if a.ndim == 2:
            a = a.mean(axis=1) if a.shape[1] > 1 else a[:, 0]
        if a.ndim != 1:
            raise ValueError(f"samples must be [n] or [n, channels], got shape {list(a.shape)}")
        if a.dtype.kind in "iu":  # integer PCM → [-1, 1]
            a = a / float(np.iinfo(a.dtype).max)
        a = np.ascontiguousarray(a, dtype=np.float32)
        if not np.isfinite(a).all():
            raise ValueError(f"samples hold {int((~np.isfinite(a)).sum())} non-finite values")
        return a


@register("source.array")
class ArraySource(Source):
    """Emits an in-memory array as mono float32 blocks with exact media times."""

    Params = ArraySourceParams
    outputs = {"out": Port(Audio, doc="mono audio at rate")}

    def output_format(self, port, inputs):
        return Format(rate=self.params.rate, channels=1)

    async def packets(self) -> AsyncIterator[Output]:
        x, rate = self.params.samples, self.params.rate
        block = max(1, round(rate * self.params.block_ms / 1000))
        async for pkt in audio_packets(
            (x[i : i + block] for i in range(0, len(x), block)), rate, False
        ):
            yield pkt
