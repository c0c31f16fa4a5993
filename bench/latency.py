#!/usr/bin/env python3
"""End-to-end latency of each method graph, and how fast ``animate`` runs, on this machine.

Live latency: each graph in ``audio2anim/graphs/`` reads a speech file paced like a microphone
(``source.file`` with ``realtime: true``, 20 ms blocks), keeps its live queue policies, and
ends in ``sink.null`` after its smoothing node (the browser and Live Link sinks are dropped so
that nothing waits on a network peer). The run report's end-to-end latency at that sink is
"newest audio block captured → parameters out" (p50 / p99); the algorithmic latency (the
lookahead the operators declare, which the measured latency does not include) is beside it.

Animate speed: the same graph, unpaced, with the CSV sink that ``audio2anim animate`` uses, over
the file repeated to ``--animate-seconds`` of audio; × real time = audio seconds / wall seconds
of the whole run, model loading included (interpreter start-up and imports excluded).

    .venv/bin/python bench/latency.py                       # shipped checkpoints
    .venv/bin/python bench/latency.py --random-full         # untrained models of the shipped sizes
    .venv/bin/python bench/latency.py --graphs viseme_cnn,w2v_cnn --repeat 4 --json out.json
    .venv/bin/python bench/latency.py --random-full --w2v-base --device cuda --graphs w2v_cnn

``--cpu`` adds the live run's CPU use: the process's CPU time over wall time while the paced
audio streams, from ``--cpu-skip-s`` (default 5 s) after the run starts (model loading and
warm-up left out) to its end, in % of one core (all operators and the runner together).

``--write-docs`` also writes the table into docs/performance.md (section ``latency-cpu``, or
``latency-gpu`` with ``--device cuda``; ``--section NAME`` another section of the page, for a
subset of graphs).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import soundfile as sf

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from perf_page import add_arguments, write_from_args  # noqa: E402

from audio2anim.animate.graph_edit import offline_graph  # noqa: E402
from audio2anim.graph.runner import run_graph  # noqa: E402
from audio2anim.resources import PACKAGE_GRAPHS  # noqa: E402
from audio2anim.sources.file import SHIPPED_SPEECH  # noqa: E402

GRAPHS = ("viseme_mlp", "viseme_cnn", "pocketsphinx", "w2v_cnn", "w2v_ar", "w2v_attention")


def write_repeated(src: Path, dst: Path, seconds: float) -> float:
    """``src`` repeated to at least ``seconds`` → ``dst`` (WAV); returns its duration."""
    x, sr = sf.read(str(src), dtype="float32", always_2d=True)
    reps = max(1, int(np.ceil(seconds * sr / len(x))))
    y = np.tile(x, (reps, 1))
    sf.write(str(dst), y, sr)
    return len(y) / sr


class CpuSampler:
    """The process's (wall, CPU) time every 0.25 s on a thread; `share` → CPU % of one core
    from ``skip_s`` after the start to the end."""

    def __init__(self) -> None:
        import threading

        self.samples: list[tuple[float, float]] = []
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self.stop.is_set():
            self.samples.append((time.perf_counter(), time.process_time()))
            self.stop.wait(0.25)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop.set()
        self.thread.join()
        self.samples.append((time.perf_counter(), time.process_time()))

    def share(self, skip_s: float) -> float | None:
        t0 = self.samples[0][0]
        kept = [s for s in self.samples if s[0] >= t0 + skip_s]
        if len(kept) < 2 or kept[-1][0] - kept[0][0] < 1.0:
            return None
        return 100 * (kept[-1][1] - kept[0][1]) / (kept[-1][0] - kept[0][0])


def live_latency(graph: str, audio: Path, overrides: list[str], cpu_skip_s: float = 5.0) -> dict:
    g = offline_graph(
        PACKAGE_GRAPHS / f"{graph}.yaml",
        audio,
        {"out": ("sink.null", {})},
        realtime=True,
        block_ms=20.0,
        overrides=overrides,
    )
    with CpuSampler() as cpu:
        report = asyncio.run(run_graph(g))
    sink = report.sinks["out"]
    return {
        "cpu_pct": cpu.share(cpu_skip_s),
        "e2e_p50_ms": sink["e2e_p50_ms"],
        "e2e_p99_ms": sink["e2e_p99_ms"],
        "algorithmic_ms": sink["algorithmic_latency_ms"],
        "dropped": sum(e["dropped"] for e in report.edges.values()),
        "nodes": report.nodes,
    }


def animate_speed(graph: str, audio: Path, seconds: float, overrides: list[str], tmp: Path):
    t0 = time.perf_counter()
    g = offline_graph(
        PACKAGE_GRAPHS / f"{graph}.yaml",
        audio,
        {"csv": ("sink.csv", {"path": str(tmp / f"{graph}.csv"), "layout": "simple"})},
        overrides=overrides,
    )
    asyncio.run(run_graph(g))
    wall = time.perf_counter() - t0
    return {"wall_s": wall, "x_realtime": seconds / wall}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--audio", type=Path, default=SHIPPED_SPEECH, help="speech file")
    ap.add_argument("--graphs", default=",".join(GRAPHS), help="comma-separated graph names")
    ap.add_argument("--repeat", type=int, default=1, help="live runs: the file this many times")
    ap.add_argument("--animate-seconds", type=float, default=60.0, help="animate: audio length")
    ap.add_argument("--checkpoints", type=Path, help="use this checkpoint root (kind dirs)")
    ap.add_argument(
        "--random-full", action="store_true", help="untrained models of the shipped sizes"
    )
    ap.add_argument(
        "--w2v-base", action="store_true", help="with --random-full: a base-sized wav2vec2"
    )
    ap.add_argument(
        "--device", choices=("cpu", "cuda"), default="cpu",
        help="cuda: wav2vec2 (fp16) and the w2v predictors (torch) on the GPU",
    )  # fmt: skip
    ap.add_argument("--json", type=Path, help="also write the results here")
    ap.add_argument("--cpu", action="store_true", help="add the live run's CPU use (% of a core)")
    ap.add_argument(
        "--cpu-skip-s", type=float, default=5.0, help="--cpu: seconds left out at start"
    )
    ap.add_argument("--section", help="--write-docs: this section of docs/performance.md")
    ap.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="NODE.PARAM=VALUE",
        help="override in every graph run (repeatable), e.g. vis.backend=torch",
    )
    add_arguments(ap)
    args = ap.parse_args()

    import torch

    from audio2anim.train.random_checkpoints import graph_overrides, make_random_checkpoints

    tmp = Path(tempfile.mkdtemp(prefix="a2a-bench-"))
    ckpts = None
    if args.random_full:
        w2v_size = "base" if args.w2v_base else None
        ckpts = make_random_checkpoints(tmp / "ckpts", size="full", w2v_size=w2v_size)
    elif args.checkpoints:
        ckpts = {p.name: p for p in args.checkpoints.iterdir() if p.is_dir()}
    clip_s = sf.info(str(args.audio)).duration
    live_audio = tmp / "live.wav"
    live_s = write_repeated(args.audio, live_audio, clip_s * args.repeat)
    anim_audio = tmp / "animate.wav"
    anim_s = write_repeated(args.audio, anim_audio, args.animate_seconds)
    results = {}
    for graph in [g.strip() for g in args.graphs.split(",") if g.strip()]:
        sets = (graph_overrides(graph, ckpts) if ckpts else []) + list(args.set)
        if args.device == "cuda" and graph.startswith("w2v"):
            sets += ["feat.device=cuda", "pred.backend=torch", "pred.device=cuda"]
        print(f"{graph}: live {live_s:.1f} s paced, animate {anim_s:.1f} s ...", file=sys.stderr)
        results[graph] = {
            "live": live_latency(graph, live_audio, sets, args.cpu_skip_s),
            "animate": animate_speed(graph, anim_audio, anim_s, sets, tmp),
        }
    env = (
        f"load average {os.getloadavg()[0]:.2f} on {os.cpu_count()} CPUs, "
        f"torch {torch.__version__}, intra-op threads per operator: "
        f"{os.environ.get('AUDIO2ANIM_TORCH_THREADS', '1')}, "
        f"{'random full-size models' if args.random_full else (args.checkpoints or 'audio2anim/checkpoints/')}"
        f"{' (wav2vec2 base-sized)' if args.w2v_base else ''}, device {args.device}"
        f"{''.join(f', --set {v}' for v in args.set)}"
    )
    print(f"\n{env}; live: {live_s:.1f} s paced from {args.audio.name}, 20 ms blocks; "
          f"animate: {anim_s:.0f} s of audio\n")  # fmt: skip
    cpu_head = " live CPU % of a core |" if args.cpu else ""
    lines = [
        "| graph | e2e p50 ms | e2e p99 ms | algorithmic ms | drops | animate × real time |"
        + cpu_head,
        "|---|---|---|---|---|---|" + ("---|" if args.cpu else ""),
    ]
    for graph, r in results.items():
        live, anim = r["live"], r["animate"]
        cpu = live["cpu_pct"]
        cpu_cell = (" n/a |" if cpu is None else f" {cpu:.0f} |") if args.cpu else ""
        lines.append(
            f"| {graph} | {live['e2e_p50_ms']:.1f} | {live['e2e_p99_ms']:.1f} | "
            f"{live['algorithmic_ms']:g} | {live['dropped']} | {anim['x_realtime']:.1f} |"
            + cpu_cell
        )
    print("\n".join(lines))
    section = args.section or ("latency-gpu" if args.device == "cuda" else "latency-cpu")
    write_from_args(args, section, env + "\n\n" + "\n".join(lines))
    if args.json:
        args.json.write_text(json.dumps({"env": env, "results": results}, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
