"""Face commands: ``audio2anim render`` (parameters CSV -> MP4) and ``audio2anim face build``.

audio2anim render take.csv --audio take.wav -o take.mp4 [--size 512] [--glb my_avatar.glb]
audio2anim face build [-o audio2anim/face/assets/face.glb]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def add_commands(subparsers) -> None:
    r = subparsers.add_parser(
        "render",
        help="render a parameter CSV (Live Link Face or ours) to an MP4, with audio",
        description="Render ARKit blendshape tracks to an H.264/AAC MP4 with the face rig.",
    )
    r.add_argument("params", type=Path, help="CSV: Live Link Face take, or 'time' + ARKit names")
    r.add_argument("--audio", type=Path, help="audio to mux (WAV/FLAC/OGG; its rate and channels)")
    r.add_argument("-o", "--output", type=Path, required=True, help="output .mp4")
    r.add_argument("--size", type=int, default=512, help="frame side in pixels (even)")
    r.add_argument("--fps", type=float, help="frame rate (default: from the CSV; Live Link 60)")
    r.add_argument("--glb", type=Path, help="rig with ARKit-named morph targets (default: ours)")
    r.add_argument("--background", default="#292e38", help="background colour #rrggbb")
    r.add_argument("--msaa", type=int, default=4, help="multisamples per pixel (1 = off)")
    r.set_defaults(func=render_command, stop_signals=True)

    face = subparsers.add_parser("face", help="face rig tools")
    fsub = face.add_subparsers(dest="face_command", metavar="COMMAND", required=True)
    b = fsub.add_parser("build", help="regenerate the default face rig GLB")
    b.add_argument(
        "-o", "--output", type=Path, default=Path("face.glb"),
        help="output .glb (default face.glb in the working directory)",
    )  # fmt: skip
    b.set_defaults(func=build_command)


def render_command(args: argparse.Namespace) -> int:
    """Render. ``args.stops`` (set by the entry point: `audio2anim.graph.stopping.StopSignals`)
    tells of SIGINT/SIGTERM: the frames rendered so far are finalized into the MP4 (exit
    130/143); a second signal aborts and leaves no file."""
    return _render(args, getattr(args, "stops", None))


def _render(args: argparse.Namespace, stops) -> int:
    from tqdm import tqdm

    from audio2anim.audio import read_audio_channels

    from .clip import render_clip
    from .params_csv import read_params_csv
    from .renderer import parse_color
    from .rig import DEFAULT_GLB, load_glb
    from .video import VideoError, check_size, check_writable

    try:
        check_size(args.size)
        inputs = [p for p in (args.params, args.audio, args.glb) if p is not None]
        if any(args.output.resolve() == p.resolve() for p in inputs):
            raise ValueError(f"{args.output}: the output would overwrite an input; refused")
        check_writable(args.output)
        values, names, fps = read_params_csv(args.params, fps=args.fps)
        background = parse_color(args.background)
        audio = rate = None
        if args.audio is not None:
            audio, rate = read_audio_channels(args.audio)
        rig = load_glb(args.glb or DEFAULT_GLB)
    except (ValueError, OSError) as e:
        print(f"audio2anim render: {e}", file=sys.stderr)
        return 2
    known = [n for n in names if n in rig.target_names]
    if not known:
        print(f"audio2anim render: {args.params}: no column matches a morph target of the rig",
              file=sys.stderr)  # fmt: skip
        return 2
    try:
        with tqdm(total=len(values), desc="render", unit="frame") as bar:
            writer = render_clip(
                args.output, values, names, fps, audio=audio, audio_rate=rate, size=args.size,
                rig=rig, background=background, msaa=args.msaa,
                stopped=lambda: stops is not None and bool(stops.received), progress=bar.update,
            )  # fmt: skip
    except VideoError as e:
        print(f"audio2anim render: {e}", file=sys.stderr)
        return 1
    if not writer.frames_written:
        if stops is not None and stops.received:  # a clean stop, not a failure: exit 130/143
            print(f"{stops.first}: stopped before the first frame; {args.output} not written",
                  file=sys.stderr)  # fmt: skip
            return 0
        print(f"audio2anim render: {args.output}: no frame to render; not written",
              file=sys.stderr)  # fmt: skip
        return 1
    done = writer.frames_written
    dur = done / fps
    print(f"wrote {args.output}: {done} frames at {fps:g} fps ({dur:.2f} s)"
          + (f", audio {writer.samples_written / writer.out_rate:.2f} s at {writer.out_rate} Hz, "
             f"{writer.channels} channel(s)" if audio is not None else "")
          + (f"; stopped by {stops.first}" if stops is not None and stops.received else ""))  # fmt: skip
    return 0


def build_command(args: argparse.Namespace) -> int:
    from .build import build_rig
    from .rig import save_glb

    out = args.output or Path("face.glb")
    rig = build_rig()
    save_glb(rig, out)
    print(
        f"wrote {out}: {rig.n_vertices} vertices, {len(rig.triangles)} triangles, "
        f"{len(rig.target_names)} blendshapes, {Path(out).stat().st_size / 1e6:.1f} MB"
    )
    return 0


if __name__ == "__main__":  # usable before the package CLI wires this module
    parser = argparse.ArgumentParser(prog="audio2anim")
    add_commands(parser.add_subparsers(dest="command", required=True))
    ns = parser.parse_args()
    sys.exit(ns.func(ns))
