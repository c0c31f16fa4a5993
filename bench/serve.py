"""How many real-time speakers one ``audio2anim serve`` process animates within 100 ms.

Starts ``audio2anim serve`` (its own process, the default viseme CNN graph unless ``--graph``;
``--target ray``: ``audio2anim serve --ray ADDRESS``, the service on Ray Serve, ``--ray``
default ``local``; ``--target process,ray``: one after the other, side by side in one table;
``--serve-arg`` passes an option to both, e.g. ``--serve-arg=--batch-window-ms=2``) and, for
each N of ``--speakers``, opens N simulated speakers at once against it from this
process: each streams a different recording (sentences synthesized by the project's TTS
voices, ``--voices``, each at its own sample rate, as 16-bit PCM in 20 ms chunks,
``--chunk-ms``) paced in
real time for ``--seconds``, starting at random offsets within the first second. Per N it
prints:

- e2e latency p50/p99: for every frame, from sending the newest audio chunk the frame used to
  receiving the frame (the server names that chunk in the frame's ``audio_end``;
  `audio2anim.client.StreamResult.latencies`). The model's algorithmic latency (the lookahead
  the graph waits for, from the server's header) comes on top, for a listener, and is printed
  beside it;
- drops: frames the server dropped for a slow client, plus frames missing at the end;
- send lag p99: how late this process sent its chunks against the real-time schedule (when it
  grows, the clients, not the server, are the bottleneck);
- CPU: the server's (with every process under it: a local Ray instance's raylet, replicas
  and proxy) and this process's, in % of one core, over the level; and the 1-minute load
  average (the machine is shared: above the core count, other jobs had part of the CPU).

The largest N with e2e p99 ≤ 100 ms and no drops is the capacity. ``--plot FILE.png`` draws
p50/p99 against N (matplotlib, when installed); ``--write-docs`` writes the table into
docs/performance.md (section ``serve``; with a Ray target, ``serve-ray``).

    python bench/serve.py --speakers 1,5,10,20,30,40 --seconds 15 --write-docs
    python bench/serve.py --target process,ray --speakers 1,2,4 --seconds 10
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import secrets
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from perf_page import add_arguments, write_from_args  # noqa: E402

VOICES = "espeak:en-us,espeak:en-us+f3,espeak:en+m1,flite:awb,flite:rms,festival:kal,festival:slt"
SENTENCES = (
    "Bob made a map of the moon and put it by the pool.",
    "How are you doing today? I heard the weather is fine.",
    "Please bring me the big blue box from the kitchen table.",
    "We will meet at five, when the film is over and the lights come up.",
    "My father phoned to say the boat would arrive before noon.",
    "She sells sea shells by the sea shore every summer morning.",
)
GOAL_MS = 100.0


def synthesize(voices: list[str], seconds: float) -> list[tuple[np.ndarray, int, str]]:
    """One recording per voice: its sentences in turn, with pauses, to ``seconds`` long."""
    from audio2anim.data.tts import resolve

    rng = np.random.default_rng(0)
    out = []
    for i, vid in enumerate(voices):
        engine, voice = resolve(vid)
        parts, sr, total = [], None, 0.0
        k = i
        while total < seconds:
            audio, sr, _, _ = engine.speak(SENTENCES[k % len(SENTENCES)], voice, rng)
            pause = np.zeros(int(sr * rng.uniform(0.2, 0.6)), np.float32)
            parts += [np.asarray(audio, np.float32), pause]
            total += (len(audio) + len(pause)) / sr
            k += 1
        x = np.concatenate(parts)[: int(seconds * sr)]
        out.append((x, int(sr), vid))
    return out


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of process ``pid`` and the processes under it (Linux /proc;
    those that ended are not counted)."""
    stats, children = {}, {}
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                fields = (d / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            stats[int(d.name)] = int(fields[11]) + int(fields[12])
            children.setdefault(int(fields[1]), []).append(int(d.name))
    total, todo = 0, [pid]
    while todo:
        p = todo.pop()
        total += stats.get(p, 0)
        todo += children.get(p, [])
    return total / os.sysconf("SC_CLK_TCK")


def start_server(
    token: str, graph: str | None, extra: list[str] = ()
) -> tuple[subprocess.Popen, str]:
    cmd = [sys.executable, "-m", "audio2anim", "serve", "--port", "0", "--token", token,
           "--max-sessions", "1000", *extra]  # fmt: skip
    if graph:
        cmd += ["--graph", graph]
    env = {**os.environ, "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stderr=subprocess.PIPE, text=True)
    for line in proc.stderr:
        if line.startswith("audio2anim serve: "):
            return proc, line.split(" ", 2)[2].strip().split("?")[0]
    raise SystemExit(f"the server did not start (exit {proc.wait()})")


async def speaker(url, token, x, rate, delay, lags, chunk_ms):
    from audio2anim.client import stream

    await asyncio.sleep(delay)
    result = await stream(url, token, x, rate, fmt="s16le", realtime=True, chunk_ms=chunk_ms)
    # how late each chunk left against its schedule (set by the chunk that was least late)
    t0 = min(t - end for end, t in result.sent)
    lags.extend(t - (t0 + end) for end, t in result.sent)
    return result


async def level(n, url, token, recordings, server_pid, chunk_ms):
    rng = random.Random(n)
    lags: list[float] = []
    load = os.getloadavg()[0]
    s0, c0, t0 = cpu_seconds(server_pid), time.process_time(), time.monotonic()
    tasks = [
        speaker(
            url, token, *recordings[i % len(recordings)][:2], rng.uniform(0, 1.0), lags, chunk_ms
        )
        for i in range(n)
    ]
    results = await asyncio.gather(*tasks)
    wall = time.monotonic() - t0
    server_cpu = (cpu_seconds(server_pid) - s0) / wall * 100
    client_cpu = (time.process_time() - c0) / wall * 100
    load = max(load, os.getloadavg()[0])
    lat = np.concatenate([r.latencies() for r in results]) * 1e3
    dropped = sum(r.end.get("dropped", 0) for r in results)
    expected = sum(len(x) * 50 // rate for x, rate, _ in
                   (recordings[i % len(recordings)] for i in range(n)))  # fmt: skip
    frames = sum(len(r.values) for r in results)
    missing = max(0, expected - frames - 2 * n)  # a frame or two at the end is rounding
    return {
        "n": n, "frames": frames, "p50": float(np.percentile(lat, 50)),
        "p99": float(np.percentile(lat, 99)), "drops": dropped + missing,
        "lag99": float(np.percentile(lags, 99)) * 1e3, "server_cpu": server_cpu,
        "client_cpu": client_cpu, "load": load,
        "algorithmic": float(results[0].header.get("algorithmic_latency_ms", float("nan"))),
    }  # fmt: skip


def table(rows, voices, seconds, chunk_ms, targets=("process",)) -> str:
    """The levels' table; with a Ray target, a column names each row's service."""
    by_target = targets != ("process",)
    lines = [
        f"{seconds:g} s per speaker, 16-bit PCM in {chunk_ms:g} ms chunks, paced in real time; voices "
        f"{', '.join(voices)} (their own rates); server and clients on the same machine",
        "",
        ("| service " if by_target else "")
        + "| speakers | frames | e2e p50 ms | e2e p99 ms | algorithmic ms | drops | send lag p99 ms "
        "| server CPU % | clients CPU % | load | p99 ≤ 100 ms, no drops |",
        ("|---" if by_target else "") + "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        ok = r["p99"] <= GOAL_MS and r["drops"] == 0
        lines.append(
            (f"| {r['target']} " if by_target else "")
            + f"| {r['n']} | {r['frames']} | {r['p50']:.1f} | {r['p99']:.1f} | "
            f"{r['algorithmic']:.0f} | {r['drops']} | {r['lag99']:.1f} | {r['server_cpu']:.0f} | "
            f"{r['client_cpu']:.0f} | {r['load']:.1f} | {'yes' if ok else 'no'} |"
        )
    lines.append("")
    for target in targets:
        good = [r["n"] for r in rows
                if r["target"] == target and r["p99"] <= GOAL_MS and r["drops"] == 0]  # fmt: skip
        lines.append(f"Largest N with e2e p99 ≤ {GOAL_MS:g} ms and no drops"
                     + (f" ({target})" if by_target else "")
                     + f": **{max(good) if good else 'none'}** of those tried.")  # fmt: skip
    return "\n".join(lines)


def plot(rows, path: Path) -> None:
    try:
        import matplotlib
    except ImportError:
        print("matplotlib is not installed: no plot", file=sys.stderr)
        return
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n = [r["n"] for r in rows]
    fig, ax = plt.subplots(figsize=(6, 3.5), dpi=100)
    ax.plot(n, [r["p50"] for r in rows], "o-", label="e2e p50")
    ax.plot(n, [r["p99"] for r in rows], "s-", label="e2e p99")
    ax.axhline(GOAL_MS, color="gray", ls="--", lw=1, label=f"{GOAL_MS:g} ms")
    ax.set_xlabel("concurrent real-time speakers")
    ax.set_ylabel("ms (chunk sent → frame received)")
    ax.set_yscale("log")
    ax.legend()
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path)
    print(f"plot: {path}", file=sys.stderr)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--speakers", default="1,5,10,20,30,40", help="N values, comma-separated")
    ap.add_argument("--seconds", type=float, default=15.0, help="audio per speaker and level")
    ap.add_argument("--voices", default=VOICES, help="TTS voices, comma-separated")
    ap.add_argument("--chunk-ms", type=float, default=20.0, help="audio per chunk (ms)")
    ap.add_argument("--graph", help="the server's graph (default: its default)")
    ap.add_argument(
        "--target",
        default="process",
        help="process (audio2anim serve), ray (serve --ray), or both: process,ray",
    )
    ap.add_argument(
        "--ray",
        default="local",
        metavar="ADDRESS",
        help="the Ray address for the ray target (default local)",
    )
    ap.add_argument(
        "--serve-arg",
        action="append",
        default=[],
        metavar="ARG",
        help="an option for the server, e.g. --serve-arg=--batch-window-ms=2",
    )
    ap.add_argument("--plot", type=Path, help="write the latency plot here (PNG)")
    ap.add_argument("--stop-after", type=int, default=2,
                    help="stop after this many levels in a row miss the goal")  # fmt: skip
    add_arguments(ap)
    args = ap.parse_args()
    voices = args.voices.split(",")
    recordings = synthesize(voices, args.seconds)
    targets = tuple(args.target.split(","))
    if not targets or set(targets) - {"process", "ray"}:
        ap.error(f"--target {args.target}: process, ray or process,ray")
    token = secrets.token_urlsafe(24)
    rows = []
    for target in targets:
        extra = list(args.serve_arg) + (["--ray", args.ray] if target == "ray" else [])
        proc, url = start_server(token, args.graph, extra)
        misses = 0
        try:
            for n in (int(v) for v in args.speakers.split(",")):
                r = asyncio.run(level(n, url, token, recordings, proc.pid, args.chunk_ms))
                r["target"] = target
                rows.append(r)
                print(
                    f"{target} N={n}: p50 {r['p50']:.1f} ms, p99 {r['p99']:.1f} ms, "
                    f"drops {r['drops']}, send lag p99 {r['lag99']:.1f} ms, "
                    f"server CPU {r['server_cpu']:.0f}%, clients CPU {r['client_cpu']:.0f}%, "
                    f"load {r['load']:.1f}",
                    file=sys.stderr, flush=True,
                )  # fmt: skip
                misses = 0 if r["p99"] <= GOAL_MS and r["drops"] == 0 else misses + 1
                if misses >= args.stop_after:
                    break
        finally:
            proc.terminate()
            proc.wait(timeout=60)
    text = table(rows, voices, args.seconds, args.chunk_ms, targets)
    print(text)
    if args.plot:
        plot([r for r in rows if r["target"] == targets[0]], args.plot)
    write_from_args(args, "serve" if targets == ("process",) else "serve-ray", text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
