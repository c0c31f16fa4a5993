#!/usr/bin/env python3
"""Batch animation: dialogue lines per second and real-time factor, three ways.

Synthesizes ``--lines`` dialogue lines of 1–3 s with several espeak-ng voices (the voice
registry of `audio2anim.data.tts`), then animates them to ARKit CSV:

- one ``audio2anim animate IN -o OUT.csv`` subprocess per line (today's way for a script
  that loops over files): run for ``--per-line`` lines and extrapolated to all of them;
- one batch call, ``audio2anim animate DIR --out-dir OUT`` (worker pool, models loaded once);
- the Python API in a warm process (`audio2anim.Animator` already built; ``animate`` + write).

Start-up is the time of one ``animate`` subprocess on a 0.5 s clip, and of building an
``Animator`` in this process. Real-time factor = seconds of audio / seconds of wall clock.

    .venv/bin/python bench/batch.py [--lines 200] [--per-line 10] [--write-docs]

``--write-docs`` writes the table into docs/performance.md (section ``batch``).
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import soundfile as sf

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from perf_page import add_arguments, write_from_args  # noqa: E402

VOICES = ("espeak:en-us", "espeak:en-us+f3", "espeak:en-us+m3", "espeak:en+m1")
WORDS = re.findall(
    r"\w+",
    "the map of the moon is on the boat bob made a big blue paper plane for pam "
    "where did you put my old keys please open the window before the storm comes",
)


def synth_lines(folder: Path, n: int, seed: int = 0) -> float:
    """``n`` WAVs of 1–3 s in ``folder`` → total seconds of audio."""
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


def cli(*args: str) -> float:
    t0 = time.perf_counter()
    subprocess.run(
        [sys.executable, "-m", "audio2anim", "animate", *args, "--quiet"],
        check=True, cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)},
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    return time.perf_counter() - t0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--lines", type=int, default=200, help="dialogue lines to synthesize")
    ap.add_argument("--per-line", type=int, default=10, help="lines run one subprocess each")
    add_arguments(ap)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="a2a-batch-") as tmp:
        tmp = Path(tmp)
        lines = tmp / "lines"
        lines.mkdir()
        seconds = synth_lines(lines, args.lines)
        wavs = sorted(lines.glob("*.wav"))
        short = tmp / "short.wav"
        sf.write(short, np.zeros(8000, np.float32), 16000)
        startup_cli = cli(str(short), "-o", str(tmp / "short.csv"))

        sub = wavs[: args.per_line]
        t = sum(cli(str(w), "-o", str(tmp / "one" / f"{w.stem}.csv")) for w in sub)
        per_line = t / len(sub) * len(wavs)  # extrapolated

        batch = cli(str(lines), "--out-dir", str(tmp / "batch"), "--format", "csv")

        from audio2anim import Animator
        from audio2anim.animate.outputs import write_output

        t0 = time.perf_counter()
        animator = Animator()
        startup_api = time.perf_counter() - t0
        (tmp / "api").mkdir()
        t0 = time.perf_counter()
        for w in wavs:
            write_output(tmp / "api" / f"{w.stem}.csv", animator.animate(w))
        api = time.perf_counter() - t0

    n = len(wavs)
    rows = [
        ("one `animate` per line", per_line, f"extrapolated from {len(sub)} lines"),
        ("one batch call", batch, f"{min(os.cpu_count() or 1, n)} workers, start-up included"),
        ("Python API, warm process", api, "one thread, after `Animator()`"),
    ]
    table = [
        f"{n} lines, {seconds:.0f} s of audio ({seconds / n:.2f} s a line), "
        f"espeak-ng voices {', '.join(v.split(':')[1] for v in VOICES)}",
        "",
        "| way | wall (s) | lines/s | s per line | real-time factor | speed-up | note |",
        "|---|---|---|---|---|---|---|",
    ]
    for name, wall, note in rows:
        table.append(
            f"| {name} | {wall:.1f} | {n / wall:.2f} | {wall / n:.3f} | {seconds / wall:.1f}x "
            f"| {per_line / wall:.1f}x | {note} |"
        )
    table += [
        "",
        f"start-up: `audio2anim animate` on a 0.5 s clip {startup_cli:.2f} s; "
        f"`Animator()` in the bench process (torch not yet imported) {startup_api:.2f} s",
    ]
    text = "\n".join(table)
    print(text)
    write_from_args(args, "batch", text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
