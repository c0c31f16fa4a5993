"""Turning sample arrays into timed audio packets, as fast as possible or at wall-clock rate."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Iterable

import numpy as np

from audio2anim.graph.packets import Packet
from audio2anim.streams import Audio


async def audio_packets(
    blocks: Iterable[np.ndarray], rate: int, realtime: bool
) -> AsyncIterator[Packet]:
    """Yield each block as an `Audio` packet whose media time counts the samples before it.

    With ``realtime`` a block is released when a live device would have finished capturing it
    (stream start + end of the block), so downstream latency is measured as in a live run.
    """
    done = 0
    start = time.monotonic()
    for block in blocks:
        if realtime:
            due = start + (done + len(block)) / rate
            delay = due - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
        yield Packet(Audio(np.ascontiguousarray(block, dtype=np.float32), rate), done / rate)
        done += len(block)
        if not realtime:
            await asyncio.sleep(0)  # let downstream run between blocks
