"""The operator test harness (`audio2anim.graph.testing`): the runner's life cycle and output
rules, without a graph."""

from __future__ import annotations

import asyncio
import threading

import numpy as np
import pytest

import tests.graph_ops as graph_ops
from audio2anim.graph.operator import Operator, Port
from audio2anim.graph.packets import Packet
from audio2anim.graph.testing import (
    audio_packets,
    params_packets,
    run_operator,
    run_operator_async,
)
from audio2anim.streams import Audio, Params


class Splitter(Operator):
    """Even-numbered packets to "out" (bare), odd to "odd" (tuple); flush emits a tail."""

    inputs = {"in": Port(Audio)}
    outputs = {"out": Port(Audio), "odd": Port(Audio)}

    def __init__(self, params):
        super().__init__(params)
        self.calls: list[str] = []

    async def setup(self):
        self.calls.append("setup")
        self.n = 0

    async def process(self, port, packet):
        self.calls.append("process")
        self.n += 1
        return [packet] if self.n % 2 else [("odd", packet)]

    def flush(self):
        self.calls.append("flush")
        return Packet(Audio(np.zeros(1, np.float32), 16000), 99.0, capture_time=5.0)

    def close(self):
        self.calls.append("close")


class WrongPort(Operator):
    inputs = {"in": Port(Audio)}
    outputs = {"out": Port(Audio)}

    def process(self, port, packet):
        return [("nowhere", packet)]


def test_life_cycle_ports_and_stamps():
    op = Splitter(Splitter.Params())
    pkts = audio_packets(np.zeros(1000, np.float32), 16000, block=200)
    pkts[1] = Packet(pkts[1].payload, pkts[1].media_time, capture_time=2.0)
    out = run_operator(op, pkts)
    assert op.calls == ["setup", *["process"] * 5, "flush", "close"]
    assert [p.media_time for p in out["out"]] == [0.0, 400 / 16000, 800 / 16000, 99.0]
    assert [p.media_time for p in out["odd"]] == [200 / 16000, 600 / 16000]
    assert all(p.origin == "Splitter" for p in out["out"] + out["odd"])
    # outputs carry the newest capture time consumed; one the operator set is kept
    assert np.isnan(out["out"][0].capture_time)
    assert [p.capture_time for p in out["odd"]] == [2.0, 2.0]
    assert out["out"][-1].capture_time == 5.0


def test_packets_from_arrays_have_exact_media_times():
    pkts = audio_packets(np.arange(10, dtype=np.float32), 8000, block=[3, 3, 4], start=1.0)
    assert [len(p.payload.samples) for p in pkts] == [3, 3, 4]
    assert [p.media_time for p in pkts] == [1.0, 1.0 + 3 / 8000, 1.0 + 6 / 8000]
    par = params_packets(np.zeros((7, 2), np.float32), ["a", "b"], 60.0, block=3)
    assert [len(p.payload.values) for p in par] == [3, 3, 1]
    assert isinstance(par[0].payload, Params) and par[0].payload.names == ("a", "b")
    with pytest.raises(ValueError, match="add up to 9"):
        audio_packets(np.zeros(10, np.float32), 8000, block=[4, 5])


def test_fan_in_merges_by_media_time_and_explicit_order_is_kept():
    left = audio_packets(np.zeros(30, np.float32), 100, block=10)  # 0, 0.1, 0.2
    right = audio_packets(np.zeros(20, np.float32), 100, block=10, start=0.05)  # 0.05, 0.15
    op = graph_ops.Mix(graph_ops.Mix.Params())
    out = run_operator(op, {"left": left, "right": right})
    assert [port for port, _ in op.seen] == ["left", "right", "left", "right", "left"]
    assert [t for _, t in op.seen] == pytest.approx([0.0, 0.05, 0.1, 0.15, 0.2])
    assert len(out["out"]) == 5
    op = graph_ops.Mix(graph_ops.Mix.Params())
    run_operator(op, [("right", right[1]), ("left", left[0])])
    assert op.seen == [("right", right[1].media_time), ("left", 0.0)]
    with pytest.raises(ValueError, match="no input 'middle'"):
        run_operator(graph_ops.Mix, [("middle", left[0])])


def test_thread_executor_and_registry_names():
    op = graph_ops.ThreadProbe(graph_ops.ThreadProbe.Params())
    out = run_operator(op, audio_packets(np.ones(100, np.float32), 16000, block=50))["out"]
    assert op.threads and threading.current_thread().name not in op.threads
    assert [float(p.payload.samples[0]) for p in out] == [0.5, 0.5]
    slow = run_operator("test.slow_sink", [], {"delay_s": 0})
    assert slow == {}  # a sink: no output ports


def test_errors_propagate_after_close():
    closed = []

    class Failing(graph_ops.FailAfter):
        def close(self):
            closed.append(True)

    with pytest.raises(RuntimeError, match="deliberate failure"):
        run_operator(Failing, audio_packets(np.zeros(50, np.float32), 100, block=10), {"after": 2})
    assert closed == [True]
    with pytest.raises(TypeError, match="emitted Packet on port 'nowhere'"):
        run_operator(WrongPort, audio_packets(np.zeros(5, np.float32), 100))


def test_sources_are_collected_and_limit_stops_them():
    out = run_operator("source.synthetic", params={"duration_s": 0.1, "block_ms": 20})["out"]
    assert len(out) == 5 and [p.media_time for p in out] == pytest.approx(
        [0, 0.02, 0.04, 0.06, 0.08]
    )
    assert len(run_operator("source.synthetic", params={"duration_s": 60}, limit=3)["out"]) == 3


def test_async_variant_inside_a_loop():
    async def main():
        with pytest.raises(RuntimeError, match="run_operator_async"):
            run_operator(Splitter, [])  # async methods need the loop already running
        assert len(run_operator(graph_ops.Mix, [])["out"]) == 0  # plain methods need none
        return await run_operator_async(Splitter, audio_packets(np.zeros(4), 100, block=2))

    out = asyncio.run(main())
    assert len(out["out"]) == 2 and len(out["odd"]) == 1  # one packet, then the flush tail


def test_a_lost_packet_is_seen():
    """The harness reports what the operator emits, so a test can fail: an operator that drops
    its second packet yields one output less than a pass-through."""

    class DropsSecond(Operator):
        inputs = {"in": Port(Audio)}
        outputs = {"out": Port(Audio)}

        def setup(self):
            self.n = 0

        def process(self, port, packet):
            self.n += 1
            return None if self.n == 2 else packet

    pkts = audio_packets(np.zeros(40, np.float32), 100, block=10)
    assert len(run_operator(DropsSecond, pkts)["out"]) == 3
    assert len(run_operator(graph_ops.Mix, [("left", p) for p in pkts])["out"]) == 4
