"""``sink.null``: consumes any stream and discards it (benchmarks, latency measurement).

Ports: in ← any stream (several edges may feed it). Params: none.

```yaml
out: {op: sink.null}
```
"""

from __future__ import annotations

from audio2anim.graph.operator import Operator, Outputs, Port
from audio2anim.graph.packets import Packet
from audio2anim.graph.registry import register


@register("sink.null")
class NullSink(Operator):
    """Discards every packet; the runner still records its end-to-end latency."""

    inputs = {"in": Port(object, multiple=True, doc="any stream")}
    outputs = {}

    def process(self, port: str, packet: Packet) -> Outputs:
        return None
