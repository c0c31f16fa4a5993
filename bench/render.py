"""Benchmark the face renderer: ms per frame and fps, by size and multisampling.

    python bench/render.py [--frames 200] [--sizes 256 512] [--msaa 1 4] [--write-docs]

Each frame poses the default rig with fresh random weights on all 52 blendshapes (the worst
case for the CPU morph step), renders and reads the image back. The `+encode` rows add H.264
encoding (PyAV, veryfast) of the same frames, as `sink.video` does.

Columns: wall-clock ms per frame (mean, p50, p95) and fps from the mean; `cpu ms` is the
process CPU time per frame summed over all threads (llvmpipe renders on worker threads of this
process), which other load on the machine does not inflate the way it inflates wall time. The
1-minute load average is printed with the table: on a shared machine, read wall times with it.
``--write-docs`` also writes the table into docs/performance.md (section ``render``).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from audio2anim.face import Renderer, load_glb
from audio2anim.face.video import VideoWriter

sys.path.insert(0, str(Path(__file__).resolve().parent))
from perf_page import add_arguments, write_from_args  # noqa: E402


def bench(rig, size: int, msaa: int, frames: int, encode: bool) -> tuple[list[float], float]:
    rng = np.random.default_rng(0)
    weights = rng.uniform(0, 0.6, (frames + 5, len(rig.target_names))).astype(np.float32)
    times = []
    cpu = 0.0
    with Renderer(rig, size, msaa=msaa) as r, tempfile.TemporaryDirectory() as tmp:
        writer = VideoWriter(Path(tmp) / "b.mp4", fps=25, with_audio=False) if encode else None
        for i, w in enumerate(weights):
            t, c = time.perf_counter(), time.process_time()
            img = r.render(w)
            if writer is not None:
                writer.add_frames(img[None], i / 25, 25)
            if i >= 5:  # warm-up frames are not timed
                times.append(time.perf_counter() - t)
                cpu += time.process_time() - c
        if writer is not None:
            writer.close()
    return times, cpu / len(times)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--frames", type=int, default=200)
    ap.add_argument("--sizes", type=int, nargs="+", default=[256, 512])
    ap.add_argument("--msaa", type=int, nargs="+", default=[1, 4])
    add_arguments(ap)
    args = ap.parse_args()
    rig = load_glb()
    with Renderer(rig, 16) as probe, probe.ctx:
        device = probe.ctx.info["GL_RENDERER"]
    print(f"rig: {rig.n_vertices} vertices, {len(rig.triangles)} triangles, "
          f"{len(rig.target_names)} blendshapes; GL renderer: {device}")  # fmt: skip
    load_before = os.getloadavg()[0]
    print(f"load average (1 min): {load_before:.2f} on {os.cpu_count()} CPUs")
    rows = [
        "| size | msaa | step | mean ms | p50 ms | p95 ms | fps | cpu ms |",
        "|---|---|---|---|---|---|---|---|",
    ]
    print(f"{'size':>6} {'msaa':>5} {'step':>7} {'mean ms':>8} {'p50 ms':>7} {'p95 ms':>7} "
          f"{'fps':>7} {'cpu ms':>7}")  # fmt: skip
    for size in args.sizes:
        for msaa in args.msaa:
            for encode in (False, True):
                times, cpu = bench(rig, size, msaa, args.frames, encode)
                t = np.array(times) * 1e3
                step = "+encode" if encode else "render"
                print(f"{size:>6} {msaa:>5} {step:>7} {t.mean():8.2f} {np.median(t):7.2f} "
                      f"{np.percentile(t, 95):7.2f} {1e3 / t.mean():7.1f} {cpu * 1e3:7.2f}")  # fmt: skip
                rows.append(f"| {size} | {msaa} | {step} | {t.mean():.2f} | {np.median(t):.2f} | "
                            f"{np.percentile(t, 95):.2f} | {1e3 / t.mean():.1f} | {cpu * 1e3:.2f} |")  # fmt: skip
    load_after = os.getloadavg()[0]
    print(f"load average (1 min) after: {load_after:.2f}")
    head = (f"{rig.n_vertices} vertices, {len(rig.triangles)} triangles, GL renderer {device}; "
            f"load average {load_before:.2f} before, {load_after:.2f} after, {os.cpu_count()} CPUs")  # fmt: skip
    write_from_args(args, "render", head + "\n\n" + "\n".join(rows))


if __name__ == "__main__":
    main()
