"""``audio2anim animate IN -o OUT.csv [--graph graphs/NAME.yaml] [--video OUT.mp4]``.

Runs a method graph as fast as possible over an audio file (any format and rate libsndfile
and soxr handle, mono or multichannel — channels are averaged) and writes the animation as a
CSV: ``time`` (seconds) then the 52 ARKit blendshape names exactly as ARKit spells them (the
``simple`` layout of ``sink.csv``; parameters the model does not predict are 0). ``--video``
also renders the face (``render.mesh``) into an MP4 with the audio (``sink.video``).

The graph's ``src`` node becomes ``source.file``, its live sinks are dropped, the CSV (and
video) sinks hang off its ``smooth`` node, and every queue blocks: nothing is dropped
(`audio2anim.animate.graph_edit`).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from audio2anim.graph.cli import add_checkpoints_argument, apply_checkpoints_argument

# the best method on this 2-core CPU by bench/latency.py (see docs/methods.md)
DEFAULT_GRAPH = "graphs/viseme_cnn.yaml"


def add_commands(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "animate",
        help="animate an audio file offline → CSV of ARKit weights (and MP4)",
        description="Run a method graph over an audio file as fast as possible; write a CSV "
        "(time + ARKit names) and optionally an MP4 of the rendered face.",
    )
    p.add_argument("input", type=Path, help="audio file (WAV, FLAC, OGG, … any rate, any channels)")
    p.add_argument("-o", "--output", type=Path, required=True, help="CSV file to write")
    p.add_argument(
        "--graph",
        type=Path,
        default=None,
        help=f"method graph (default: {DEFAULT_GRAPH}, the best method on CPU)",
    )
    p.add_argument("--video", type=Path, metavar="OUT.mp4", help="also render an MP4 with audio")
    p.add_argument("--size", type=int, default=512, help="video frame size in pixels (512)")
    p.add_argument(
        "--set", dest="overrides", action="append", default=[], metavar="NODE.PARAM=VALUE",
        help="override a node parameter of the graph (repeatable)",
    )  # fmt: skip
    p.add_argument("--quiet", action="store_true", help="do not print the run summary")
    add_checkpoints_argument(p)
    p.set_defaults(func=cmd_animate)


def cmd_animate(args: argparse.Namespace) -> int:
    import asyncio

    import soundfile as sf

    from audio2anim.graph.errors import GraphError, OperatorError

    from .graph_edit import offline_graph

    apply_checkpoints_argument(args)
    if not args.input.is_file():
        print(f"error: {args.input}: no such file", file=sys.stderr)
        return 2
    try:
        info = sf.info(str(args.input))
    except Exception as e:  # libsndfile's message says what is wrong with the file
        print(f"error: {args.input}: not a readable audio file ({e})", file=sys.stderr)
        return 2
    for out in (args.output, args.video):
        if out is None:
            continue
        try:  # like the README's `-o out/speech.csv` on a fresh clone: make the folder
            out.parent.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            print(
                f"error: {out}: cannot create folder {out.parent} ({e.strerror})", file=sys.stderr
            )
            return 2
    sinks: dict = {"csv": ("sink.csv", {"path": str(args.output), "layout": "simple"})}
    if args.video:
        sinks["face"] = ("render.mesh", {"size": args.size})
        sinks["video"] = (
            "sink.video",
            {"path": str(args.video)},
            [("face", "in"), ("rs", "audio")],
        )
    graph_file = args.graph or Path(DEFAULT_GRAPH)
    try:
        graph = offline_graph(graph_file, args.input, sinks, overrides=args.overrides)
    except GraphError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    seconds = info.frames / info.samplerate
    t0 = time.perf_counter()
    try:
        report = asyncio.run(_run_with_progress(graph, seconds, quiet=args.quiet))
    except OperatorError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    wall = time.perf_counter() - t0
    if not args.quiet:
        print(report.table(), file=sys.stderr)
    print(
        f"{args.output}: {seconds:.2f} s of audio animated in {wall:.2f} s "
        f"({seconds / max(wall, 1e-9):.1f}x real time) with {graph_file}"
        + (f"; video {args.video}" if args.video else ""),
        file=sys.stderr,
    )
    return 0


async def _run_with_progress(graph, seconds: float, quiet: bool):
    """Run ``graph``; a tqdm bar follows the seconds of animation the CSV sink has written."""
    import asyncio

    from tqdm import tqdm

    from audio2anim.graph.runner import Runner

    runner = Runner(graph)
    task = asyncio.ensure_future(runner.run())
    with tqdm(
        total=round(seconds, 2), unit="s", desc="animate", disable=quiet, leave=False,
        bar_format="{l_bar}{bar}| {n:.1f}/{total:.1f} s audio [{elapsed}<{remaining}]",
    ) as bar:  # fmt: skip
        while not task.done():
            await asyncio.wait({task}, timeout=0.25)
            try:
                rows = runner.operator("csv").rows
            except (KeyError, AttributeError):  # not started yet
                continue
            bar.update(min(rows / 50.0, seconds) - bar.n)
    return task.result()
