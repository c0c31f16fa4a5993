"""The Operator base class: what a node of the graph is, and nothing more.

An operator transforms data. It declares its ports (``inputs``/``outputs``: name -> `Port`), a
pydantic ``Params`` model, and where its work runs (``executor``). It never touches queues,
clocks or metrics: the runner owns those (see `audio2anim.graph.runner`).

Life cycle, each step called by the runner (each may be a plain method or ``async def``; plain
methods run on a worker thread when ``executor = "thread"``, so a slow model never stalls the
event loop that captures audio):

    setup()                    open devices, load models; before any packet flows
    input_format(port)         plain methods, after setup: the format each input takes
    output_format(port, ins)   (default: any) and each output carries (default: unknown); the
                               runner checks every edge before any packet flows
                               (`audio2anim.graph.formats`)
    process(port, packet)      -> outputs; for every packet on every input
    flush()                    -> outputs; once every input has ended
    reset()                    an operator that keeps state across packets defines it: when a
                               packet arrives marked ``discontinuity`` (packets were dropped
                               before it), the runner calls flush(), then reset(), then
                               process(); the node's next output on each port is marked too
    close()                    always, also after an error or a stop: release, finalize files

Outputs are an iterable (or None) of `Packet` (sent on port "out") or ``(port, Packet)``
tuples. Sources subclass `Source` and implement the async generator ``packets()`` instead of
``process``. Heavy imports (torch, moderngl, av) belong inside methods, so listing or validating
graphs stays fast.

Media times of outputs come from the inputs' media times: an operator that emits at its own
rate keeps a `MediaClock`, which counts output frames from the first input after the start or
the last reset, so a dropped block never shifts the media times after it.

Register a class with ``@register("family.name")`` from `audio2anim.graph.registry`.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Collection, Iterable, Mapping
from pathlib import Path
from typing import Any, ClassVar, Literal, NamedTuple

from pydantic import AfterValidator, BaseModel, ConfigDict

from .formats import ANY, Format
from .packets import Packet

Output = Packet | tuple[str, Packet]
Outputs = Iterable[Output] | None


def routed(
    outs: Outputs | Packet,
    ports: Collection[str],
    latest_capture: float,
    origin: str,
    gaps: set[str] | None = None,
) -> list[tuple[str, Packet]]:
    """What an operator returned → ``(port, packet)`` pairs, each packet stamped with ``origin``
    and, unless it carries its own, the newest capture time of the inputs it was made from.
    The first packet on a port named in ``gaps`` is marked as a discontinuity (and the port
    taken out of the set): the node consumed a marked packet since its last output there.

    A bare `Packet` goes to port "out"; a port the operator does not declare, or something that
    is not a packet, is a ``TypeError`` naming it. The runner and `graph.testing` both route
    through here, so a test sees exactly what a graph would.
    """
    if outs is None:
        return []
    if isinstance(outs, Packet):
        outs = (outs,)
    pairs = []
    for out in outs:
        port, pkt = ("out", out) if isinstance(out, Packet) else out
        if port not in ports or not isinstance(pkt, Packet):
            raise TypeError(
                f"emitted {type(pkt).__name__} on port '{port}' (outputs: {', '.join(ports) or 'none'})"
            )
        cap = pkt.capture_time
        pkt = pkt.stamped(latest_capture if cap != cap else cap, origin)
        if gaps and port in gaps:
            gaps.discard(port)
            pkt = pkt.marked()
        pairs.append((port, pkt))
    return pairs


def restarts(op: Operator) -> bool:
    """Whether ``op`` keeps state across packets that a discontinuity must reset."""
    return type(op).reset is not Operator.reset


class MediaClock:
    """Media times of the outputs of an operator that emits frames at its own ``rate``.

    Output frames are counted from the media time of the first input packet after the start
    (or the last `reset`): exact within a continuous stretch of input, re-anchored after every
    gap, since the runner resets the operator at a discontinuity. ::

        self.clock = MediaClock(rate)               # in setup()
        self.clock.reset()                          # in reset()
        self.clock.input(packet)                    # in process(), for every input packet
        Packet(payload, self.clock.take(n_frames))  # for each output
    """

    __slots__ = ("rate", "start", "count")

    def __init__(self, rate: float | None = None) -> None:
        self.rate = rate  # may be set once the first payload tells it
        self.reset()

    def reset(self) -> None:
        self.start: float | None = None
        self.count = 0  # frames emitted since start

    def input(self, packet: Packet) -> None:
        if self.start is None:
            self.start = packet.media_time

    def take(self, frames: int) -> float:
        """The media time of the next output of ``frames`` frames (and count them)."""
        if self.rate is None:
            raise RuntimeError("MediaClock.take before its rate is known")
        t = (0.0 if self.start is None else self.start) + self.count / self.rate
        self.count += frames
        return t


class Port(NamedTuple):
    """A typed port. ``type`` is a payload class from `audio2anim.streams` (object = any)."""

    type: type = object
    required: bool = True
    multiple: bool = False  # an input that accepts several incoming edges (fan-in)
    doc: str = ""


class OperatorParams(BaseModel):
    """Base of every operator's params model: unknown fields are errors."""

    model_config = ConfigDict(extra="forbid", frozen=True)


