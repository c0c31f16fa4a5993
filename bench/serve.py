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
  beside it; p99 also without each speaker's first 2 s (its session's start, the level's
  ramp-up: "steady");
- session start p99: from connecting to the header, which the server sends once the session's
  graph is set up (the speaker streams from then on);
- drops: frames the server dropped for a slow client, plus frames missing at the end;
- send lag p99: how late this process sent its chunks against the real-time schedule (when it
  grows, the clients, not the server, are the bottleneck);
- CPU: the server's (with every process under it: a local Ray instance's raylet, proxy and
  replicas) and this process's, in % of one core, over the level; and the 1-minute load
  average (the machine is shared: above the core count, other jobs had part of the CPU).

- batching (``--batch-window-ms W``, a comma-separated list, 0 = off: one server per value, all
  up at once, each N measured on each in turn, so that they see the same load): the mean batch
  size and the mean wait in the batcher's queue of each model over the level, from the
  server's ``/metrics``; with ``--device cuda`` the GPU's mean utilization (``nvidia-smi``).

- Ray Serve (``--ray ADDRESS``, e.g. ``local``): one more server, ``audio2anim serve --ray
  ADDRESS`` with the first batch window of the list (its model worker batches with Ray Serve's
  ``@serve.batch``), measured at each N in turn with the others (service ``ray`` in the table).
  With ``--ray local`` its batch metrics come from the local instance's metrics export port
  (``serve --metrics-port``, Ray exporting every second here): the ingress replicas' stacks as
  the workers' batches, the model replicas' as ``host MODEL``.

