#!/usr/bin/env python3
"""Soak: a live method graph for a long time; does memory grow, does latency drift?

The shipped method graph (``--graph``, default ``viseme_cnn``) reads the shipped speech clip
paced like a microphone (``source.file`` with ``realtime: true`` and ``loop: true``, 20 ms
blocks), keeps its live queue policies, and ends in a probe sink after its smoothing node (the
browser and Live Link sinks are removed so that nothing waits on a network peer). Every
``--every`` seconds one row: the process's resident memory (RSS) and the end-to-end latency
(capture of the newest audio → parameters at the sink) over that interval, p50 and p99, and
the machine's load average (other processes on a shared machine move the latency).

Goals: RSS growth from the first row (models loaded, warmed up) to the last under 5 %, and
p99 flat (the last row's within 1.5× the first's).

    .venv/bin/python bench/soak.py                      # 60 minutes
    .venv/bin/python bench/soak.py --minutes 5 --every 30 --write-docs

``--write-docs`` also writes the table into docs/performance.md (section ``soak``).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from perf_page import add_arguments, write_from_args  # noqa: E402

from audio2anim.animate.graph_edit import offline_graph  # noqa: E402
from audio2anim.graph.operator import Operator, Port  # noqa: E402
from audio2anim.graph.registry import register  # noqa: E402
from audio2anim.graph.runner import Runner  # noqa: E402
from audio2anim.sources.file import SHIPPED_SPEECH  # noqa: E402


@register("bench.latency_probe")
class LatencyProbe(Operator):
    """A sink that keeps the end-to-end latency of each packet until `take` collects them."""

    inputs = {"in": Port(object)}
    outputs = {}

    def setup(self) -> None:
        self.window: list[float] = []
        self.frames = 0

    def process(self, port, packet):
        lat = packet.lateness  # received − capture: the run report's e2e latency
        if lat == lat:
            self.window.append(lat)
        self.frames += len(getattr(packet.payload, "values", ()))

    def take(self) -> list[float]:
        window, self.window = self.window, []
        return window


def rss_mb() -> float:
    """This process's resident set size (Linux /proc)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def dropped(runner: Runner) -> int:
    return int(
        sum(
            s.value
            for m in runner.registry.collect()
            if m.name == "audio2anim_dropped"
            for s in m.samples
            if s.name.endswith("_total")
        )
    )


async def soak(graph_name: str, minutes: float, every: float) -> tuple[list[tuple], dict]:
    graph = offline_graph(
        ROOT / "audio2anim" / "graphs" / f"{graph_name}.yaml",
        SHIPPED_SPEECH,
        {"probe": ("bench.latency_probe", {})},
        realtime=True,
        block_ms=20,
        overrides=["src.loop=true"],
    )
    runner = Runner(graph)
    task = asyncio.ensure_future(runner.run())
    while True:  # until the graph is set up and the first parameters arrived
        await asyncio.sleep(0.2)
        if task.done():
            await task  # raises what stopped it
        try:
            probe = runner.operator("probe")
        except KeyError:
            continue
        if getattr(probe, "frames", 0):
            break
    probe.take()
    rows = []
    t0 = time.monotonic()
    frames0 = probe.frames
    end = t0 + minutes * 60
    tick = t0
    while tick + every <= end + 1e-6 and not task.done():
        tick += every
        await asyncio.sleep(max(0.0, tick - time.monotonic()))
        lat = np.array(probe.take()) * 1e3
        p50, p99 = np.percentile(lat, [50, 99]) if len(lat) else (np.nan, np.nan)
        rows.append(
            (
                (tick - t0) / 60,
                rss_mb(),
                p50,
                p99,
                probe.frames - frames0,
                dropped(runner),
                os.getloadavg()[0],
            )
        )
        frames0 = probe.frames
        r = rows[-1]
        print(
            f"{r[0]:7.2f} min  RSS {r[1]:7.1f} MB  p50 {r[2]:6.1f} ms  p99 {r[3]:6.1f} ms  "
            f"frames {r[4]:6d}  drops {r[5]}  load {r[6]:.1f}",
            file=sys.stderr,
            flush=True,
        )
    runner.stop()
    report = await task
    return rows, report.as_dict()


def table(rows: list[tuple], minutes: float) -> str:
    lines = [
        "| minutes | RSS MB | e2e p50 ms | e2e p99 ms | frames | drops so far | load avg |",
        "|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for t, rss, p50, p99, frames, drops, load in rows:
        lines.append(
            f"| {t:.1f} | {rss:.1f} | {p50:.1f} | {p99:.1f} | {frames} | {drops} | {load:.1f} |"
        )
    if rows:
        growth = (rows[-1][1] / rows[0][1] - 1) * 100
        lines += [
            "",
            f"Ran {minutes:g} min (the goal run is 60). RSS from the first row to the last: "
            f"{growth:+.1f} % (goal < 5 %); e2e p99 {rows[0][3]:.1f} → {rows[-1][3]:.1f} ms "
            f"(goal: flat, within 1.5×); max p99 {max(r[3] for r in rows):.1f} ms.",
        ]
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--minutes", type=float, default=60.0, help="how long to run (default 60)")
    ap.add_argument("--every", type=float, default=60.0, help="seconds per row (default 60)")
    ap.add_argument("--graph", default="viseme_cnn", help="a method graph in audio2anim/graphs")
    add_arguments(ap)
    args = ap.parse_args()
    rows, report = asyncio.run(soak(args.graph, args.minutes, args.every))
    text = table(rows, args.minutes)
    print(text)
    write_from_args(args, "soak", text)


if __name__ == "__main__":
    main()
