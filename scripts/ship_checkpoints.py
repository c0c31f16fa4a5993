#!/usr/bin/env python3
"""Copy the trained models of a train_all.py run into the shipped checkpoints
(``audio2anim/checkpoints/``, package data) and write the run's record, TRAINING.md.

    python scripts/ship_checkpoints.py OUT [--dest audio2anim/checkpoints] [--bench bench-output.md]

Replaces each of the seven model directories with ``config.json``, ``model.safetensors`` (and
``vocab.json``) of the run's — and those of every member directory of an ensemble
(``member-N/``), records the sha256 of each weight file in its sidecar (``"files"``), which
loading verifies — front-end references in the sidecars are relative (``../wav2vec2``), so they
stay valid — checks the 30 MB budget, and writes ``DEST/TRAINING.md``: the exact commands, the
training-data summary and split, each model's size, training run and test-voice figures (from
the sidecars), and, if given, the Markdown table printed by ``bench/model_cost.py``.
"""

from __future__ import annotations

import argparse
import shutil
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from audio2anim.models.checkpoint import MODELS as ORDER  # noqa: E402 (after the path)
from audio2anim.models.checkpoint import read_sidecar  # noqa: E402
from audio2anim.models.sidecar import stamp_files  # noqa: E402
from audio2anim.train.evaluate import fmt  # noqa: E402

FILES = ("config.json", "model.safetensors", "vocab.json")
BUDGET = 30 * 10**6


def model_files(path: Path) -> list[Path]:
    """The files that make up a model directory, an ensemble's member directories included."""
    dirs = [path, *sorted(d for d in path.iterdir() if (d / "config.json").is_file())]
    return [d / f for d in dirs for f in FILES if (d / f).is_file()]