The largest N with e2e p99 ≤ 100 ms and no drops is the capacity, per server.
``--transport grpc`` streams over the servers' gRPC port instead of their WebSocket (not with
``--ray``).
``--workers K`` runs the server as ``audio2anim serve --workers K`` (K processes sharing its
port; the batch sizes are summed over the workers' ``/metrics``). ``--shared-models on`` adds
``--shared-models`` (one model process for the K workers; its batch sizes are listed as
``host MODEL``: worker calls per model call), ``off`` ``--no-shared-models``, ``both`` runs
one server of each, side by side (service ``shared`` and ``process`` in the table).
``--client-procs P`` spreads the speakers over P client processes (for hundreds of speakers on
a many-core machine, so the clients are not the bottleneck). ``--plot FILE.png`` draws p50/p99
against N (matplotlib, when installed); ``--write-docs`` writes the table into
docs/performance.md (section ``serve``, ``serve_grpc`` for gRPC; ``--section`` another).

    python bench/serve.py --speakers 1,5,10,20,30,40 --seconds 15 --batch-window-ms 0,5 --write-docs
    python bench/serve.py --speakers 1,2,4 --seconds 8 --ray local --section serve-ray
    python bench/serve.py --graph graphs/whisper_cnn_live.yaml --device cuda --batch-window-ms 5 \
        --speakers 50,100,200,300,400 --client-procs 8
"""

from __future__ import annotations

import argparse
import asyncio
import concurrent.futures
import math
import multiprocessing
import os
import random
import secrets
import socket
import subprocess
import sys
import threading
import time
import urllib.request
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
STEADY_AFTER_S = 2.0  # the "steady" p99 leaves out each speaker's first seconds


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


def from_file(path: Path, voices: int, seconds: float) -> list[tuple[np.ndarray, int, str]]:
    """``voices`` recordings from one audio file (for a machine without the TTS voices): the
    file looped to ``seconds``, each recording starting at its own offset into it."""
    import soundfile as sf

    x, sr = sf.read(str(path), dtype="float32", always_2d=True)
    x = x.mean(axis=1)
    n = int(seconds * sr)
    looped = np.tile(x, n // len(x) + 2)
    step = max(1, len(x) // voices)
    return [(looped[i * step : i * step + n].copy(), int(sr), f"{path.name}@{i * step / sr:.1f}s")
            for i in range(voices)]  # fmt: skip


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
    token: str,
    graph: str | None,
    window_ms: float,
    device: str,
    sets=(),
    transport: str = "websocket",
    ray: str | None = None,
    workers: int = 1,
    shared: bool | None = None,
    model_replicas: int = 1,
    gpu_share: float = 1.0,
    warm_batches: int | None = None,
    ray_direct: bool = False,
    ray_model_calls: str = "socket",
    cpu_models: str | None = None,
) -> tuple[subprocess.Popen, str, dict[str, int]]:
    """``audio2anim serve`` (``ray``: ``--ray ray``, ``workers`` session front ends and
    ``model_replicas`` model workers of ``gpu_share`` GPU each, the metrics through Ray's export
    with ``local``; else ``workers``: its ``--workers``; ``shared``: ``--shared-models`` or
    ``--no-shared-models``, None: neither) →
    (its process, the stream URL, the metrics port of each worker and of the model host by
    the prefix its models get in the table: "" for the workers, "host " for the host; "ray"
    for Ray's export, where the replicas' deployment says which)."""
    cmd = [sys.executable, "-m", "audio2anim", "serve", "--port", "0", f"--token={token}",
           "--max-sessions", "1000", "--batch-window-ms", f"{window_ms:g}", "--device", device]  # fmt: skip
    env = {**os.environ, "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    ports = {}
    if ray == "local":  # the replicas' batch metrics, through Ray's export, every second
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            ports[sock.getsockname()[1]] = "ray"
        cmd += ["--metrics-port", str(next(iter(ports)))]
        env["RAY_metrics_report_interval_ms"] = "1000"
    if ray is not None:
        cmd += ["--ray", ray, "--ray-ingress-replicas", str(workers),
                "--ray-model-replicas", str(model_replicas),
                "--ray-gpus-per-model-replica", f"{gpu_share:g}"]  # fmt: skip
        if ray_direct:
            cmd += ["--ray-direct-port", "0"]
        cmd += ["--ray-model-calls", ray_model_calls]
    else:
        cmd += ["--metrics-port", "0", "--workers", str(workers)]
        if shared is not None:
            cmd += ["--shared-models" if shared else "--no-shared-models"]
    if graph:
        cmd += ["--graph", graph]
    if warm_batches is not None:
        cmd += ["--warm-batches", str(warm_batches)]
    if cpu_models is not None:
        cmd += ["--cpu-models", cpu_models]
    for override in sets:
        cmd += ["--set", override]
    prefix = "audio2anim serve: "
    if transport == "grpc":
        cmd += ["--grpc-port", "0"]
        prefix = "audio2anim serve (gRPC): "
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stderr=subprocess.PIPE, text=True)
    for line in proc.stderr:
        for who, prefix_ in (("", "metrics: "), ("host ", "model host metrics: ")):
            if line.startswith(prefix_):  # one per worker, one for the model host
                port = int(line.removeprefix(prefix_).split(":")[2].split("/")[0])
                ports[port] = who
        if line.startswith(prefix):
            # the rest of its log (the workers' lines at the end) must not fill the pipe
            threading.Thread(target=proc.stderr.read, daemon=True).start()
            return proc, line.removeprefix(prefix).strip().split("?")[0], ports
    raise SystemExit(f"the server did not start (exit {proc.wait()})")


async def speaker(url, token, x, rate, delay, lags, chunk_ms):
    from audio2anim.client import stream

    await asyncio.sleep(delay)
    t_connect = time.monotonic()
    result = await stream(url, token, x, rate, fmt="s16le", realtime=True, chunk_ms=chunk_ms)
    # the session's start: connecting → the header (the first chunk leaves on it)
    result.start_s = result.sent[0][1] - t_connect if result.sent else float("nan")
    # how late each chunk left against its schedule (set by the chunk that was least late)
    t0 = min(t - end for end, t in result.sent)
    lags.extend(t - (t0 + end) for end, t in result.sent)
    return result


async def clients(speakers, url, token, recordings, chunk_ms) -> dict:
    """Some of a level's speakers (index, start delay), in one process → what they measured."""
    lags: list[float] = []
    c0 = time.process_time()
    tasks = [
        speaker(url, token, *recordings[i % len(recordings)][:2], delay, lags, chunk_ms)
        for i, delay in speakers
    ]
    results = await asyncio.gather(*tasks)
    return {
        "lat": np.concatenate([r.latencies() for r in results]),
        # without each speaker's first seconds: its session's start and the level's ramp-up
        "steady": np.concatenate([r.latencies()[int(STEADY_AFTER_S * 50):] for r in results]),
        "lags": np.asarray(lags),
        "starts": np.asarray([r.start_s for r in results]),
        "dropped": sum(r.end.get("dropped", 0) for r in results),
        "frames": sum(len(r.values) for r in results),
        "cpu": time.process_time() - c0,
        "algorithmic": float(results[0].header.get("algorithmic_latency_ms", float("nan"))),
    }


def _clients_in_process(args) -> dict:
    import gc

    # a forked client process holds the whole bench's heap (recordings, imports): out of the
    # collector's sight, so that no full collection walks it while the speakers' event loop
    # waits (on the GPU machine the bench's processes had full collections of 50–110 ms),
    # which would count as the server's latency
    gc.freeze()
    return asyncio.run(clients(*args))


def scrape(ports: dict[int, str]) -> dict[tuple[str, str], float]:
    """The server's batch metrics, summed over its workers (the model host's apart, its models
    prefixed "host "): (sample name, model) → value."""
    out: dict[tuple[str, str], float] = {}
    for port, who in ports.items():
        for (name, model), value in _scrape(port).items():
            key = (name, ("" if who == "ray" else who) + model)
            out[key] = out.get(key, 0.0) + value
    return out


def _scrape(port: int) -> dict[tuple[str, str], float]:
    """One worker's batch metrics: (sample name, model) → value. From Ray's export
    (``ray_audio2anim_*``, per deployment and replica) summed over the replicas, the model
    replicas' models prefixed "host ". Ray exports a histogram's buckets and, as its sum, each
    bucket's count times the bucket's midpoint: a batch size's sum is estimated again here from
    its buckets, sizes being whole numbers (a bucket (2, 4] holds sizes 3 and 4: 3.5 each)."""
    from prometheus_client.parser import text_string_to_metric_families

    for _ in range(20):
        try:
            url = f"http://127.0.0.1:{port}/metrics"
            text = urllib.request.urlopen(url, timeout=5).read().decode()
            break
        except OSError:
            time.sleep(0.25)
    else:
        return {}
    out: dict[tuple[str, str], float] = {}
    sizes: dict[str, dict[float, float]] = {}  # Ray's batch size buckets: model → le → count
    for family in text_string_to_metric_families(text):
        if family.name.removeprefix("ray_").startswith("audio2anim_batch"):
            for s in family.samples:
                name = s.name.removeprefix("ray_")
                host = "host " if s.labels.get("deployment") == "models" else ""
                model = host + s.labels["model"]
                le = float(s.labels.get("le", "nan"))
                within = name == "audio2anim_batch_run_seconds_bucket" and le == 0.05
                if name.endswith(("_sum", "_count")) or within:  # within: batches within 50 ms
                    out[(name, model)] = out.get((name, model), 0.0) + s.value
                if family.name.startswith("ray_") and name == "audio2anim_batch_size_bucket":
                    sizes.setdefault(model, {}).setdefault(le, 0.0)
                    sizes[model][le] += s.value
    for model, cumulative in sizes.items():
        total, below, lo = 0.0, 0.0, 0.0
        for hi in sorted(cumulative):
            if hi != float("inf"):
                total += (cumulative[hi] - below) * (math.floor(lo) + 1 + hi) / 2
            below, lo = cumulative[hi], hi
        out[("audio2anim_batch_size_sum", model)] = total
    return out


def batch_means(before: dict, after: dict) -> dict[str, tuple[float, float, float, int]]:
    """Per model over a level: (mean batch size, mean queue wait in ms, mean run in ms,
    batches that ran over 50 ms)."""

    def delta(name: str, model: str) -> float:
        return after.get((name, model), 0.0) - before.get((name, model), 0.0)

    def mean(family: str, model: str) -> float:  # a histogram's mean over the level
        return delta(f"{family}_sum", model) / max(delta(f"{family}_count", model), 1)

    out = {}
    for name, model in after:
        if name != "audio2anim_batch_size_count" or delta(name, model) <= 0:
            continue
        size = mean("audio2anim_batch_size", model)
        wait = mean("audio2anim_batch_queue_wait_seconds", model) * 1e3
        run = mean("audio2anim_batch_run_seconds", model) * 1e3
        runs = delta("audio2anim_batch_run_seconds_count", model)
        slow = int(runs - delta("audio2anim_batch_run_seconds_bucket", model))
        out[model] = (size, wait, run, slow)
    return out


class GpuUse:
    """Mean GPU utilization (%) over a level, from nvidia-smi every half second."""

    def __init__(self) -> None:
        self.samples: list[float] = []
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        while not self.stop.wait(0.5):
            try:
                out = subprocess.run(
                    ["nvidia-smi", "--query-gpu=utilization.gpu", "--format=csv,noheader,nounits"],
                    capture_output=True, text=True, timeout=5, check=True,
                )  # fmt: skip
                self.samples.append(float(out.stdout.split()[0]))
            except (OSError, subprocess.SubprocessError, ValueError, IndexError):
                return

    def mean(self) -> float:
        self.stop.set()
        self.thread.join()
        return float(np.mean(self.samples)) if self.samples else float("nan")


def level(n, url, token, recordings, server_pid, chunk_ms, procs, metrics_ports, gpu):
    rng = random.Random(n)
    speakers = [(i, rng.uniform(0, 1.0)) for i in range(n)]
    load = os.getloadavg()[0]
    before = scrape(metrics_ports)
    gpu_use = GpuUse() if gpu else None
    s0, t0 = cpu_seconds(server_pid), time.monotonic()
    if procs <= 1:
        parts = [asyncio.run(clients(speakers, url, token, recordings, chunk_ms))]
    else:
        shares = [speakers[k::procs] for k in range(procs) if speakers[k::procs]]
        ctx = multiprocessing.get_context("fork")
        with concurrent.futures.ProcessPoolExecutor(len(shares), mp_context=ctx) as pool:
            jobs = [(share, url, token, recordings, chunk_ms) for share in shares]
            parts = list(pool.map(_clients_in_process, jobs))
    wall = time.monotonic() - t0
    server_cpu = (cpu_seconds(server_pid) - s0) / wall * 100
    client_cpu = sum(p["cpu"] for p in parts) / wall * 100
    load = max(load, os.getloadavg()[0])
    if "ray" in metrics_ports.values():
        time.sleep(2.0)  # Ray exports every second (`start_server`)
    batches = batch_means(before, scrape(metrics_ports))
    lat = np.concatenate([p["lat"] for p in parts]) * 1e3
    steady = np.concatenate([p["steady"] for p in parts]) * 1e3
    lags = np.concatenate([p["lags"] for p in parts])
    starts = np.concatenate([p["starts"] for p in parts]) * 1e3
    dropped = sum(p["dropped"] for p in parts)
    expected = sum(len(x) * 50 // rate for x, rate, _ in
                   (recordings[i % len(recordings)] for i in range(n)))  # fmt: skip
    frames = sum(p["frames"] for p in parts)
    missing = max(0, expected - frames - 2 * n)  # a frame or two at the end is rounding
    return {
        "n": n, "frames": frames, "p50": float(np.percentile(lat, 50)),
        "p99": float(np.percentile(lat, 99)), "drops": dropped + missing,
        "p99_steady": float(np.percentile(steady, 99)) if len(steady) else float("nan"),
        "lag99": float(np.percentile(lags, 99)) * 1e3, "server_cpu": server_cpu,
        "start99": float(np.percentile(starts, 99)),
        "client_cpu": client_cpu, "load": load, "batches": batches,
        "gpu": gpu_use.mean() if gpu_use else None,
        "algorithmic": parts[0]["algorithmic"],
    }  # fmt: skip


def table(rows, voices, seconds, chunk_ms, graph, device, procs, transport="websocket",
          workers=1, ray_direct=False, ray_model_calls="socket") -> str:  # fmt: skip
    gpu = any(r["gpu"] is not None for r in rows)
    ray = len({r["service"] for r in rows}) > 1 or any(r["service"] != "process" for r in rows)
    over = ", over gRPC" if transport == "grpc" else ""
    lines = [
        f"graph {graph or 'graphs/viseme_cnn.yaml'}; batched models on {device}; "
        f"{seconds:g} s per speaker, 16-bit PCM in {chunk_ms:g} ms chunks, paced in real "
        f"time{over}; "
        f"voices {', '.join(voices)} (their own rates); server{f' ({workers} worker processes)' if workers > 1 else ''} and {procs} client "
        f"process{'es' if procs > 1 else ''} on the same machine. Batching: mean calls per "
        "model call (mean wait in the batcher's queue / mean run of a batch, ms; batches over "
        "50 ms), per model"
        + ("; on Ray Serve from Ray's export, whose histogram sums are its buckets' midpoints: "
           "the batch sizes are estimated from their buckets, the means of wait and run are "
           "approximate" if any(r["service"] == "ray" for r in rows) else ""),
        "",
        ("| service " if ray else "")
        + "| batch window ms | speakers | frames | e2e p50 ms | e2e p99 ms | steady p99 ms "
        "| start p99 ms | algorithmic ms | drops "
        "| send lag p99 ms | batching | server CPU % | clients CPU % |"
        + (" GPU % |" if gpu else "")
        + " load | p99 ≤ 100 ms, no drops |",
        "|---" * (15 + gpu + ray) + "|",
    ]
    for r in rows:
        ok = r["p99"] <= GOAL_MS and r["drops"] == 0
        batching = ", ".join(
            f"{m} {size:.1f} ({wait:.1f} / {run:.1f}{f'; {slow} > 50' if slow else ''})"
            for m, (size, wait, run, slow) in sorted(r["batches"].items())
        ) or ("Ray Serve" if r["service"] == "ray" else "off")
        lines.append(
            (f"| {r['service']} " if ray else "")
            + f"| {r['window']:g} | {r['n']} | {r['frames']} | {r['p50']:.1f} | {r['p99']:.1f} | "
            f"{r['p99_steady']:.1f} | {r['start99']:.0f} | "
            f"{r['algorithmic']:.0f} | {r['drops']} | {r['lag99']:.1f} | {batching} | "
            f"{r['server_cpu']:.0f} | {r['client_cpu']:.0f} |"
            + (f" {r['gpu']:.0f} |" if gpu else "")
            + f" {r['load']:.1f} | {'yes' if ok else 'no'} |"
        )
    lines.append("")
    for service, window in dict.fromkeys((r["service"], r["window"]) for r in rows):
        good = [r["n"] for r in rows if (r["service"], r["window"]) == (service, window)
                and r["p99"] <= GOAL_MS and r["drops"] == 0]  # fmt: skip
        what = "without batching" if window == 0 else f"batch window {window:g} ms"
        if service == "ray":
            what = f"on Ray Serve, {what.replace('without batching', 'batch window 0 ms')}"
            if ray_direct:
                what += ", streams to the ingress replicas' own port"
            if ray_model_calls == "serve":
                what += ", model calls through the deployment's handle"
        elif service == "shared":
            what = f"one model process for the workers, {what}"
        lines.append(
            f"Largest N with e2e p99 ≤ {GOAL_MS:g} ms and no drops, {what}: "
            f"**{max(good) if good else 'none'}** of those tried."
        )
    return "\n".join(lines)


def plot(rows, path: Path) -> None:
    try:
        import matplotlib
    except ImportError:
        print("matplotlib is not installed: no plot", file=sys.stderr)
        return
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3.5), dpi=100)
    for service, window in dict.fromkeys((r["service"], r["window"]) for r in rows):
        sel = [r for r in rows if (r["service"], r["window"]) == (service, window)]
        n = [r["n"] for r in sel]
        what = "no batching" if window == 0 else f"batch {window:g} ms"
        what = f"Ray Serve, batch {window:g} ms" if service == "ray" else what
        what = f"shared models, {what}" if service == "shared" else what
        line = ax.plot(n, [r["p99"] for r in sel], "s-", label=f"e2e p99, {what}")[0]
        ax.plot(n, [r["p99_steady"] for r in sel], "^:", color=line.get_color(),
                label=f"e2e p99 after each speaker's first {STEADY_AFTER_S:g} s, {what}")  # fmt: skip
        ax.plot(n, [r["p50"] for r in sel], "o--", color=line.get_color(), alpha=0.6,
                label=f"e2e p50, {what}")  # fmt: skip
    ax.axhline(GOAL_MS, color="gray", ls="--", lw=1, label=f"{GOAL_MS:g} ms")
    ax.set_xlabel("concurrent real-time speakers")
    ax.set_ylabel("ms (chunk sent → frame received)")
    ax.set_yscale("log")
    ax.legend(fontsize=7)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path)
    print(f"plot: {path}", file=sys.stderr)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--speakers", default="1,5,10,20,30,40", help="N values, comma-separated")
    ap.add_argument("--seconds", type=float, default=15.0, help="audio per speaker and level")
    ap.add_argument("--voices", default=VOICES, help="TTS voices, comma-separated")
    ap.add_argument("--audio", type=Path,
                    help="speak this file instead (7 recordings: offsets into it, looped)")  # fmt: skip
    ap.add_argument("--set", dest="sets", action="append", default=[], metavar="NODE.PARAM=V",
                    help="the server's --set (repeatable)")  # fmt: skip
    ap.add_argument("--chunk-ms", type=float, default=20.0, help="audio per chunk (ms)")
    ap.add_argument("--graph", help="the server's graph (default: its default)")
    ap.add_argument("--batch-window-ms", default="0",
                    help="the server's --batch-window-ms, comma-separated: one run each (0 = off)")  # fmt: skip
    ap.add_argument("--device", choices=("cpu", "cuda"), default="cpu",
                    help="the server's --device (where batched torch models run)")  # fmt: skip
    ap.add_argument("--client-procs", type=int, default=1, help="client processes")
    ap.add_argument("--workers", type=int, default=1,
                    help="the server's --workers (processes sharing its port; not with --ray)")  # fmt: skip
    ap.add_argument("--shared-models", choices=("default", "on", "off", "both"), default="default",
                    help="--workers K: the server's --shared-models (on), --no-shared-models "
                    "(off), one of each (both), or neither flag (default)")  # fmt: skip
    ap.add_argument("--transport", choices=("websocket", "grpc"), default="websocket",
                    help="how the speakers stream (default websocket)")  # fmt: skip
    ap.add_argument("--ray", metavar="ADDRESS",
                    help="also measure audio2anim serve --ray ADDRESS (e.g. local)")  # fmt: skip
    ap.add_argument("--ray-model-replicas", type=int, default=1, metavar="N",
                    help="--ray: replicas of the model worker (default 1)")  # fmt: skip
    ap.add_argument("--ray-gpus-per-model-replica", type=float, default=1.0, metavar="F",
                    help="--ray --device cuda: each model replica's share of a GPU (default 1)")  # fmt: skip
    ap.add_argument("--ray-only", action="store_true",
                    help="--ray: measure the server on Ray Serve alone, no process server")  # fmt: skip
    ap.add_argument("--ray-direct", action="store_true",
                    help="--ray: the speakers connect to the ingress replicas' own port "
                    "(--ray-direct-port), not through Ray Serve's proxy")  # fmt: skip
    ap.add_argument("--ray-model-calls", choices=("socket", "serve"), default="socket",
                    help="--ray: the server's --ray-model-calls")  # fmt: skip
    ap.add_argument("--cpu-models", metavar="LABELS",
                    help="the servers' --cpu-models (the batched models kept on the CPU; "
                    "default: theirs)")  # fmt: skip
    ap.add_argument("--warm-batches", type=int, metavar="N",
                    help="the servers' --warm-batches (default: theirs)")  # fmt: skip
    ap.add_argument("--plot", type=Path, help="write the latency plot here (PNG)")
    ap.add_argument("--stop-after", type=int, default=2,
                    help="stop after this many levels in a row miss the goal")  # fmt: skip
    ap.add_argument("--section", help="the docs section --write-docs writes (default: serve, "
                    "serve_grpc with --transport grpc)")  # fmt: skip
    add_arguments(ap)
    args = ap.parse_args()
    if args.audio:
        recordings = from_file(args.audio, 7, args.seconds)
        voices = [name for _, _, name in recordings]
    else:
        voices = args.voices.split(",")
        recordings = synthesize(voices, args.seconds)
    rows = []
    if args.ray and args.transport == "grpc":
        ap.error("--ray: WebSocket only (no --transport grpc)")
    windows = [float(w) for w in args.batch_window_ms.split(",")]
    # one server per window (and one on Ray Serve), all up at once: the levels of each N run
    # side by side
    kinds = {"default": ["process"], "on": ["shared"], "off": ["process"],
             "both": ["shared", "process"]}[args.shared_models]  # fmt: skip
    if args.ray_only:
        if not args.ray:
            ap.error("--ray-only: with --ray")
        kinds = []  # Ray's processes would load the machine under the others' levels anyway
    # the server's flag per service: "process" takes the server's default unless asked for
    shared_flag = {"shared": True, "ray": None,
                   "process": None if args.shared_models == "default" else False}  # fmt: skip
    keys = [(k, w) for k in kinds for w in windows] + ([("ray", windows[0])] if args.ray else [])
    servers = {}
    try:
        for service, window in keys:
            token = secrets.token_urlsafe(24)
            proc, url, metrics_ports = start_server(
                token, args.graph, window, args.device, args.sets, args.transport,
                args.ray if service == "ray" else None, args.workers, shared_flag[service],
                args.ray_model_replicas, args.ray_gpus_per_model_replica, args.warm_batches,
                args.ray_direct, args.ray_model_calls, args.cpu_models,
            )  # fmt: skip
            servers[service, window] = (proc, url, token, metrics_ports)
        misses = dict.fromkeys(keys, 0)
        for n in (int(v) for v in args.speakers.split(",")):
            for service, window in [k for k in keys if misses[k] < args.stop_after]:
                proc, url, token, metrics_ports = servers[service, window]
                r = level(n, url, token, recordings, proc.pid, args.chunk_ms, args.client_procs,
                          metrics_ports, args.device == "cuda")  # fmt: skip
                r["service"], r["window"] = service, window
                rows.append(r)
                batches = ", ".join(f"{m} {b:.1f} (run {run:.1f} ms, {slow} > 50 ms)"
                                    for m, (b, _, run, slow) in sorted(r["batches"].items()))
                print(
                    f"{service}, window {window:g} ms, N={n}: p50 {r['p50']:.1f} ms, p99 {r['p99']:.1f} ms "
                    f"(after each speaker's first {STEADY_AFTER_S:g} s: {r['p99_steady']:.1f} ms), "
                    f"drops {r['drops']}, session start p99 {r['start99']:.0f} ms, "
                    f"send lag p99 {r['lag99']:.1f} ms, "
                    f"batches {batches or 'off'}, server CPU {r['server_cpu']:.0f}%, "
                    f"clients CPU {r['client_cpu']:.0f}%, load {r['load']:.1f}",
                    file=sys.stderr, flush=True,
                )  # fmt: skip
                ok = r["p99"] <= GOAL_MS and r["drops"] == 0
                misses[service, window] = 0 if ok else misses[service, window] + 1
            if all(m >= args.stop_after for m in misses.values()):
                break
    finally:
        for proc, *_ in servers.values():
            proc.terminate()
        for proc, *_ in servers.values():
            proc.wait(timeout=60)
    rows.sort(key=lambda r: keys.index((r["service"], r["window"])))
    text = table(rows, voices, args.seconds, args.chunk_ms, args.graph, args.device,
                 args.client_procs, args.transport, args.workers, args.ray_direct,
                 args.ray_model_calls)  # fmt: skip
    print(text)
    if args.plot:
        plot(rows, args.plot)
    section = args.section or ("serve_grpc" if args.transport == "grpc" else "serve")
    write_from_args(args, section, text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
