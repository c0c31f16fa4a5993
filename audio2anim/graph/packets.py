"""Packets: a payload plus its two clocks, and the end-of-stream marker."""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Any


@dataclass(frozen=True, slots=True)
class Packet:
    """One unit of data on an edge.

    ``media_time``: seconds since stream start of the first sample/frame in the payload, exact
    (computed from sample or frame counts, never from a clock).
    ``capture_time``: ``time.monotonic()`` when the newest audio this packet depends on entered
    the source. ``received_time``: ``time.monotonic()`` when the runner handed the packet to the
    node now processing it. Operators leave both unset (NaN); the runner stamps them, so
    operators never touch clocks: a node that cares how late a packet is reads `lateness`.
    ``discontinuity``: the stream skipped before this packet (a queue upstream dropped
    packets, or a source lost input), so it does not continue the previous packet's audio.
    The runner sets it on the packet after a drop and carries it to the node's next outputs.
    """

    payload: Any
    media_time: float
    capture_time: float = math.nan
    origin: str = ""  # name of the node that emitted it; stamped by the runner
    received_time: float = math.nan
    discontinuity: bool = False

    def stamped(self, capture_time: float, origin: str) -> Packet:
        return replace(self, capture_time=capture_time, origin=origin)

    def received(self, now: float) -> Packet:
        # once per packet per hop: the constructor is half the cost of dataclasses.replace
        return Packet(
            self.payload, self.media_time, self.capture_time, self.origin, now, self.discontinuity
        )

    def marked(self) -> Packet:
        """This packet, marked as the first after a gap in its stream."""
        return self if self.discontinuity else replace(self, discontinuity=True)

    @property
    def lateness(self) -> float:
        """Seconds from capture to delivery to this node; NaN when either is unknown."""
        return self.received_time - self.capture_time


class EndOfStream:
    """Flows through the graph after a port's last packet; one instance per graph run."""

    __slots__ = ("reason",)

    def __init__(self, reason: str = "done") -> None:
        self.reason = reason

    def __repr__(self) -> str:
        return f"EndOfStream({self.reason!r})"
