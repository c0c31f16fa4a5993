"""``source.session``: audio that arrives over a network session (``audio2anim serve``).

Position: first node of a session's graph; the server's socket reader puts each decoded chunk
in ``inbox`` as ``(samples, received)`` (float32 mono at ``rate``; ``time.monotonic()`` when
the chunk arrived), and ``None`` at the end of the stream. Ports: out → Audio. Each packet's
capture time is the chunk's arrival, so end-to-end latency counts from the network, and its
media time counts the samples before it. Chunks that are waiting together (the graph fell
behind) are joined into one packet, up to ``max_block_ms``: the models give the same frames
for any block size, and one call per block instead of per chunk lets the session catch up;
its capture time is the newest chunk's. Params: ``inbox`` (an ``asyncio.Queue``; bounded, so
a graph that falls behind stops the reader, which stops reading the socket: TCP backpressure
instead of drops), ``rate`` (Hz), ``max_block_ms``. The params hold a queue, so the node is built from Python::

    graph.nodes["src"] = Node("src", SessionSource, SessionSourceParams(inbox=q, rate=48000))
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import numpy as np
from pydantic import ConfigDict, Field

from audio2anim.graph.operator import OperatorParams, Output, Port, Source
from audio2anim.graph.packets import Packet
from audio2anim.graph.registry import register
from audio2anim.streams import Audio


class SessionSourceParams(OperatorParams):
    model_config = ConfigDict(extra="forbid", frozen=True, arbitrary_types_allowed=True)
    inbox: Any = Field(description="asyncio.Queue of (float32 samples, arrival time) or None")
    rate: int = Field(gt=0, le=1_000_000, description="sample rate in Hz")
    max_block_ms: float = Field(
        1000.0, gt=0, le=10_000, description="chunks waiting together are joined up to this"
    )


@register("source.session")
class SessionSource(Source):
    """Emits the chunks a network session receives, with their arrival as capture time."""

    Params = SessionSourceParams
    outputs = {"out": Port(Audio, doc="mono audio at rate")}

    async def packets(self) -> AsyncIterator[Output]:
        inbox, rate = self.params.inbox, self.params.rate
        most = max(1, round(rate * self.params.max_block_ms / 1000))
        done, ended = 0, False
        while not ended:
            item = await inbox.get()
            if item is None:
                return
            blocks, received = [item[0]], item[1]
            size = len(item[0])
            # chunks that waited (the graph was behind) go on as one block: one model call
            # instead of one per chunk, so a session that fell behind catches up
            while size < most and not inbox.empty():
                item = inbox.get_nowait()
                if item is None:
                    ended = True
                    break
                blocks.append(item[0])
                received = item[1]
                size += len(item[0])
            samples = blocks[0] if len(blocks) == 1 else np.concatenate(blocks)
            yield Packet(Audio(samples, rate), done / rate, capture_time=received)
            done += len(samples)
