#!/usr/bin/env python3
"""Train all seven models in one process, within a wall-time budget (the GPU job).

    python3 scripts/train_all.py --data training-data --out OUT --device cuda [--minutes 6.5]

Order: viseme-frontend, wav2vec2, then the predictors (viseme-mlp/-cnn evaluated end to end
through the new viseme front end; w2v-cnn/-ar/-attention trained on the new wav2vec2's
features). ``--minutes`` is split over the training loops (`SHARES`); data loading, feature
extraction and the final evaluations come on top (about a minute on one H100 for ~40 min of
audio). Each checkpoint's sidecar records the equivalent single-model command
(``audio2anim train MODEL ...``); OUT/train_all.json records this run (timings, metrics, sizes)
and OUT/train_all.log its output.

Needs only python3 with torch, numpy, transformers, safetensors, tqdm (no pydantic, soundfile,
soxr): the training data is an ``audio2anim train export-data`` directory, decoded by numpy.
``--synthetic`` writes a small synthetic export first and trains the tiny configurations: a dry
run of the whole job on a CPU in about a minute.
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from audio2anim.models.checkpoint import MODELS as ORDER  # noqa: E402 (after the path)

# share of the training budget per model: the wav2vec2 CTC model needs by far the most steps
SHARES = {
    "viseme-frontend": 0.16,
    "wav2vec2": 0.44,
    "viseme-mlp": 0.06,
    "viseme-cnn": 0.07,
    "w2v-cnn": 0.08,
    "w2v-ar": 0.10,
    "w2v-attention": 0.09,
}


class Tee:
    def __init__(self, *streams):
        self.streams = streams

    def write(self, s):
        for st in self.streams:
            st.write(s)
            st.flush()

    def flush(self):
        for st in self.streams:
            st.flush()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", help="training-data export directory")
    ap.add_argument(
        "--add-train", action="append", metavar="DIR", default=[],
        help="an export whose utterances all train (voices of its own; repeatable)",
    )  # fmt: skip
    ap.add_argument("--out", required=True)
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--minutes", type=float, default=6.0, help="total training-loop budget")
    ap.add_argument("--only", help="comma-separated subset of models (in the fixed order)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--split-seed", type=int, help="the split by voice (default: --seed)")
    ap.add_argument("--size", default="full", choices=("full", "tiny"))
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--steps-per-epoch", type=int, default=100)
    ap.add_argument("--patience", type=int, default=6, help="epochs without improvement")
    ap.add_argument(
        "--epochs", type=int, default=200, help="upper bound; budget/early stop end runs"
    )
    ap.add_argument(
        "--w2v-feature",
        help="w2v predictors' input: posteriors (default), hidden-N or posteriors+hidden-N",
    )
    ap.add_argument("--w2v-augment", action="store_true",
                    help="w2v predictors: learn from features of augmented audio")  # fmt: skip
    ap.add_argument(
        "--frontends-from",
        help="copy trained viseme-frontend/ and wav2vec2/ from this directory "
        "(e.g. audio2anim/checkpoints) into --out first, to retrain only predictors with --only",
    )
    ap.add_argument("--lipsync-frontend", action="store_true",
                    help="viseme-frontend: lip-sync-weighted frame loss (as the predictors')")  # fmt: skip
    ap.add_argument("--voice-weight", action="append", metavar="VOICE=W", default=[],
                    help="every model: crop weight of a voice or engine (repeatable)")  # fmt: skip
    ap.add_argument("--vtlp", type=float, default=0.0,
                    help="viseme-frontend: vocal tract length perturbation within 1 ± this")  # fmt: skip
    ap.add_argument("--gain-db", default="-12:6", metavar="LO:HI",
                    help="front ends: random gain range of the training audio in dB "
                    "(write --gain-db=-24:12)")  # fmt: skip
    ap.add_argument("--eq-db", type=float, default=6.0,
                    help="front ends: random smooth EQ within ± this many dB")  # fmt: skip
    ap.add_argument("--reverb", type=float, default=0.0,
                    help="front ends: fraction of training crops put in a random room")  # fmt: skip
    ap.add_argument("--spec-augment", action="store_true",
                    help="viseme-frontend: SpecAugment masks on the log-mel input")  # fmt: skip
    ap.add_argument("--distill-from", action="append", metavar="DIR", default=[],
                    help="viseme-frontend: also learn these front ends' mean posteriors")  # fmt: skip
    ap.add_argument("--hparam", action="append", metavar="MODEL:KEY=VALUE", default=[],
                    help="one model's hyper-parameter, e.g. viseme-frontend:hidden=256 "
                    "(repeatable)")  # fmt: skip
    ap.add_argument("--synthetic", action="store_true", help="dry run on synthetic data")
    args = ap.parse_args()
    from audio2anim.train.cli import hparam_overrides

    hparams: dict[str, list[str]] = {}  # model → its KEY=VALUE overrides, checked up front
    for item in args.hparam:
        model, sep, setting = item.partition(":")
        if not sep or model not in ORDER:
            ap.error(
                f"--hparam {item!r}: expected MODEL:KEY=VALUE with MODEL in {', '.join(ORDER)}"
            )
        try:
            hparam_overrides([setting], model, args.size)
        except ValueError as e:
            ap.error(str(e))
        hparams.setdefault(model, []).append(setting)

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    log = open(out / "train_all.log", "a")  # noqa: SIM115 (kept open for the whole run)
    sys.stdout = Tee(sys.__stdout__, log)
    sys.stderr = Tee(sys.__stderr__, log)
    t0 = time.monotonic()

    import torch

    from audio2anim.train.cli import parse_train_args, train_options
    from audio2anim.train.data import load_data
    from audio2anim.train.features import FeatureCache
    from audio2anim.train.recipes import train

    if args.synthetic:
        from audio2anim.train.synthetic import write_synthetic_export

        args.data = str(out / "synthetic-data")
        write_synthetic_export(args.data, voices=4, utterances_per_voice=6, seconds=3.0)
    if not args.data:
        ap.error("--data is required (or --synthetic)")
    if args.device.startswith("cuda"):
        if not torch.cuda.is_available():
            print("train_all: --device cuda but torch sees no GPU", file=sys.stderr)
            return 2
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
        print(f"device: {torch.cuda.get_device_name(0)}")
    print(f"torch {torch.__version__}, python {sys.version.split()[0]}")
    data = load_data(args.data, args.add_train)
    s = data.meta.get("summary", {})
    print(
        f"data: {len(data.utterances)} utterances, {s.get('hours', 0):.3f} h, "
        f"{len(data.voices)} voices; loaded in {time.monotonic() - t0:.1f} s"
    )
    split_seed = args.seed if args.split_seed is None else args.split_seed
    print(json.dumps(data.split_summary(split_seed)))
    if args.frontends_from:
        import shutil

        for name in ("viseme-frontend", "wav2vec2"):
            src = Path(args.frontends_from) / name
            if not (src / "config.json").is_file():
                ap.error(f"--frontends-from: {src} has no config.json")
            shutil.copytree(src, out / name, dirs_exist_ok=True)  # ensembles hold subdirs
    models = ORDER if not args.only else [m for m in ORDER if m in args.only.split(",")]
    summary: dict = {
        "command": "python3 scripts/train_all.py " + " ".join(shlex.quote(a) for a in sys.argv[1:]),
        "torch": torch.__version__,
        "device": args.device,
        "models": {},
    }
    previous = out / "train_all.json"
    if previous.is_file():  # a partial re-run (--only) keeps the other models' records
        old = json.loads(previous.read_text())
        summary["models"] = {m: v for m, v in old.get("models", {}).items() if m not in models}
        summary["earlier_commands"] = old.get("earlier_commands", []) + [old.get("command")]
    features = FeatureCache()  # the w2v predictors share one wav2vec2 feature extraction
    for name in models:
        minutes = round(args.minutes * SHARES[name], 3)
        frontend = None
        if name.startswith("w2v-"):
            frontend = str(out / "wav2vec2")
        elif name.startswith("viseme-") and name != "viseme-frontend":
            frontend = str(out / "viseme-frontend")
            if not (Path(frontend) / "config.json").is_file():
                frontend = None
        single = [
            "audio2anim", "train", name, "--data", args.data, "--out", str(out / name),
            "--device", args.device, "--epochs", str(args.epochs), "--seed", str(args.seed),
            "--batch", str(args.batch), "--steps-per-epoch", str(args.steps_per_epoch),
            "--max-minutes", str(minutes), "--size", args.size, "--patience", str(args.patience),
        ]  # fmt: skip
        if args.split_seed is not None:
            single += ["--split-seed", str(args.split_seed)]
        for extra in args.add_train:
            single += ["--add-train", extra]
        for item in args.voice_weight:
            single += ["--voice-weight", item]
        if frontend:
            single += ["--frontend", frontend]
        if args.w2v_feature and name.startswith("w2v-"):
            single += ["--w2v-feature", args.w2v_feature]
        if args.w2v_augment and name.startswith("w2v-"):
            single += ["--w2v-augment"]
        if name in ("viseme-frontend", "wav2vec2"):
            single += [f"--gain-db={args.gain_db}", "--eq-db", str(args.eq_db)]
            single += ["--reverb", str(args.reverb)] if args.reverb else []
        if name == "viseme-frontend":
            single += ["--lipsync-frontend"] if args.lipsync_frontend else []
            single += ["--vtlp", str(args.vtlp)] if args.vtlp else []
            single += ["--spec-augment"] if args.spec_augment else []
        for teacher in args.distill_from if name == "viseme-frontend" else ():
            single += ["--distill-from", teacher]
        for setting in hparams.get(name, ()):
            single += ["--hparam", setting]
        # the options come from the single-model command itself: one mapping, in train/cli.py
        command = " ".join(shlex.quote(a) for a in single) + f"   # run by: {summary['command']}"
        opts = train_options(parse_train_args(single[1:]), command)
        t = time.monotonic()
        print(f"=== {name}: budget {minutes} min, elapsed {time.monotonic() - t0:.0f} s")
        path = train(data, opts, features=features)
        side = json.loads((path / "config.json").read_text())
        meta = side.get("audio2anim", side)
        size = sum(f.stat().st_size for f in path.iterdir() if f.is_file())
        summary["models"][name] = {
            "seconds": round(time.monotonic() - t, 1),
            "bytes": size,
            "training": {
                k: meta["training"][k]
                for k in ("epochs_run", "steps", "stop_reason", "best_val_score", "seconds")
            },
            "metrics": {
                k: v for k, v in meta.get("metrics", {}).items() if k != "confusion_matrix"
            },
        }
        print(f"=== {name}: done in {time.monotonic() - t:.0f} s, {size / 2**20:.2f} MiB")
        print(json.dumps(summary["models"][name]["metrics"]))
        (out / "train_all.json").write_text(json.dumps(summary, indent=1) + "\n")
    summary["total_seconds"] = round(time.monotonic() - t0, 1)
    summary["total_mib"] = round(sum(m["bytes"] for m in summary["models"].values()) / 2**20, 2)
    (out / "train_all.json").write_text(json.dumps(summary, indent=1) + "\n")
    print(f"all done in {summary['total_seconds']} s, checkpoints {summary['total_mib']} MiB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
