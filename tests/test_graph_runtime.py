"""The runner on real packets: nothing lost under backpressure, bounded drops, clean failures,
clocks, fan-out/fan-in, several graphs per process."""

import asyncio
import json
import threading
import time

import numpy as np
import pytest
from prometheus_client import generate_latest

import tests.graph_ops  # noqa: F401
from audio2anim.graph.errors import OperatorError
from audio2anim.graph.metrics import GraphMetrics
from audio2anim.graph.runner import Runner
from audio2anim.graph.spec import parse_graph


def run(text: str, overrides=()):
    runner = Runner(parse_graph(text, overrides=overrides))
    report = asyncio.run(runner.run())
    return runner, report


def jsonl(path):
    return [json.loads(line) for line in path.read_text().splitlines()]


@pytest.mark.parametrize(
    ("rate_in", "rate_out", "block_ms", "seconds"),
    [
        (44100, 16000, 7.3, 1.3),
        (48000, 16000, 20, 1.0),
        (8000, 16000, 13.7, 0.77),
        (16000, 16000, 3.1, 0.5),
    ],
)
def test_block_policy_loses_nothing(tmp_path, rate_in, rate_out, block_ms, seconds):
    out = tmp_path / "p.jsonl"
    text = f"""
nodes:
  src: {{op: source.synthetic, params: {{kind: noise, rate: {rate_in}, block_ms: {block_ms}, duration_s: {seconds}}}}}
  rs:  {{op: resample, params: {{rate: {rate_out}}}}}
  raw: {{op: sink.jsonl, params: {{path: {tmp_path / "raw.jsonl"}}}}}
  log: {{op: sink.jsonl, params: {{path: {out}}}}}
edges:
  - src -> rs -> log
  - src -> raw
queues: {{size: 2, policy: block}}
"""
    _, report = run(text)
    n_in = round(seconds * rate_in)
    assert sum(r["payload"]["samples"] for r in jsonl(tmp_path / "raw.jsonl")) == n_in
    lines = jsonl(out)
    assert sum(r["payload"]["samples"] for r in lines) == round(n_in * rate_out / rate_in)
    # media time counts output samples exactly
    done = 0
    for r in lines:
        assert r["media_time"] == pytest.approx(done / rate_out, abs=1e-6)
        done += r["payload"]["samples"]
    assert all(e["dropped"] == 0 for e in report.edges.values())
    assert report.stopped == "eos"


@pytest.mark.parametrize("policy", ["drop_oldest", "drop_newest"])
def test_drop_policies_bound_depth_and_count_drops(policy):
    """The sink holds its first packet until the source has emitted all 100: the queue fills
    and overflows by packet count, not by how fast the machine runs."""
    text = f"""
name: drops
nodes:
  src:  {{op: source.synthetic, params: {{duration_s: 1.0, block_ms: 10}}}}
  slow: {{op: test.slow_sink, params: {{delay_s: 0, gated: true}}}}
edges:
  - {{from: src, to: slow, size: 3, policy: {policy}}}
"""

    async def main():
        runner = Runner(parse_graph(text))
        task = asyncio.ensure_future(runner.run())
        labels = {"graph": "drops", "node": "src"}
        while (runner.registry.get_sample_value("audio2anim_packets_total", labels) or 0) < 100:
            await asyncio.sleep(0.001)
        runner.operator("slow").gate.set()
        return runner, await asyncio.wait_for(task, 5)

    runner, report = asyncio.run(main())
    edge = report.edges["src.out->slow.in"]
    got = runner.operator("slow").got
    assert edge["max_depth"] <= 3
    assert edge["dropped"] > 0
    assert len(got) + edge["dropped"] == 100  # every packet either arrived or was counted
    assert report.nodes["slow"]["counters"] == {"got": len(got)}  # operator counters reported
    assert f"slow: got {len(got)}" in report.table()
    times = [p.media_time for p in got]
    assert times == sorted(times)
    if policy == "drop_oldest":
        assert times[-1] == pytest.approx(0.99)  # the newest is kept
    else:
        assert times[0] == 0.0 and times[-1] < 0.99  # the newest were refused


