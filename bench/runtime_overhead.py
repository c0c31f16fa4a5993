#!/usr/bin/env python3
"""Runtime overhead: throughput and added latency per hop through a chain of pass-through nodes.

For each queue policy and chain length N:
- throughput: packets/s through the chain with an unpaced source (queues full: backpressure);
- latency: a source paced at wall-clock rate (queues near empty), e2e latency at the sink;
  per-hop cost = (e2e with N hops - e2e with 0 hops) / N, at p50 and p99.

Then the clocks of a paced graph (source -> resample 8 kHz -> sink, 20 ms blocks), each beside
the limit it is expected to stay within on an idle machine:
- pacing: how far the span of capture times strays from the span of media times (±50 ms);
- e2e p50: capture -> sink (< 50 ms); largest lateness of a packet at the sink (< 1 s);
- stop: a source paced at 10 ms blocks, stopped after 0.3 s: the blocks that reached the sink
  (10..60), and the time from `Runner.stop()` until `run()` returns (< 300 ms).

    .venv/bin/python bench/runtime_overhead.py [--seconds 2] [--hops 1 4 16] [--write-docs]

``--write-docs`` also writes the table into docs/performance.md (section ``runtime-overhead``).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from perf_page import add_arguments, write_from_args  # noqa: E402

from audio2anim.graph.operator import Operator, Port  # noqa: E402
from audio2anim.graph.registry import register  # noqa: E402
from audio2anim.graph.runner import Runner  # noqa: E402
from audio2anim.graph.spec import parse_graph  # noqa: E402


@register("bench.identity")
class Identity(Operator):
    """Passes every packet on unchanged."""

    inputs = {"in": Port(object)}
    outputs = {"out": Port(object)}

    def process(self, port, packet):
        return packet


def graph(hops: int, policy: str, realtime: bool, seconds: float, block_ms: float) -> str:
    nodes = [
        f"  src: {{op: source.synthetic, params: {{duration_s: {seconds}, block_ms: {block_ms}, rate: 16000, realtime: {str(realtime).lower()}}}}}"
    ]
    nodes += [f"  n{i}: {{op: bench.identity}}" for i in range(hops)]
    nodes.append("  out: {op: sink.null}")
    chain = " -> ".join(["src", *[f"n{i}" for i in range(hops)], "out"])
    return (
        "name: bench\nnodes:\n"
        + "\n".join(nodes)
        + f"\nedges: ['{chain}']\nqueues: {{size: 8, policy: {policy}}}\n"
    )


@register("bench.collect")
class Collect(Operator):
    """A sink that keeps every packet it receives."""

    inputs = {"in": Port(object)}
    outputs = {}

    def setup(self):
        self.got = []

    def process(self, port, packet):
        self.got.append(packet)


def run(text: str):
    return asyncio.run(Runner(parse_graph(text)).run())


PACED = """
name: clocks
nodes:
  src:  {op: source.synthetic, params: {duration_s: %s, block_ms: 20, realtime: true}}
  rs:   {op: resample, params: {rate: 8000}}
  sink: {op: bench.collect}
edges: [src -> rs -> sink]
"""

STOPPED = """
name: stop
nodes:
  src:  {op: source.synthetic, params: {duration_s: 60, block_ms: 10, realtime: true}}
  sink: {op: bench.collect}
edges: [src -> sink]
"""


def clocks(seconds: float) -> list[tuple[str, float, str, bool]]:
    """(figure, value, limit, within) for the clocks of a paced graph and of a stop."""
    runner = Runner(parse_graph(PACED % seconds))
    report = asyncio.run(runner.run())
    got = runner.operator("sink").got
    caps = [p.capture_time for p in got]
    drift = (caps[-1] - caps[0]) - (got[-1].media_time - got[0].media_time)
    e2e = report.sinks["sink"]["e2e_p50_ms"]
    late = max(p.lateness for p in got)

    async def stop_after(wait_s: float) -> tuple[float, int]:
        runner = Runner(parse_graph(STOPPED))
        task = asyncio.ensure_future(runner.run())
        await asyncio.sleep(wait_s)
        t0 = time.perf_counter()
        runner.stop()
        await task
        return time.perf_counter() - t0, len(runner.operator("sink").got)

    stop_s, n = asyncio.run(stop_after(0.3))
    return [
        ("pacing drift ms", drift * 1e3, "±50", abs(drift) <= 0.05),
        ("e2e p50 ms", e2e, "< 50", e2e < 50),
        ("max lateness ms", late * 1e3, "< 1000", late < 1),
        ("10 ms blocks in 0.3 s", n, "10..60", 10 <= n <= 60),
        ("stop -> end ms", stop_s * 1e3, "< 300", stop_s < 0.3),
    ]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=2.0, help="paced run length per row")
    ap.add_argument("--hops", type=int, nargs="+", default=[1, 4, 16])
    add_arguments(ap)
    args = ap.parse_args()
    rows = []
    print(
        f"{'policy':<12}{'hops':>5}{'pkt/s':>10}{'e2e p50 us':>12}{'e2e p99 us':>12}{'hop p50 us':>12}{'hop p99 us':>12}"
    )
    for policy in ("block", "drop_oldest", "drop_newest"):
        base = run(graph(0, policy, True, args.seconds, 2)).sinks["out"]
        for hops in args.hops:
            fast = run(graph(hops, policy, False, 20.0, 1))  # 20 000 packets, unpaced
            pps = fast.nodes["out"]["packets"] / fast.duration_s
            paced = run(graph(hops, policy, True, args.seconds, 2)).sinks["out"]
            p50 = paced["e2e_p50_ms"] * 1e3
            p99 = paced["e2e_p99_ms"] * 1e3
            h50 = (p50 - base["e2e_p50_ms"] * 1e3) / hops
            h99 = (p99 - base["e2e_p99_ms"] * 1e3) / hops
            print(
                f"{policy:<12}{hops:>5}{pps:>10.0f}{p50:>12.1f}{p99:>12.1f}{h50:>12.1f}{h99:>12.1f}"
            )
            rows.append(f"| {policy} | {hops} | {pps:.0f} | {h50:.1f} µs | {h99:.1f} µs |")
    print(f"\n{'clocks (paced graph)':<22}{'value':>10}{'limit':>10}")
    clock_rows = clocks(args.seconds)
    for name, value, limit, within in clock_rows:
        print(f"{name:<22}{value:>10.2f}{limit:>10}{'' if within else '  OUT OF LIMIT'}")
    table = "\n".join(
        [
            "| policy | hops | packets/s (unpaced) | per-hop p50 | per-hop p99 |",
            "|---|---|---|---|---|",
        ]
        + rows
        + ["", "| clocks (paced graph) | value | limit |", "|---|---|---|"]
        + [f"| {name} | {value:.2f} | {limit} |" for name, value, limit, _ in clock_rows]
    )
    load = f"load average {os.getloadavg()[0]:.2f} on {os.cpu_count()} CPUs"
    write_from_args(args, "runtime-overhead", load + "\n\n" + table)
    return 0 if all(within for *_, within in clock_rows) else 1

if __name__ == "__main__":
    sys.exit(main())
