"""``sink.jsonl``: one JSON line per packet — who sent it, when, how late, what it held.

Ports: in ← any stream (several edges may feed it). Params: ``path`` (parent folders are
created; the file is replaced).

Each line: ``{"node": producer, "media_time": s, "latency_ms": ms since capture, "payload":
summary}``, where the summary is the payload's ``summary()`` (sizes, rates, IDs), plus
``"discontinuity": true`` on the first packet after packets were dropped. Lines are
flushed as they are written, so a stopped or failed run leaves every line it saw.

```yaml
log: {op: sink.jsonl, params: {path: out/packets.jsonl}}
```
"""

from __future__ import annotations

import json
from pathlib import Path

from pydantic import Field

from audio2anim.graph.operator import Operator, OperatorParams, Outputs, Port
from audio2anim.graph.packets import Packet
from audio2anim.graph.registry import register
from audio2anim.streams import summarize


class JsonlParams(OperatorParams):
    path: Path = Field(description="output file (.jsonl)")


@register("sink.jsonl")
class JsonlSink(Operator):
    """Writes a summary line per packet."""

    Params = JsonlParams
    inputs = {"in": Port(object, multiple=True, doc="any stream")}
    outputs = {}

    def setup(self) -> None:
        self.params.path.parent.mkdir(parents=True, exist_ok=True)
        self._f = self.params.path.open("w", buffering=1)  # line-buffered: nothing lost on stop

    def process(self, port: str, packet: Packet) -> Outputs:
        late = packet.lateness
        line = {
            "node": packet.origin,
            "media_time": round(packet.media_time, 6),
            # capture → arrival at this sink, as the runner stamped them (NaN: unknown)
            "latency_ms": round(late * 1e3, 3) if late == late else None,
            "payload": summarize(packet.payload),
        }
        if packet.discontinuity:  # packets were dropped before this one
            line["discontinuity"] = True
        self._f.write(json.dumps(line) + "\n")
        return None

    def close(self) -> None:
        f = getattr(self, "_f", None)
        if f is not None:
            f.close()