def existing_file(label: str) -> AfterValidator:
    """A params-field check (``Annotated[str | None, existing_file("glb")]``): the file exists."""

    def check(v):
        if v is not None and not Path(v).is_file():
            raise ValueError(f"{label} {str(v)!r}: no such file")
        return v

    return AfterValidator(check)


class Operator:
    """Base class of all graph nodes; see the module docstring for the contract."""

    name: ClassVar[str] = ""  # the registry name, set by @register
    Params: ClassVar[type[OperatorParams]] = OperatorParams
    inputs: ClassVar[dict[str, Port]] = {"in": Port()}
    outputs: ClassVar[dict[str, Port]] = {"out": Port()}
    executor: ClassVar[Literal["loop", "thread"]] = "loop"
    #: optional dependencies (import names, see `audio2anim.resources.OPTIONAL`) checked when a
    #: graph is validated; import them inside setup() so that the registry scan never needs them
    requires: ClassVar[tuple[str, ...]] = ()

    @classmethod
    def required_modules(cls, params: OperatorParams) -> tuple[str, ...]:
        """The optional dependencies a node with ``params`` needs. Default: `requires`."""
        return cls.requires

    def __init__(self, params: OperatorParams) -> None:
        self.params: Any = params

    def setup(self) -> None:
        """Acquire resources. Default: nothing."""

    def process(self, port: str, packet: Packet) -> Outputs:
        raise NotImplementedError(f"{type(self).__name__}.process")

    def flush(self) -> Outputs:
        """Emit what is still buffered once every input has ended. Default: nothing."""
        return None

    def reset(self) -> None:
        """Forget the stream, after `flush` at a discontinuity, so that no filter or model state
        is spliced across a gap. Define it only in an operator that keeps state across packets:
        the runner calls it only where a class overrides it."""

    def input_format(self, port: str) -> Format:
        """The format input ``port`` takes (called after setup). Default: any."""
        return ANY

    def output_format(self, port: str, inputs: Mapping[str, Format]) -> Format:
        """The format output ``port`` carries, given the format arriving on each input port
        (called after setup, in graph order). Default: unknown."""
        return ANY

    def close(self) -> None:
        """Release resources and finalize outputs; called exactly once, also after errors."""

    def latency(self) -> float:
        """Algorithmic latency in seconds (lookahead the operator waits for). Default 0."""
        return 0.0

    def counters(self) -> dict[str, int]:
        """Events only the operator can see (e.g. device overruns), for the run report."""
        return {}


class Source(Operator):
    """An operator with no inputs that produces packets from the outside world."""

    inputs: ClassVar[dict[str, Port]] = {}

    async def packets(self) -> AsyncIterator[Output]:
        raise NotImplementedError(f"{type(self).__name__}.packets")
        yield  # pragma: no cover  (makes this an async generator)
