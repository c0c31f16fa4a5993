"""``sink.memory``: keeps the parameter (and viseme) frames of a run in memory.

Where it sits: at the end of a graph run from Python; `audio2anim.animate.api.Animator` reads
``params`` and ``visemes`` from the operator instance once the run has ended.

Ports: ``in`` (Params); ``visemes`` (Visemes, optional). Params: none. The collected frames are
lists of ``(media_time, payload)`` in arrival order.

```yaml
keep: {op: sink.memory}
```
"""

from __future__ import annotations

from typing import ClassVar

from audio2anim.graph.operator import Operator, Outputs, Port
from audio2anim.graph.packets import Packet
from audio2anim.graph.registry import register
from audio2anim.streams import Params, Visemes


@register("sink.memory")
class MemorySink(Operator):
    """Collects every Params and Visemes packet (media time, payload)."""

    inputs: ClassVar[dict[str, Port]] = {
        "in": Port(Params, doc="parameters to keep"),
        "visemes": Port(Visemes, required=False, doc="viseme probabilities to keep"),
    }
    outputs: ClassVar[dict[str, Port]] = {}

    def __init__(self, params) -> None:
        super().__init__(params)
        self.params_frames: list[tuple[float, Params]] = []
        self.viseme_frames: list[tuple[float, Visemes]] = []

    @property
    def rows(self) -> int:
        """Parameter frames received so far."""
        return sum(len(p.values) for _, p in self.params_frames)

    def process(self, port: str, packet: Packet) -> Outputs:
        keep = self.viseme_frames if port == "visemes" else self.params_frames
        keep.append((packet.media_time, packet.payload))
        return None
