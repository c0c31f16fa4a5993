#!/usr/bin/env python3
"""Batch animation: start-up, dialogue lines per second and real-time factor, and a long recording.

Synthesizes ``--lines`` dialogue lines of 1–3 s with several voices of the project's TTS engines
(espeak-ng, Flite, Festival: `audio2anim.data.tts`; their own rates, 16–32 kHz), then animates
them to ARKit CSV:

- one ``audio2anim animate IN -o OUT.csv`` subprocess per line (a script that loops over
  files): ``--per-line`` lines are run and the time extrapolated to all of them;
- one batch call, ``audio2anim animate DIR --out-dir OUT`` (worker pool, models loaded once);
- the Python API in a warm process (`audio2anim.Animator` already built; ``animate`` + write).

``--graph`` is the method graph of every run (default: ``animate``'s default). Start-up is the
wall time of ``audio2anim animate line.wav -o x.csv`` on a 1 s line (the median of
``--startup-runs``, after one run that compiles the bytecode and fills the ONNX export cache,
as an installed package has them), and where it goes: the interpreter, the imports, building the
`Animator`, the first file (ONNX Runtime sessions and the run); and once, the first run on a
machine (an empty export cache: the models are exported to ONNX, with torch). Real-time factor =
seconds of audio / seconds of wall clock.

The long recording (``--minutes``, 0 to skip) concatenates the synthesized lines, with pauses,
into one WAV of that length, animates it with one ``audio2anim animate`` call writing ARKit CSV,
animation JSON and Rhubarb TSV cues, and samples the process's resident memory (RSS) every
second: printed over time, so a flat line shows memory does not grow with the recording.

The machine may be shared: the 1-minute load average is recorded beside every figure (on a
2-core machine, a load above 2 means the bench got less than the whole CPU).

    .venv/bin/python bench/batch.py [--lines 200] [--per-line 20] [--minutes 60] [--graph G] [--write-docs]

``--write-docs`` writes the tables into docs/performance.md (sections ``batch`` and
``long-recording``).
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import soundfile as sf

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from perf_page import add_arguments, write_from_args  # noqa: E402

VOICES = ("espeak:en-us", "espeak:en-us+f3", "espeak:en+m1", "flite:awb", "flite:rms",
          "festival:kal", "festival:slt")  # fmt: skip
WORDS = re.findall(
    r"\w+",
    "the map of the moon is on the boat bob made a big blue paper plane for pam "
    "where did you put my old keys please open the window before the storm comes",
)
GOALS = {"speed-up": 20.0, "s per line": 0.1, "start-up": 1.5}


def load() -> float:
    return os.getloadavg()[0]


CODE = ROOT  # the source tree the subprocesses run (--code)
GRAPH = "graphs/whisper_w2v_attention.yaml"  # every run's method graph (--graph; default animate's)


def env() -> dict:
    """The subprocesses' environment: the source tree first; bytecode written and used, as an
    installed package has it (``PYTHONDONTWRITEBYTECODE`` would recompile every module)."""
    e = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    e["PYTHONPATH"] = str(CODE) + os.pathsep + e.get("PYTHONPATH", "")
    return e


def synth_lines(folder: Path, n: int, seed: int = 0) -> float:
    """``n`` WAVs of 1–3 s in ``folder``, the voices in turn → total seconds of audio."""
    from audio2anim.data.tts import resolve

    rng = np.random.default_rng(seed)
    total = 0.0
    for i in range(n):
        engine, voice = resolve(VOICES[i % len(VOICES)])
        for _ in range(20):  # draw word counts until the line lasts 1–3 s
            words = rng.choice(WORDS, size=int(rng.integers(2, 9)))
            audio, sr, _, _ = engine.speak(" ".join(words), voice, rng)
            if 1.0 <= len(audio) / sr <= 3.0:
                break
        sf.write(folder / f"line{i:04d}.wav", audio, sr)
        total += len(audio) / sr
    return total


def cli(*args: str, extra_env: dict | None = None) -> float:
    t0 = time.perf_counter()
    subprocess.run(
        [sys.executable, "-m", "audio2anim", "animate", *args, "--graph", GRAPH, "--quiet"],
        check=True, cwd=CODE, env={**env(), **(extra_env or {})}, stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )  # fmt: skip
    return time.perf_counter() - t0


PHASES = """
import time, sys
t0 = time.perf_counter()
from audio2anim import cli as main_cli
argv = ["animate", sys.argv[1], "-o", sys.argv[2], "--graph", sys.argv[3], "--quiet"]
if hasattr(main_cli, "modules_for"):
    main_cli.build_parser(main_cli.modules_for(argv))
