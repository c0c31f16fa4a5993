#!/usr/bin/env python3
"""How the front ends hold up when the input is quieter or louder: real speech at fixed gains.

    python bench/input_level.py [--checkpoints audio2anim/checkpoints] [--checkpoints OTHER ...]
                                [--sets tuxpaint,ktuberling,alsa] [--gains=-30,-20,-10,0,10]
                                [--models viseme-frontend,wav2vec2] [--out out/input_level.md]
                                [--write-docs]

A microphone's level depends on the device, its gain setting and the distance to the mouth;
recordings differ by tens of dB. Each set of `bench/real_speech.py` is aligned and exported as
there, then every ``--models`` checkpoint of every ``--checkpoints`` folder is evaluated
(`audio2anim.train.evaluate.evaluate`) on the clips scaled by each gain, clipped to ±1 as a
real input would be. Figures: viseme frame accuracy (viseme-frontend), phone error rate
(wav2vec2), mouth MAE end to end from the audio (predictors). Prints one Markdown table per
set, writes them to ``--out`` and a plot of figure against gain next to it (``.png``).
``--write-docs`` also writes the tables into docs/performance.md (section ``input-level``) and
the plot to docs/input-level.png.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from perf_page import PAGE, add_arguments, write_from_args  # noqa: E402
from real_speech import SETS, align_and_export, markdown_out, parse_sets, totals  # noqa: E402

from audio2anim.resources import PACKAGE_CHECKPOINTS  # noqa: E402

FIGURES = {  # model → (column label, its figure in an evaluation)
    "viseme-frontend": ("viseme acc.", lambda r: r["viseme_frame_accuracy"]),
    "wav2vec2": ("PER", lambda r: r["phone_error_rate"]),
}
PREDICTOR = ("MAE mouth", lambda r: r["from_audio"]["mae"]["mouth"])


def gain_list(text: str) -> list[float]:
    try:
        return [float(g) for g in text.split(",") if g.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected dB values such as -30,-20,0, got {text!r}"
        ) from None


def scaled(utts, gain_db: float):
    """The utterances with their audio scaled by ``gain_db`` and clipped to ±1."""
    import numpy as np

    g = 10 ** (gain_db / 20)
    return [
        dataclasses.replace(u, audio=np.clip(u.audio * g, -1, 1).astype(np.float32)) for u in utts
    ]


def plot(rows: dict, gains: list[float], path: Path) -> None:
    """One panel per (figure, set): figure against gain, a line per checkpoint."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    sets = list(dict.fromkeys(s for s, _, _ in rows))
    figures = list(dict.fromkeys(f for _, f, _ in rows))
    fig, axes = plt.subplots(
        len(figures), len(sets), figsize=(4.2 * len(sets), 3.0 * len(figures)), squeeze=False
    )
    for (name, figure, label), values in rows.items():
        ax = axes[figures.index(figure)][sets.index(name)]
        ax.plot(gains, values, marker="o", label=label)
        ax.set_title(f"{name}: {figure}")
        ax.set_xlabel("input gain (dB)")
        ax.grid(alpha=0.3)
    for row in axes:
        row[-1].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--checkpoints", action="append", help="checkpoint folder (repeatable)")
    ap.add_argument("--sets", default="tuxpaint,ktuberling,alsa",
                    help=f"comma-separated, of {', '.join(SETS)}")  # fmt: skip
    ap.add_argument("--gains", type=gain_list, default=[-30, -20, -10, 0, 10], metavar="DB,…",
                    help="input gains in dB (write --gains=-30,-20,0)")  # fmt: skip
    ap.add_argument("--models", default="viseme-frontend,wav2vec2")
    ap.add_argument("--out", default="out/input_level.md")
    add_arguments(ap)
    ap.add_argument("--threads", type=int, default=2, help="torch threads")
    args = ap.parse_args()

    ckdirs = [Path(c) for c in args.checkpoints or [PACKAGE_CHECKPOINTS]]
    models = [m.strip() for m in args.models.split(",") if m.strip()]
    try:
        sets = parse_sets(args.sets)
    except ValueError as e:
        print(e, file=sys.stderr)
        return 2
    missing = [str(d / m) for d in ckdirs for m in models if not (d / m / "config.json").is_file()]
    if missing:
        print(f"{missing[0]}: no checkpoint (config.json missing)", file=sys.stderr)
        return 2
    try:
        out = markdown_out(args.out, "out/input_level.md")
    except ValueError as e:
        print(e, file=sys.stderr)
        return 2
    os.environ.setdefault("TQDM_DISABLE", "1")
    import torch
    from tqdm import tqdm

    from audio2anim.train.data import load_data
    from audio2anim.train.evaluate import evaluate

    torch.set_num_threads(args.threads)
    out.parent.mkdir(parents=True, exist_ok=True)
    gains = args.gains
    head = " | ".join(f"{g:+g} dB" for g in gains)
    lines = ["## Input level", ""]
    rows: dict[tuple[str, str, str], list[float]] = {}  # (set, figure, checkpoint) → values
    for name in sets:
        with tempfile.TemporaryDirectory(prefix="input_level-") as tmp:
            clips, seconds = totals(align_and_export(name, Path(tmp)))
            utts = load_data(Path(tmp) / "export").utterances
            lines += [f"### {name}: {clips} clips, {seconds:.1f} s", ""]
            lines += [f"| checkpoint | figure | {head} |", "|---|---|" + "---|" * len(gains)]
            jobs = [(d, m) for d in ckdirs for m in models]
            bar = tqdm(total=len(jobs) * len(gains), desc=name, unit="eval", disable=False)
            for d, m in jobs:
                label, read = FIGURES.get(m, PREDICTOR)
                values = []
                for g in gains:
                    values.append(read(evaluate(d / m, scaled(utts, g))))
                    bar.update()
                rows[(name, label, str(d))] = values
                cells = " | ".join(f"{v:.3f}" for v in values)
                lines.append(f"| `{d}/{m}` | {label} | {cells} |")
            bar.close()
            lines.append("")
    lines.append(
        "Gain 0 is the recording as it is; positive gains clip at ±1. viseme acc.: higher is "
        "better; PER and MAE: lower is better. Definitions: `audio2anim/train/metrics.py`."
    )
    text = "\n".join(lines) + "\n"
    print(text)
    out.write_text(text)
    plot(rows, gains, out.with_suffix(".png"))
    print(f"written to {out} and {out.with_suffix('.png')}")
    if args.write_docs:
        plot(rows, gains, PAGE.parent / "input-level.png")
    write_from_args(args, "input-level", "\n".join(lines[2:]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
