#!/usr/bin/env python3
"""CPU cost of the offline path: `audio2anim animate`'s graph run over a clip in this process,
per method graph, on one thread (torch's and each ONNX Runtime session's).

    python bench/offline_cost.py [--graphs graphs/whisper_w2v_attention.yaml,graphs/viseme_cnn.yaml]
                                 [--seconds 20] [--repeats 3] [--threads 1] [--write-docs]

A graph may carry one override after ``@`` (``graphs/whisper_cnn.yaml@vis.backend=torch``: its
fine-tuned Whisper encoder in torch, the reference of its ONNX Runtime export).

The clip is the shipped speech clip repeated to ``--seconds`` (20 s: under the frozen Whisper
head's 25 s, so `animate`'s default encodes it whole; 60 s: three
30 s windows). Each graph is loaded once (`audio2anim.animate.api.Animator`, which warms it up),
then animates the clip ``--repeats`` times; the table gives the median real-time factor (audio
seconds per wall second) and the CPU time of this process per second of audio (less sensitive
than wall time to other jobs on a shared machine), and, for the Whisper front end alone
in ONNX Runtime (`OnnxWhisperVisemes.posteriors`) and in torch (`WhisperVisemes.posteriors`),
its CPU milliseconds per second of audio.
``--write-docs`` writes the table into docs/performance.md (section ``offline-cost``).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from perf_page import add_arguments, write_from_args  # noqa: E402

DEFAULT_GRAPHS = (
    "graphs/whisper_w2v_attention.yaml,graphs/whisper_cnn.yaml,"
    "graphs/whisper_cnn.yaml@vis.backend=torch,graphs/viseme_cnn.yaml"
)


def timed(fn, repeats: int) -> tuple[float, float]:
    """(median wall seconds, median process CPU seconds) of ``fn()`` over ``repeats`` calls."""
    walls, cpus = [], []
    for _ in range(repeats):
        w, c = time.perf_counter(), time.process_time()
        fn()
        walls.append(time.perf_counter() - w)
        cpus.append(time.process_time() - c)
    return statistics.median(walls), statistics.median(cpus)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--graphs", default=DEFAULT_GRAPHS, help="comma-separated graph files")
    ap.add_argument("--seconds", type=float, default=20.0)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=1, help="torch threads")
    add_arguments(ap)
    args = ap.parse_args()
    os.environ["AUDIO2ANIM_TORCH_THREADS"] = str(args.threads)
    os.environ.setdefault("TQDM_DISABLE", "1")
    import torch

    from audio2anim.animate.api import Animator
    from audio2anim.audio import read_audio
    from audio2anim.sources.file import SHIPPED_SPEECH

    torch.set_num_threads(args.threads)
    speech, _ = read_audio(SHIPPED_SPEECH, 16000)
    n = int(args.seconds * 16000)
    clip = np.tile(speech, -(-n // len(speech)))[:n]
    lines = [
        f"{args.seconds:g} s clip (the shipped speech clip repeated), torch {torch.__version__}, "
        f"{args.threads} thread(s), median of {args.repeats}; load average "
        f"{os.getloadavg()[0]:.1f} at the start",
        "",
        "| graph (`animate --graph`) | real-time factor | CPU s per audio s |",
        "|---|---|---|",
    ]
    for spec in args.graphs.split(","):
        graph, _, override = spec.partition("@")
        animator = Animator(graph, [override] if override else [])
        wall, cpu = timed(lambda a=animator: a.animate(clip, rate=16000), args.repeats)
        label = f"`{graph}`" + (f" `--set {override}`" if override else "")
        lines.append(f"| {label} | {args.seconds / wall:.1f}× | {cpu / args.seconds:.3f} |")
        print(lines[-1], flush=True)
    from audio2anim.models.whisper_head import WhisperVisemes
    from audio2anim.models.whisper_onnx import OnnxWhisperVisemes
    from audio2anim.resources import require_checkpoint

    head = require_checkpoint("checkpoints/whisper-viseme-head", "checkpoint")
    costs = []
    for front in (OnnxWhisperVisemes(head), WhisperVisemes(head)):
        front.posteriors(clip[:16000])  # warm-up
        _, cpu = timed(lambda f=front: f.posteriors(clip), args.repeats)
        costs.append(f"{1000 * cpu / args.seconds:.1f}")
    lines += [
        "",
        f"Whisper front end alone (tiny.en encoder + head, offline windows), CPU ms per second of "
        f"audio: {costs[0]} in ONNX Runtime, {costs[1]} in torch.",
    ]
    text = "\n".join(lines)
    print(text)
    write_from_args(args, "offline-cost", text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