else:  # a tree whose parser imports every command
    main_cli.build_parser()
from audio2anim.animate import cli
t1 = time.perf_counter()
cli._init_worker(cli.Settings(sys.argv[3], (), None, None, None))
t2 = time.perf_counter()
r = cli.animate_job(cli.Job(__import__("pathlib").Path(sys.argv[1]),
                            [(__import__("pathlib").Path(sys.argv[2]), "csv")]), cli.Settings(
    sys.argv[3], (), None, None, None))
t3 = time.perf_counter()
assert r[2] is None, r
print(t1 - t0, t2 - t1, t3 - t2)
"""


def startup(tmp: Path, line: Path, runs: int) -> tuple[list[float], dict[str, float]]:
    """Wall times of ``runs`` one-line ``animate`` calls, and the phases of one (medians)."""
    cold_cache = {"AUDIO2ANIM_CACHE": str(tmp / "cold-cache")}
    cli(str(line), "-o", str(tmp / "warm.csv"))  # bytecode compiled, ONNX exports cached
    cold_load, before = load(), _children_cpu()
    cold = cli(str(line), "-o", str(tmp / "cold.csv"), extra_env=cold_cache)
    cold_cpu = _children_cpu() - before
    walls, loads, cpus = [], [], []
    for k in range(runs):
        loads.append(load())
        before = _children_cpu()
        walls.append(cli(str(line), "-o", str(tmp / f"s{k}.csv")))
        cpus.append(_children_cpu() - before)
    bare = statistics.median(
        _timed([sys.executable, "-c", "pass"]) for _ in range(max(3, runs // 2))
    )
    phases = []
    for k in range(max(3, runs // 2)):
        p = subprocess.run([sys.executable, "-c", PHASES, str(line), str(tmp / f"p{k}.csv"), GRAPH],
                           cwd=CODE, env=env(), capture_output=True, text=True, check=True)  # fmt: skip
        phases.append([float(x) for x in p.stdout.split()])
    med = np.median(np.array(phases), axis=0)
    return walls, {
        "interpreter": bare,
        "imports, parser": float(med[0]),
        "Animator (graph built, operators registered)": float(med[1]),
        "first file (ONNX sessions, run, CSV)": float(med[2]),
        "load": statistics.mean(loads),
        "cpu": statistics.median(cpus),
        "cold": (cold, cold_cpu, cold_load),
    }


def startup_table(args, tmp: Path) -> str:
    """The start-up of ``--code``'s ``animate`` on a 1 s espeak-ng line, with its phases."""
    line = tmp / "one-second.wav"
    folder = tmp / "startup-line"
    folder.mkdir()
    synth_lines(folder, 1)
    audio, sr = sf.read(next(folder.glob("*.wav")), dtype="float32")
    sf.write(line, np.resize(audio, sr), sr)
    walls, phases = startup(tmp, line, args.startup_runs)
    lines = [
        f"{CODE}: start-up {statistics.median(walls):.2f} s (median of {len(walls)}: "
        f"{', '.join(f'{w:.2f}' for w in walls)}; load {phases['load']:.1f}); "
        f"CPU time {phases['cpu']:.2f} s"
    ]
    shown = [f"  {k}: {v:.2f} s" for k, v in phases.items() if k not in HIDDEN]
    shown.append(f"  first run on a machine (empty export cache): {phases['cold'][0]:.2f} s")
    return "\n".join(lines + shown)


