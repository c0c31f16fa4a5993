#!/usr/bin/env python3
"""Wall time of the data pipeline: corpus synthesis, viseme labels and the teacher.

    python bench/data_corpus.py --out /tmp/corpus [--hours 1] [--workers 2] [--augment all]
                                [--write-docs]

Builds a fresh synthetic corpus (``audio2anim data synth``) into ``--out`` (must not exist),
then labels it (``make-viseme-ids``) and runs the teacher at 50 Hz (``teach``) into
``--out``-ds50, timing each step. Prints a Markdown table: hours of audio, voices,
utterances, wall seconds and the real-time factor (audio seconds per wall second);
``--write-docs`` also writes it into docs/performance.md (section ``data-corpus``).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from perf_page import add_arguments, write_from_args  # noqa: E402


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", required=True)
    ap.add_argument("--hours", type=float, default=1.0)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--augment", default="all", help="as for data synth; '' for none")
    ap.add_argument("--augment-prob", type=float, default=0.3)
    ap.add_argument("--seed", type=int, default=0)
    add_arguments(ap)
    args = ap.parse_args()

    from audio2anim.data import augment
    from audio2anim.data.dataset import make_viseme_ids, teach
    from audio2anim.data.synth import DEFAULT_VOICES, SynthOptions, build

    out = Path(args.out)
    ds = out.with_name(out.name + "-ds50")
    if out.exists() or ds.exists():
        sys.exit(f"{out} or {ds} exists; the bench builds from scratch")
    names = (
        augment.NAMES if args.augment == "all" else tuple(a for a in args.augment.split(",") if a)
    )
    options = SynthOptions(hours=args.hours, voices=DEFAULT_VOICES, seed=args.seed,
                           augment=names, augment_probability=args.augment_prob,
                           workers=args.workers)  # fmt: skip
    rows = []
    t = time.perf_counter()
    result = build(out, options, progress=False)
    rows.append(("synth", time.perf_counter() - t))
    t = time.perf_counter()
    make_viseme_ids(out, ds, 50.0, progress=False)
    rows.append(("make-viseme-ids", time.perf_counter() - t))
    t = time.perf_counter()
    teach(out, ds, 50.0, workers=args.workers, progress=False)
    rows.append(("teach (50 Hz)", time.perf_counter() - t))

    audio_s = result["hours"] * 3600
    lines = [
        f"{result['hours']:.3f} h, {len(result['voices'])} voices, "
        f"{result['utterances']} utterances, {result['failed']} failed; "
        f"workers={args.workers}, augment={','.join(names) or 'none'} p={args.augment_prob}",
        "",
        "| step | wall s | audio s per wall s |",
        "| --- | ---: | ---: |",
    ]
    lines += [f"| {name} | {wall:.1f} | {audio_s / wall:.0f} |" for name, wall in rows]
    print(f"corpus {out}: " + "\n".join(lines))
    write_from_args(args, "data-corpus", "\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
