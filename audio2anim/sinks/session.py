"""``sink.session``: hands each parameter frame of a session's graph to its network session.

Where it sits: at the end of a session's graph in ``audio2anim serve``, on the parameter
stream (``smooth``) and, when the graph has one, the viseme stream. Ports: ``in`` (Params);
``visemes`` (Visemes, optional). For every frame it calls ``deliver(SessionFrame)`` on the
event loop: media time ``t`` (s), the frame rate ``fps``, the parameter ``names``, the frame's ``values`` (float32
[names]), the viseme posteriors of the same frame (``visemes``: float32 [15], or None without
a viseme stream) and the ``capture`` time of the newest audio the frame used. ``deliver`` must not block (the server queues the
frame for the socket and applies its drop policy there). Viseme frame k goes with the
parameter frame whose time falls in it, as in `audio2anim.animate.api.Animator`; visemes are
emitted before the parameters that follow them (the predictor waits for lookahead), so the
row is there when the frame comes. Params: ``deliver`` (a callable, so the node is built from
Python)::

    graph.nodes["out"] = Node("out", SessionSink, SessionSinkParams(deliver=session.frame))
"""

from __future__ import annotations

from typing import Any, ClassVar, NamedTuple

import numpy as np
from pydantic import ConfigDict, Field

from audio2anim import streams
from audio2anim.graph.operator import Operator, OperatorParams, Outputs, Port
from audio2anim.graph.packets import Packet
from audio2anim.graph.registry import register
from audio2anim.streams import Visemes


class SessionFrame(NamedTuple):
    """One parameter frame as the sink hands it over."""

    t: float
    fps: float
    names: tuple[str, ...]
    values: np.ndarray
    visemes: np.ndarray | None
    capture: float


class SessionSinkParams(OperatorParams):
    model_config = ConfigDict(extra="forbid", frozen=True, arbitrary_types_allowed=True)
    deliver: Any = Field(None, description="callable(SessionFrame) per frame")


@register("sink.session")
class SessionSink(Operator):
    """Passes every parameter frame, with its viseme posteriors, to a network session."""

    Params = SessionSinkParams
    inputs: ClassVar[dict[str, Port]] = {
        "in": Port(streams.Params, doc="parameters to send"),
        "visemes": Port(Visemes, required=False, doc="viseme posteriors to send with them"),
    }
    outputs: ClassVar[dict[str, Port]] = {}

    def __init__(self, params) -> None:
        super().__init__(params)
        self.rows: list[np.ndarray] = []  # viseme posteriors not yet paired, oldest first
        self.first = 0  # frame index of rows[0]
        self.v0: float | None = None
        self.vrate = 50.0

    def process(self, port: str, packet: Packet) -> Outputs:
        p = packet.payload
        if port == "visemes":
            if self.v0 is None:
                self.v0, self.vrate = packet.media_time, float(p.frame_rate)
            self.rows.extend(np.asarray(p.probs, np.float32))
            return None
        deliver = self.params.deliver
        if deliver is None:
            return None
        names = tuple(p.names)
        for i, values in enumerate(np.asarray(p.values, np.float32)):
            t = packet.media_time + i / p.frame_rate
            deliver(
                SessionFrame(
                    t, float(p.frame_rate), names, values, self._viseme_row(t), packet.capture_time
                )
            )
        return None

    def _viseme_row(self, t: float) -> np.ndarray | None:
        if self.v0 is None or not self.rows:
            return None
        k = int(np.floor((t - self.v0) * self.vrate + 1e-6))
        k = min(max(k, self.first), self.first + len(self.rows) - 1)
        # frames come in time order: rows before this one are no longer needed
        del self.rows[: k - self.first]
        self.first = k
        return self.rows[0]