def test_operator_failure_stops_graph_and_keeps_written_output(tmp_path):
    out = tmp_path / "log.jsonl"
    text = f"""
nodes:
  src:  {{op: source.synthetic, params: {{duration_s: 5, block_ms: 10}}}}
  bad:  {{op: test.fail_after, params: {{after: 25}}}}
  log:  {{op: sink.jsonl, params: {{path: {out}}}}}
edges:
  - src -> bad -> log
"""
    runner = Runner(parse_graph(text))
    with pytest.raises(OperatorError) as e:
        asyncio.run(runner.run())
    assert "node 'bad' failed: RuntimeError: deliberate failure" in str(e.value)
    assert e.value.node == "bad" and e.value.report.stopped == "error"
    lines = jsonl(out)  # every line parses: the file was finalized
    assert len(lines) == 25
    assert e.value.report.nodes["src"]["packets"] < 500  # the source was stopped


def test_setup_failure_names_node_and_closes_others(tmp_path):
    text = f"""
nodes:
  src: {{op: source.synthetic}}
  log: {{op: sink.jsonl, params: {{path: {tmp_path}}}}}
edges: [src -> log]
"""
    with pytest.raises(OperatorError, match="node 'log' failed: IsADirectoryError"):
        run(text)


def test_capture_and_arrival_times_are_stamped_in_order():
    """Every packet carries its source's capture time through the graph and the time it reached
    the node; the sink's end-to-end latency is recorded. How small that latency is, and how
    closely a paced source follows the wall clock, are figures of bench/runtime_overhead.py."""
    text = """
nodes:
  src:  {op: source.synthetic, params: {duration_s: 0.3, block_ms: 20}}
  rs:   {op: resample, params: {rate: 8000}}
  slow: {op: test.slow_sink, params: {delay_s: 0}}
edges: [src -> rs -> slow]
"""
    runner, report = run(text)
    got = runner.operator("slow").got
    assert [p.origin for p in got[:2]] == ["rs", "rs"]
    assert sum(len(p.payload.samples) for p in got) == round(0.3 * 8000)  # every block arrived
    caps = [p.capture_time for p in got]
    assert all(c == c for c in caps) and caps == sorted(caps)
    times = [p.media_time for p in got]
    assert times == sorted(times)
    assert report.sinks["slow"]["e2e_p50_ms"] >= 0 and report.sinks["slow"]["e2e_p99_ms"] >= 0
    # the runner stamps arrival too: a node reads how late a packet is without a clock
    assert all(p.received_time >= p.capture_time for p in got)
    assert all(p.lateness >= 0 for p in got)


def test_fan_out_and_fan_in_by_port():
    text = """
nodes:
  a:   {op: source.synthetic, params: {duration_s: 0.2, rate: 16000}}
  b:   {op: source.synthetic, params: {duration_s: 0.2, rate: 16000, kind: noise}}
  mix: {op: test.mix}
  s1:  {op: test.slow_sink, params: {delay_s: 0}}
  s2:  {op: test.slow_sink, params: {delay_s: 0}}
edges:
  - a -> mix.left
  - {from: b, to: mix.right}
  - mix -> s1
  - mix -> s2
"""
    runner, _ = run(text)
    seen = runner.operator("mix").seen
    assert (
        sorted(p for p, _ in seen).count("left") == 10 and [p for p, _ in seen].count("right") == 10
    )
    assert [t for _, t in seen] == sorted(t for _, t in seen)  # fan-in in media-time order
    assert len(runner.operator("s1").got) == len(runner.operator("s2").got) == 20


def test_thread_executor_runs_off_the_event_loop():
    text = """
nodes:
  src: {op: source.synthetic, params: {duration_s: 0.1}}
  probe: {op: test.thread_probe}
  out: {op: sink.null}
edges: [src -> probe -> out]
"""
    runner, report = run(text)
    threads = runner.operator("probe").threads
    assert threads and threading.main_thread().name not in threads
    assert report.nodes["probe"]["packets"] == 5


def test_stop_ends_streams_and_drains():
    """A stop ends the paced source at once: what it had emitted drains to the sink, in order,
    and at most one queue's worth arrives after the stop. (How long the stop takes is a figure
    of bench/runtime_overhead.py.)"""
    text = """
nodes:
  src:  {op: source.synthetic, params: {duration_s: 60, block_ms: 10, realtime: true}}
  slow: {op: test.slow_sink, params: {delay_s: 0}}
edges: [src -> slow]
queues: {size: 8, policy: block}
"""

    async def main():
        runner = Runner(parse_graph(text))
        task = asyncio.ensure_future(runner.run())

        def delivered():
            try:
                return len(runner.operator("slow").got)
            except (KeyError, AttributeError):  # not built or not set up yet
                return 0

        while delivered() < 10:
            await asyncio.sleep(0.01)
        at_stop = delivered()
        runner.stop()
        report = await asyncio.wait_for(task, 5)
        return runner, report, at_stop

    runner, report, at_stop = asyncio.run(main())
    got = runner.operator("slow").got
    assert report.stopped == "stop"
    # the source emitted nothing after the stop: at most the queue (8) and the packet in hand
    assert 10 <= at_stop <= len(got) <= at_stop + 9
    assert report.nodes["src"]["packets"] == len(got)  # everything emitted was delivered
    assert [p.media_time for p in got] == pytest.approx([k * 0.01 for k in range(len(got))])