def kept_sections(readme: Path, written: set[str]) -> list[str]:
    """The lines of the ``## `` sections of an existing README that this run does not write
    (hand-written figures such as bench/real_speech.py's table; an earlier CPU-cost table
    when no --bench is given)."""
    if not readme.is_file():
        return []
    out: list[str] = []
    keep = False
    for line in readme.read_text().splitlines():
        if line.startswith("## "):
            keep = line not in written
        if keep:
            out.append(line)
    while out and not out[-1].strip():
        out.pop()
    return [*out, ""] if out else []


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("out", help="the train_all.py output directory")
    ap.add_argument(
        "--dest", default=str(ROOT / "audio2anim" / "checkpoints"),
        help="checkpoint folder to write (default: the package's shipped checkpoints)",
    )  # fmt: skip
    ap.add_argument("--bench", help="a file holding bench/model_cost.py output")
    args = ap.parse_args()
    out, dest = Path(args.out), Path(args.dest)
    if out.resolve() == dest.resolve():
        print(f"{out}: is --dest itself; ship from a training output directory", file=sys.stderr)
        return 2
    missing = [m for m in ORDER if not (out / m / "config.json").is_file()]
    if missing:
        print(f"{out}: missing trained models {missing}", file=sys.stderr)
        return 2
    total = 0
    for m in ORDER:
        shutil.rmtree(dest / m, ignore_errors=True)  # no stale weights or member dirs stay
        for f in model_files(out / m):
            target = dest / m / f.relative_to(out / m)
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(f, target)
            total += target.stat().st_size
        for d in [dest / m, *sorted(p.parent for p in (dest / m).glob("*/config.json"))]:
            if (d / "model.safetensors").is_file():
                stamp_files(d)  # the sha256 every load checks the copied weights against
    sides = {m: read_sidecar(dest / m) for m in ORDER}
    # the train_all.py calls that made the seven (a sidecar's command ends "# run by: CALL")
    runs: dict[str, list[str]] = {}
    for m, side in sides.items():
        cmd = side.get("training", {}).get("command", "")
        runs.setdefault(cmd.split("   # run by: ")[-1] if "# run by:" in cmd else cmd, []).append(m)
    exports: dict[str, list[str]] = {}
    for m, side in sides.items():
        exports.setdefault(side.get("data", {}).get("export", "?"), []).append(m)
    lines = [
        "# Shipped checkpoints",
        "",
        "Seven small models trained by `scripts/train_all.py` on the synthetic corpus (and, where "
        "listed below, real recorded speech) "
        "(`docs/models.md` explains each). Figures are on the **test voices** (held out from "
        "training and from early stopping). Regenerate this file with "
        "`python scripts/ship_checkpoints.py OUT`; sections it does not write are kept.",
        "",
        f"Total size: **{total / 1e6:.1f} MB** (budget 30 MB).",
        "",
        "## How they were trained",
        "",
        "In these calls:",
        "",
    ]
    for cmd, models in runs.items():
        t = sides[models[0]].get("training", {})
        where = f"torch {t.get('torch', '?')} on `{t.get('device', '?')}`"
        lines += [f"{', '.join(models)} ({where}):", "", "```", cmd, "```", ""]
        for m in models:  # an ensemble (`combine-frontends`): how each member was trained
            members = sides[m].get("ensemble", {}).get("members", [])
            if members:
                calls = [str(x.get("command", "")).split("   # run by: ")[-1] for x in members]
                lines += [f"The {len(members)} members of {m}:", "", "```", *calls, "```", ""]
    for export, models in exports.items():
        data = sides[models[0]].get("data", {})
        lines += [
            f"Training data of {', '.join(models)}: `{export}`, {data.get('utterances')} "
            f"utterances, {data.get('hours')} h (of a {data.get('corpus_hours')} h corpus "
            f"`{data.get('corpus')}`, manifest sha1 {str(data.get('corpus_manifest_sha1'))[:12]}).",
            "",
        ]
        # `--add-train` exports (train side only), each with the models that used it; an
        # ensemble's members' own extras are in their commands above
        extras: dict[str, tuple[dict, list[str]]] = {}
        for m in models:
            n = len(sides[m].get("ensemble", {}).get("members", []))
            user = f"{m}'s first member (of {n}: commands above)" if n else m
            for extra in sides[m].get("data", {}).get("train_only", []):
                extras.setdefault(str(extra.get("export")), (extra, []))[1].append(user)
        for export_, (extra, users) in extras.items():
            who = "" if users == models else f" of {', '.join(users)}"
            lines += [
                f"Added to the train side only (`--add-train`){who}: `{export_}`, "
                f"{extra.get('utterances')} utterances, {extra.get('hours')} h (corpus "
                f"`{extra.get('corpus')}`, manifest sha1 {str(extra.get('corpus_manifest_sha1'))[:12]}).",
                "",
            ]
        if len(models) > 1:
            lines += [f"The split of {models[0]}:", ""]
        lines += ["| split | voices | utterances | hours |", "|---|---|---|---|"]
        for name, sp in data.get("split", {}).items():
            lines.append(
                f"| {name} | {', '.join(sp['voices'])} | {sp['utterances']} | {sp['hours']} |"
            )
        lines.append("")
    lines += [
        "## Figures (test voices)",
        "",
        "| model | MB | epochs / steps / stop | viseme acc. | PER | MAE mouth | MAE eyes | closure | rounding | openness | false closures |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for m in ORDER:
        s = read_sidecar(dest / m)
        size = sum(f.stat().st_size for f in model_files(dest / m)) / 1e6
        t = s.get("training", {})
        met = s.get("metrics", {})
        row = met.get("from_audio") or met.get("oracle") or {}
        mae = row.get("mae", {})
        lines.append(
            f"| {m} | {size:.2f} | {t.get('epochs_run')} / {t.get('steps')} / {t.get('stop_reason')} "
            f"| {fmt(met.get('viseme_frame_accuracy'))} | {fmt(met.get('phone_error_rate'))} "
            f"| {fmt(mae.get('mouth'))} | {fmt(mae.get('eyes'))} "
            f"| {fmt(row.get('bilabial_closure_recall'))} | {fmt(row.get('rounding_recall'))} "
            f"| {fmt(row.get('open_vowel_openness'))} | {fmt(row.get('false_closure_rate'))} |"
        )
        if "oracle" in met and "from_audio" in met:
            o = met["oracle"]
            lines.append(
                f"| {m} (true visemes in) | | | | | {fmt(o['mae']['mouth'])} | {fmt(o['mae']['eyes'])} "
                f"| {fmt(o['bilabial_closure_recall'])} | {fmt(o['rounding_recall'])} "
                f"| {fmt(o['open_vowel_openness'])} | {fmt(o.get('false_closure_rate'))} |"
            )
    lines += [
        "",
        "Predictor rows are end to end from audio (viseme-* through `viseme-frontend`, w2v-* "
        "through `wav2vec2`); targets: viseme accuracy ≥ 0.70, closure ≥ 0.95, rounding ≥ 0.9, "
        "openness ≥ 0.97; false closures (lips closed where the teacher's are open): lower is "
        "better. Definitions: `audio2anim/train/metrics.py`.",
        "",
        "## Single-model commands",
        "",
        "Each sidecar's `training.command` holds the equivalent `audio2anim train` call:",
        "",
        "```",
    ]
    for m in ORDER:
        lines.append(
            read_sidecar(dest / m).get("training", {}).get("command", "").split("   # run by:")[0]
        )
    lines += ["```", ""]
    if args.bench:
        lines += [
            "## CPU cost",
            "",
            "`python bench/model_cost.py`:",
            "",
            Path(args.bench).read_text().strip(),
            "",
        ]
    # the run's record; README.md holds the hand-written model cards and is left as it is
    readme = dest / "TRAINING.md"
    lines += kept_sections(readme, {ln for ln in lines if ln.startswith("## ")})
    readme.write_text("\n".join(lines).rstrip("\n") + "\n")
    print(f"copied {len(ORDER)} models, {total / 1e6:.1f} MB → {dest}; wrote {dest / 'TRAINING.md'}")
    if total > BUDGET:
        print(f"warning: {total / 1e6:.1f} MB exceeds the 30 MB budget", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