HIDDEN = ("load", "cpu", "cold")  # phases' entries that are not phases


def _children_cpu() -> float:
    """CPU seconds (user + system) of the finished subprocesses so far: unlike the wall time,
    hardly changed by other jobs on a shared machine."""
    import resource

    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def _timed(cmd: list[str]) -> float:
    t0 = time.perf_counter()
    subprocess.run(cmd, check=True, env=env())
    return time.perf_counter() - t0


def batch_table(args, tmp: Path) -> str:
    lines = tmp / "lines"
    lines.mkdir()
    seconds = synth_lines(lines, args.lines)
    wavs = sorted(lines.glob("*.wav"))
    n = len(wavs)
    line1 = tmp / "one-second.wav"
    audio, sr = sf.read(wavs[0], dtype="float32")
    sf.write(line1, np.resize(audio, sr), sr)
    walls, phases = startup(tmp, line1, args.startup_runs)
    start = statistics.median(walls)
    print(
        f"start-up {start:.2f} s (median of {len(walls)}: {', '.join(f'{w:.2f}' for w in walls)})"
    )

    sub = wavs[: args.per_line]
    load_per_line = load()
    t = sum(cli(str(w), "-o", str(tmp / "one" / f"{w.stem}.csv")) for w in sub)
    per_line = t / len(sub) * n  # extrapolated
    print(f"per line: {t / len(sub):.2f} s a line")

    load_batch = load()
    batch = cli(str(lines), "--out-dir", str(tmp / "batch"), "--format", "csv")
    print(f"batch: {batch:.1f} s")

    from audio2anim import Animator
    from audio2anim.animate.outputs import write_output

    load_api = load()
    animator = Animator(GRAPH)
    (tmp / "api").mkdir()
    t0 = time.perf_counter()
    for w in wavs:
        write_output(tmp / "api" / f"{w.stem}.csv", animator.animate(w))
    api = time.perf_counter() - t0
    print(f"API: {api:.1f} s")

    workers = min(os.cpu_count() or 1, n)
    rows = [
        ("one `animate` per line", per_line, load_per_line,
         f"extrapolated from {len(sub)} lines"),
        ("one batch call", batch, load_batch, f"{workers} workers, start-up included"),
        ("Python API, warm process", api, load_api, "one process, after `Animator()`"),
    ]  # fmt: skip
    rates = sorted({sf.info(str(w)).samplerate for w in wavs})
    cold, cold_cpu, cold_load = phases["cold"]
    table = [
        f"`{GRAPH}`; {n} lines, {seconds:.0f} s of audio ({seconds / n:.2f} s a line), voices "
        f"{', '.join(VOICES)} ({', '.join(f'{r / 1000:g}' for r in rates)} kHz)",
        "",
        "| way | wall (s) | lines/s | s per line | real-time factor | speed-up | load | note |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for name, wall, ld, note in rows:
        table.append(
            f"| {name} | {wall:.1f} | {n / wall:.2f} | {wall / n:.3f} | {seconds / wall:.1f}x "
            f"| {per_line / wall:.1f}x | {ld:.1f} | {note} |"
        )
    after = (batch - start) / n
    table += [
        "",
        f"Start-up (`audio2anim animate line.wav -o x.csv`, a 1 s line): **{start:.2f} s** "
        f"(median of {len(walls)}; min {min(walls):.2f} s; load {phases['load']:.1f}; CPU time "
        f"{phases['cpu']:.2f} s, user + system, which other jobs hardly change). "
        "Where it goes (medians):",
        "",
        "| phase | s |",
        "|---|---|",
        *[f"| {k} | {v:.2f} |" for k, v in phases.items() if k not in HIDDEN],
        "",
        f"The first run on a machine (an empty ONNX export cache: the models are exported, with "
        f"torch) took {cold:.1f} s ({cold_cpu:.1f} s CPU; load {cold_load:.1f}).",
        "",
        f"Goals (load {statistics.mean([load_per_line, load_batch, load_api]):.1f} on "
        f"{os.cpu_count()} cores; above that, other jobs shared the CPU): "
        + "; ".join(
            [
                _goal(
                    f"batch {per_line / batch:.0f}x faster than one call per line",
                    per_line / batch >= GOALS["speed-up"],
                    f"≥{GOALS['speed-up']:g}x",
                ),
                _goal(
                    f"{after:.3f} s a line after start-up (batch)",
                    after <= GOALS["s per line"],
                    f"≤{GOALS['s per line']:g} s",
                ),
                _goal(
                    f"start-up {start:.2f} s",
                    start <= GOALS["start-up"],
                    f"≤{GOALS['start-up']:g} s",
                ),
            ]
        ),  # fmt: skip
    ]
    return "\n".join(table)


def _goal(what: str, met: bool, goal: str) -> str:
    return f"{what} ({'met' if met else 'not met'}: {goal})"


# ----------------------------------------------------------------------- a long recording


def long_recording(folder: Path, minutes: float, out: Path, seed: int = 1) -> float:
    """The WAVs of ``folder`` (resampled to 22.05 kHz) in random order with 0.2–1.5 s pauses,
    until ``minutes`` of audio, written as it is made → seconds."""
    import soxr

    rate = 22050
    rng = np.random.default_rng(seed)
    clips = []
    for w in sorted(folder.glob("*.wav")):
        x, sr = sf.read(w, dtype="float32")
        clips.append(soxr.resample(x, sr, rate).astype(np.float32) if sr != rate else x)
    target = int(minutes * 60 * rate)
    written = 0
    with sf.SoundFile(out, "w", rate, 1, "PCM_16") as f:
        while written < target:
            piece = np.concatenate(
                [np.zeros(int(rng.uniform(0.2, 1.5) * rate), np.float32),
                 clips[int(rng.integers(len(clips)))]]
            )[: target - written]  # fmt: skip
            f.write(piece)
            written += len(piece)
    return written / rate


def rss_mb(pid: int) -> float | None:
    try:
        for ln in Path(f"/proc/{pid}/status").read_text().splitlines():
            if ln.startswith("VmRSS:"):
                return int(ln.split()[1]) / 1024
    except OSError:
        return None
    return None


def long_table(args, tmp: Path) -> str:
    lines = tmp / "lines"
    if not lines.is_dir():
        lines.mkdir()
        synth_lines(lines, 40)
    wav = tmp / "long.wav"
    seconds = long_recording(lines, args.minutes, wav)
    outs = [tmp / "long.csv", tmp / "long.json", tmp / "long.tsv"]
    ld0 = load()
    cpu0 = _children_cpu()
    t0 = time.perf_counter()
    proc = subprocess.Popen(
        [sys.executable, "-m", "audio2anim", "animate", str(wav),
         *[a for o in outs for a in ("-o", str(o))], "--graph", GRAPH, "--quiet"],
        cwd=ROOT, env=env(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    samples: list[tuple[float, float, float]] = []  # (s since start, RSS MB, load)
    done = threading.Event()

    def sample() -> None:
        while not done.is_set():
            r = rss_mb(proc.pid)
            if r is not None:
                samples.append((time.perf_counter() - t0, r, load()))
            done.wait(1.0)

    th = threading.Thread(target=sample, daemon=True)
    th.start()
    _, err = proc.communicate()
    wall = time.perf_counter() - t0
    cpu = _children_cpu() - cpu0
    done.set()
    th.join()
    if proc.returncode != 0:
        raise SystemExit(f"animate failed: {err}")
    sizes = ", ".join(f"{o.suffix[1:]} {o.stat().st_size / 1e3:,.0f} kB" for o in outs)
    print(f"long recording: {seconds / 60:.1f} min in {wall:.1f} s ({seconds / wall:.1f}x)")
    trace = ["| t (s) | RSS (MB) | load |", "|---|---|---|"]
    step = max(1, len(samples) // 12)
    picked = samples[::step] + ([samples[-1]] if samples and (len(samples) - 1) % step else [])
    trace += [f"| {t:.0f} | {r:.0f} | {ld:.1f} |" for t, r, ld in picked]
    rss = [r for _, r, _ in samples]
    half = rss[len(rss) // 4 :] or rss
    loads = [ld for _, _, ld in samples] or [ld0]
    table = [
        f"{seconds / 60:.1f} minutes of synthesized speech (the dialogue lines with pauses, "
        "22.05 kHz mono), one `audio2anim animate long.wav -o long.csv -o long.json -o long.tsv` "
        f"with `{GRAPH}`",
        "",
        "| audio (min) | wall (s) | real-time factor | CPU time (s) | audio s per CPU s | peak "
        "RSS (MB) | RSS growth after the first quarter (MB) | mean load | outputs |",
        "|---|---|---|---|---|---|---|---|---|",
        f"| {seconds / 60:.1f} | {wall:.1f} | {seconds / wall:.1f}x | {cpu:.1f} | "
        f"{seconds / cpu:.0f} | {max(rss):.0f} | {max(half) - half[0]:+.0f} | "
        f"{statistics.mean(loads):.1f} | {sizes} |",
        "",
        "CPU time is user + system of the `animate` process (its threads on both cores); other "
        "jobs on the machine lengthen the wall time, hardly the CPU time.",
        "",
        "RSS over the run (sampled every second):",
        "",
        *trace,
        "",
        f"Goal (mean load {statistics.mean(loads):.1f} on {os.cpu_count()} cores): "
        + _goal(f"{seconds / wall:.1f}x real time", seconds / wall >= 50, "≥50x, flat memory"),
    ]
    return "\n".join(table)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--lines", type=int, default=200, help="dialogue lines to synthesize")
    ap.add_argument("--per-line", type=int, default=20, help="lines run one subprocess each")
    ap.add_argument("--startup-runs", type=int, default=7, help="one-line calls timed")
    ap.add_argument("--minutes", type=float, default=60.0,
                    help="length of the long recording (0: skip it)")  # fmt: skip
    ap.add_argument(
        "--only",
        choices=["batch", "long", "startup"],
        help="run one bench (startup: the start-up figures alone, not written to docs)",
    )
    ap.add_argument("--code", type=Path, default=ROOT,
                    help="source tree the animate subprocesses run (e.g. another checkout, to "
                         "compare its start-up)")  # fmt: skip
    ap.add_argument("--graph", default=None,
                    help="method graph of every run (default: animate's default)")  # fmt: skip
    add_arguments(ap)
    args = ap.parse_args()
    global CODE, GRAPH
    CODE = args.code.resolve()
    if args.graph is not None:
        GRAPH = args.graph
    else:
        from audio2anim.animate.api import DEFAULT_GRAPH

        GRAPH = DEFAULT_GRAPH
    print(f"load average at start: {', '.join(f'{x:.2f}' for x in os.getloadavg())}")
    with tempfile.TemporaryDirectory(prefix="a2a-batch-") as tmp:
        tmp = Path(tmp)
        if args.only == "startup":
            print(startup_table(args, tmp))
        if args.only in (None, "batch"):
            text = batch_table(args, tmp)
            print(text)
            write_from_args(args, "batch", text)
        if args.only in (None, "long") and args.minutes > 0:
            text = long_table(args, tmp)
            print(text)
            write_from_args(args, "long-recording", text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
