"""``audio2anim data …``: corpus building, labels, the teacher and the dataset steps.

Subcommands: synth, align, import-livelink, teach, make-viseme-ids, append, softmax,
normalize, split, info. See docs/data.md.
"""

from __future__ import annotations

import argparse
import sys


def _fail(message: str) -> int:
    print(f"audio2anim data: error: {message}", file=sys.stderr)
    return 2


def _csv(text: str) -> tuple[str, ...]:
    return tuple(x.strip() for x in text.split(",") if x.strip())


# ---------------------------------------------------------------------------- synth


def cmd_synth(args) -> int:
    import time

    from . import augment as aug
    from .sentences import read_text_file
    from .synth import DEFAULT_VOICES, SynthOptions, build, check_voices

    voices = DEFAULT_VOICES if args.voices in ("all", "") else _csv(args.voices)
    augment = aug.NAMES if args.augment == "all" else _csv(args.augment)
    sentences = tuple(read_text_file(args.text)) if args.text else ()
    options = SynthOptions(
        hours=args.hours,
        voices=voices,
        seed=args.seed,
        sentences=sentences,
        augment=augment,
        augment_probability=args.augment_prob,
        workers=args.workers,
    )
    check_voices(voices)
    start = time.monotonic()
    result = build(args.out, options, progress=not args.quiet)
    wall = time.monotonic() - start
    print(
        f"{args.out}: {result['utterances']} utterances, {result['hours']:.3f} h, "
        f"{len(result['voices'])} voices; added {result['added']} "
        f"({result['failed']} failed) in {wall:.1f} s with {args.workers} workers"
    )
    return 0


# ---------------------------------------------------------------------------- wiring


def add_commands(subparsers) -> None:
    data = subparsers.add_parser("data", help="build and prepare training data")
    sub = data.add_subparsers(dest="data_command", metavar="STEP", required=True)

    p = sub.add_parser("synth", help="synthetic speech corpus with exact phone timings")
    p.add_argument("--out", required=True, help="corpus folder (created or appended to)")
    p.add_argument("--hours", type=float, default=1.0, help="total audio to reach (default 1)")
    p.add_argument(
        "--voices",
        default="all",
        help="comma-separated voice ids (espeak:en-us+f3, festival:kal|ked|slt) or 'all'",
    )
    p.add_argument("--text", help="text file, one sentence per line (default: generated)")
    p.add_argument(
        "--augment",
        default="",
        help="comma list of speed,pitch,reverb,phone,noise,gain, or 'all' (default none)",
    )
    p.add_argument("--augment-prob", type=float, default=0.3, help="per augmentation (0.3)")
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_synth)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="audio2anim")
    add_commands(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except (ValueError, FileNotFoundError, RuntimeError) as exc:
        return _fail(str(exc))


if __name__ == "__main__":
    sys.exit(main())
