"""Small operators used only by the graph tests (imported by them, so they register)."""

from __future__ import annotations

import asyncio
import threading
import time

import numpy as np
from pydantic import Field

from audio2anim.graph.operator import Operator, OperatorParams, Port
from audio2anim.graph.packets import Packet
from audio2anim.graph.registry import register
from audio2anim.streams import Audio, Params


class SlowParams(OperatorParams):
    delay_s: float = Field(0.01, ge=0)
    gated: bool = False  # hold the first packet until the test sets ``gate``
    setup_s: float = Field(0.0, ge=0)  # how long its set-up takes


@register("test.slow_sink")
class SlowSink(Operator):
    """Sleeps per packet and remembers what it got; with ``gated`` it takes no packet further
    until ``gate`` is set, so its queue fills whatever the machine's speed."""

    Params = SlowParams
    inputs = {"in": Port(object)}
    outputs = {}

    def setup(self):
        time.sleep(self.params.setup_s)
        self.got: list[Packet] = []
        self.gate = asyncio.Event()
        if not self.params.gated:
            self.gate.set()

    async def process(self, port, packet):
        await self.gate.wait()
        await asyncio.sleep(self.params.delay_s)
        self.got.append(packet)

    def counters(self):
        return {"got": len(self.got)}


class FailParams(OperatorParams):
    after: int = Field(3, ge=0)


@register("test.fail_after")
class FailAfter(Operator):
    """Passes audio through, then raises on packet number ``after``."""

    Params = FailParams
    inputs = {"in": Port(Audio)}
    outputs = {"out": Port(Audio)}

    def setup(self):
        self.n = 0

    def process(self, port, packet):
        self.n += 1
        if self.n > self.params.after:
            raise RuntimeError("deliberate failure")
        return packet


@register("test.params_sink")
class ParamsSink(Operator):
    """Takes a Params stream (for type-mismatch tests)."""

    inputs = {"in": Port(Params)}
    outputs = {}

    def process(self, port, packet):
        return None


@register("test.mix")
class Mix(Operator):
    """Two named audio inputs; records which port each packet came in on."""

    inputs = {"left": Port(Audio), "right": Port(Audio, required=False)}
    outputs = {"out": Port(Audio)}

    def setup(self):
        self.seen: list[tuple[str, float]] = []

    def process(self, port, packet):
        self.seen.append((port, packet.media_time))
        return packet


@register("test.thread_probe")
class ThreadProbe(Operator):
    """Runs on the runner's thread pool and records the thread it ran on."""

    executor = "thread"
    inputs = {"in": Port(Audio)}
    outputs = {"out": Port(Audio)}

    def setup(self):
        self.threads: set[str] = set()

    def process(self, port, packet):
        self.threads.add(threading.current_thread().name)
        return Packet(
            Audio(np.asarray(packet.payload.samples) * 0.5, packet.payload.rate), packet.media_time
        )


class RaiseParams(OperatorParams):
    after: int = Field(3, ge=0)


@register("test.raising_sink")
class RaisingSink(Operator):
    """A sink that raises on packet number ``after``."""

    Params = RaiseParams
    inputs = {"in": Port(object)}
    outputs = {}

    def setup(self):
        self.n = 0

    def process(self, port, packet):
        self.n += 1
        if self.n > self.params.after:
            raise RuntimeError("deliberate sink failure")


class BlockingParams(OperatorParams):
    pass


@register("test.blocking_sink")
class BlockingSink(Operator):
    """A thread sink whose ``process`` waits for ``release`` (a `threading.Event`); it records
    whether ``close`` ever ran while ``process`` was running."""

    Params = BlockingParams
    inputs = {"in": Port(object)}
    outputs = {}
    executor = "thread"

    def setup(self):
        self.release = threading.Event()
        self.started = threading.Event()
        self.running = False
        self.overlap = False
        self.closed = False

    def process(self, port, packet):
        self.running = True
        self.started.set()
        self.release.wait(30)
        self.running = False

    def close(self):
        self.overlap = self.overlap or self.running
        self.closed = True
