"""How many real-time speakers one ``audio2anim serve`` process animates within 100 ms.

Starts ``audio2anim serve`` (its own process, the default viseme CNN graph unless ``--graph``)
and, for each N of ``--speakers``, opens N simulated speakers at once against it from this
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
- CPU: the server's and this process's, in % of one core, over the level; and the 1-minute
  load average (the machine is shared: above the core count, other jobs had part of the CPU).

The largest N with e2e p99 ≤ 100 ms and no drops is the capacity. ``--transport grpc`` streams
over the server's gRPC port instead of its WebSocket. ``--plot FILE.png`` draws p50/p99 against
N (matplotlib, when installed); ``--write-docs`` writes the table into docs/performance.md
(section ``serve``; ``serve_grpc`` for gRPC).

    python bench/serve.py --speakers 1,5,10,20,30,40 --seconds 15 --write-docs
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
    """User + system CPU seconds of process ``pid`` (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def start_server(token: str, graph: str | None, transport: str) -> tuple[subprocess.Popen, str]:
    cmd = [sys.executable, "-m", "audio2anim", "serve", "--port", "0", "--token", token,
           "--max-sessions", "1000"]  # fmt: skip
    if graph:
        cmd += ["--graph", graph]
    prefix = "audio2anim serve: "
    if transport == "grpc":
        cmd += ["--grpc-port", "0"]
        prefix = "audio2anim serve (gRPC): "
    env = {**os.environ, "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stderr=subprocess.PIPE, text=True)
    for line in proc.stderr:
        if line.startswith(prefix):
            return proc, line.removeprefix(prefix).strip().split("?")[0]
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


def table(rows, voices, seconds, chunk_ms, transport="websocket") -> str:
    over = ", over gRPC" if transport == "grpc" else ""
    lines = [
        f"{seconds:g} s per speaker, 16-bit PCM in {chunk_ms:g} ms chunks, paced in real time{over}; voices "
        f"{', '.join(voices)} (their own rates); server and clients on the same machine",
        "",
        "| speakers | frames | e2e p50 ms | e2e p99 ms | algorithmic ms | drops | send lag p99 ms "
        "| server CPU % | clients CPU % | load | p99 ≤ 100 ms, no drops |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        ok = r["p99"] <= GOAL_MS and r["drops"] == 0
        lines.append(
            f"| {r['n']} | {r['frames']} | {r['p50']:.1f} | {r['p99']:.1f} | "
            f"{r['algorithmic']:.0f} | {r['drops']} | {r['lag99']:.1f} | {r['server_cpu']:.0f} | "
            f"{r['client_cpu']:.0f} | {r['load']:.1f} | {'yes' if ok else 'no'} |"
        )
    good = [r["n"] for r in rows if r["p99"] <= GOAL_MS and r["drops"] == 0]
    lines += ["", f"Largest N with e2e p99 ≤ {GOAL_MS:g} ms and no drops: "
                  f"**{max(good) if good else 'none'}** of those tried."]  # fmt: skip
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
    ap.add_argument("--transport", choices=("websocket", "grpc"), default="websocket",
                    help="how the speakers stream (default websocket)")  # fmt: skip
    ap.add_argument("--plot", type=Path, help="write the latency plot here (PNG)")
    ap.add_argument("--stop-after", type=int, default=2,
                    help="stop after this many levels in a row miss the goal")  # fmt: skip
    add_arguments(ap)
    args = ap.parse_args()
    voices = args.voices.split(",")
    recordings = synthesize(voices, args.seconds)
    token = secrets.token_urlsafe(24)
    proc, url = start_server(token, args.graph, args.transport)
    rows, misses = [], 0
    try:
        for n in (int(v) for v in args.speakers.split(",")):
            r = asyncio.run(level(n, url, token, recordings, proc.pid, args.chunk_ms))
            rows.append(r)
            print(
                f"N={n}: p50 {r['p50']:.1f} ms, p99 {r['p99']:.1f} ms, drops {r['drops']}, "
                f"send lag p99 {r['lag99']:.1f} ms, server CPU {r['server_cpu']:.0f}%, "
                f"clients CPU {r['client_cpu']:.0f}%, load {r['load']:.1f}",
                file=sys.stderr, flush=True,
            )  # fmt: skip
            misses = 0 if r["p99"] <= GOAL_MS and r["drops"] == 0 else misses + 1
            if misses >= args.stop_after:
                break
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    text = table(rows, voices, args.seconds, args.chunk_ms, args.transport)
    print(text)
    if args.plot:
        plot(rows, args.plot)
    write_from_args(args, "serve_grpc" if args.transport == "grpc" else "serve", text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