def test_ready_comes_after_every_setup_and_before_the_first_packet():
    # what a service waits for before it tells its client to stream
    text = """
nodes:
  src:  {op: source.synthetic, params: {duration_s: 0.2, block_ms: 10}}
  slow: {op: test.slow_sink, params: {delay_s: 0, setup_s: 0.3}}
edges: [src -> slow]
"""

    async def main():
        runner = Runner(parse_graph(text))
        task = asyncio.ensure_future(runner.run())
        t0 = time.monotonic()
        await asyncio.wait_for(runner.ready.wait(), 10)
        waited = time.monotonic() - t0
        got_at_ready = len(runner.operator("slow").got)
        await task
        return waited, got_at_ready, len(runner.operator("slow").got)

    waited, got_at_ready, got = asyncio.run(main())
    assert waited >= 0.3 and got_at_ready == 0
    assert got == 20


def test_ready_is_set_when_a_setup_fails(tmp_path):
    text = f"""
nodes:
  src: {{op: source.synthetic}}
  log: {{op: sink.jsonl, params: {{path: {tmp_path}}}}}
edges: [src -> log]
"""

    async def main():
        runner = Runner(parse_graph(text))
        task = asyncio.ensure_future(runner.run())
        await asyncio.wait_for(runner.ready.wait(), 10)  # no hang for a waiting service
        with pytest.raises(OperatorError):
            await task

    asyncio.run(main())


def test_two_graphs_in_one_process_share_a_registry():
    shared = GraphMetrics()
    text = """
name: {name}
nodes:
  src: {{op: source.synthetic, params: {{duration_s: 0.2}}}}
  out: {{op: sink.null}}
edges: [src -> out]
"""

    async def main():
        r1 = Runner(parse_graph(text.format(name="alice")), shared)
        r2 = Runner(parse_graph(text.format(name="bob")), shared)
        return await asyncio.gather(r1.run(), r2.run())

    asyncio.run(main())
    metrics = generate_latest(shared.registry).decode()
    for name in ("alice", "bob"):
        assert f'audio2anim_packets_total{{graph="{name}",node="out"}} 10.0' in metrics


def test_resample_keeps_tone_frequency_and_is_block_size_independent(tmp_path):
    from audio2anim.graph.testing import audio_packets, run_operator
    from audio2anim.operators.resample import Resample, ResampleParams

    rate_in, rate_out, f0 = 44100, 16000, 1234.0
    x = (0.5 * np.sin(2 * np.pi * f0 * np.arange(rate_in) / rate_in)).astype(np.float32)

    def through(blocks):
        op = Resample(ResampleParams(rate=rate_out))
        outs = run_operator(op, audio_packets(x, rate_in, blocks))["out"]
        return np.concatenate([p.payload.samples for p in outs])

    one_shot = through([len(x)])
    rng = np.random.default_rng(0)
    cuts = np.diff(np.r_[0, np.sort(rng.choice(len(x), 60, replace=False)), len(x)])
    blockwise = through([int(c) for c in cuts if c > 0])
    assert len(one_shot) == len(blockwise) == rate_out
    np.testing.assert_allclose(blockwise, one_shot, atol=1e-5)
    spectrum = np.abs(np.fft.rfft(one_shot * np.hanning(len(one_shot))))
    assert np.argmax(spectrum) * rate_out / len(one_shot) == pytest.approx(f0, abs=2)


def test_received_keeps_every_field_but_the_arrival_time():
    from dataclasses import fields

    from audio2anim.graph.packets import Packet

    # a distinct value per field, so a field added to Packet but not to received() fails here
    values = {f.name: object() for f in fields(Packet)}
    got = Packet(**values).received(3.0)
    assert got.received_time == 3.0
    for name, value in values.items():
        if name != "received_time":
            assert getattr(got, name) is value, name
