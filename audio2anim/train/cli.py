"""``audio2anim train`` / ``audio2anim eval`` / ``audio2anim export-onnx``.

    audio2anim train export-data --data CORPUS --out DIR [--max-mb 40]
    audio2anim train MODEL --data DATA [--device cpu|cuda] [--out DIR] [--epochs N] [--seed S]
                           [--frontend CKPT] [--max-minutes M] ...
    audio2anim train whisper-viseme-head --data DATA [--add-train DIR] [--epochs 8]
                           [--viseme-bias PP=1.0] [--feature-cache DIR] [--whisper DIR] ...
    audio2anim eval CHECKPOINT --data DATA [--split test] [--out DIR] [--frontend CKPT]
    audio2anim combine-frontends CHECKPOINT CHECKPOINT... --out DIR [--data DATA] [--float16]
    audio2anim export-onnx CHECKPOINT [--out FILE]

MODEL is one of viseme-frontend, wav2vec2, viseme-mlp, viseme-cnn, w2v-cnn, w2v-ar,
w2v-attention, or whisper-viseme-head (the viseme head on the frozen Whisper encoder,
`audio2anim.train.whisper_head`; CPU is enough). DATA is a training-data export (``export-data``), a corpus directory (exported
into CORPUS/cache/training-data on first use) or a dataset directory (``audio2anim data``
steps: its corpus, its teach targets and its ``data split``). Outputs default to the working
directory: ``runs/MODEL``, ``eval-NAME/``, ``NAME.onnx``; nothing is written into the package. The w2v-* predictors need ``--frontend`` (a
trained wav2vec2 checkpoint); viseme-* predictors take an optional ``--frontend`` (a
``viseme-frontend``, or a ``whisper-viseme-head``: a live one is streamed by its live recipe)
whose posteriors they train on and that the end-to-end part of their evaluation runs.

This module imports neither pydantic nor soundfile, so scripts/train_all.py (which takes
`parse_train_args` and `train_options` from it) runs on a bare training machine (torch, numpy,
transformers, safetensors, tqdm).
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
from pathlib import Path

from audio2anim.models.checkpoint import MODELS

WHISPER_HEAD = "whisper-viseme-head"  # trained by audio2anim.train.whisper_head
# its hyper-parameters that --hparam may set, with their defaults
WHISPER_HEAD_HPARAMS = {"layers": [-1, 3], "context": 1, "hidden": 256}


def add_commands(subparsers) -> None:
    p = subparsers.add_parser(
        "train",
        help="train a model (or export-data: write compact training data)",
        description="Train one of the seven models or the Whisper viseme head, or export a "
        "corpus as training data.",
    )
    p.add_argument("model", choices=(*MODELS, WHISPER_HEAD, "export-data"))
    p.add_argument(
        "--data", required=True, help="training-data export, corpus or dataset directory"
    )
    p.add_argument(
        "--add-train",
        action="append",
        metavar="DIR",
        help="another export or corpus whose utterances all train (own voices; repeatable)",
    )
    p.add_argument(
        "--out",
        help="output directory (default runs/MODEL in the working directory; never inside the "
        "installed package)",
    )
    p.add_argument("--device", default="cpu", help="cpu, cuda, cuda:1, ...")
    p.add_argument("--epochs", type=int, help="default 40 (whisper-viseme-head: 8 full passes)")
    p.add_argument("--seed", type=int, default=0, help="initialization, batches, augmentation")
    p.add_argument(
        "--split-seed", type=int, help="the split by voice (default: --seed), to vary one alone"
    )
    p.add_argument("--steps-per-epoch", type=int, default=100)
    p.add_argument("--batch", type=int, help="default 32 crops (whisper-viseme-head: 512 frames)")
    p.add_argument("--crop-s", type=float, default=4.0, help="seconds per training crop")
    p.add_argument("--lr", type=float)
    p.add_argument("--patience", type=int, default=6, help="epochs without improvement")
    p.add_argument("--max-minutes", type=float, help="wall-time budget of the training loop")
    p.add_argument("--frontend", help="wav2vec2 checkpoint (w2v-*) or viseme front end (viseme-*: "
                   "viseme-frontend or whisper-viseme-head)")  # fmt: skip
    p.add_argument(
        "--lookahead",
        type=int,
        help="future frames the model may see (viseme-frontend: 10 ms frames, ≤ 6; predictors: "
        "20 ms frames); default: the size preset's",
    )
    p.add_argument(
        "--w2v-feature",
        help="w2v-*: 'posteriors' (CTC softmax), 'hidden-N' (encoder layer N) or "
        "'posteriors+hidden-N' (both)",
    )
    p.add_argument(
        "--w2v-augment",
        action="store_true",
        help="w2v-*: learn from features of augmented audio (gain, EQ, noise)",
    )
    p.add_argument(
        "--viseme-input",
        default="auto",
        choices=("auto", "onehot", "frontend", "mixed"),
        help="viseme-*: train on true visemes, on --frontend posteriors, or half each "
        "(auto: mixed with --frontend, else onehot)",
    )
    p.add_argument(
        "--speed-perturb",
        type=float,
        default=0.1,
        help="front ends: random speed factor within 1 ± this per batch (0: off)",
    )
    p.add_argument(
        "--gain-db",
        type=float_range,
        default=(-12.0, 6.0),
        metavar="LO:HI",
        help="front ends: random gain of the training audio, uniform in LO…HI dB (default -12:6; "
        "write --gain-db=-24:12)",
    )
    p.add_argument(
        "--eq-db",
        type=float,
        default=6.0,
        help="front ends: random smooth EQ of the training audio, within ± this many dB",
    )
    p.add_argument(
        "--reverb",
        type=float,
        default=0.0,
        help="front ends: put this fraction of the training crops in a random room (0: none)",
    )
    p.add_argument(
        "--hparam",
        action="append",
        metavar="KEY=VALUE",
        help="override one hyper-parameter of the size preset, e.g. channels=256 (repeatable)",
    )
    p.add_argument(
        "--voice-weight",
        action="append",
        metavar="VOICE=W",
        help="draw training crops from a voice (festival:ked) or engine (espeak) W times as often "
        "as its share of the audio (repeatable; 0 leaves it out)",
    )
    p.add_argument(
        "--vtlp",
        type=float,
        default=0.0,
        help="viseme-frontend: vocal tract length perturbation, a random spectral stretch "
        "within 1 ± this per crop (0: off)",
    )
    p.add_argument(
        "--spec-augment",
        action="store_true",
        help="viseme-frontend: mask random mel bands and frame spans of the input (SpecAugment)",
    )
    p.add_argument(
        "--posterior-temperature",
        type=float_range,
        default=(1.0, 1.0),
        metavar="LO:HI",
        help="viseme-mlp/-cnn: soften the front end's training posteriors by a random "
        "temperature in LO…HI per crop, as unsure as on unheard voices (default 1:1, off)",
    )
    p.add_argument(
        "--lipsync-frontend",
        action="store_true",
        help="viseme-frontend: weight P/B/M, rounded and open-vowel frames as the predictors do",
    )
    p.add_argument(
        "--distill-from",
        action="append",
        metavar="DIR",
        help="viseme-frontend: also learn these front ends' mean posteriors (repeatable)",
    )
    p.add_argument("--size", default="full", choices=("full", "tiny"))
    p.add_argument(
        "--viseme-bias",
        action="append",
        metavar="VISEME=LOGIT",
        help="whisper-viseme-head: log-odds offset stored in the checkpoint, e.g. PP=1.0 "
        "(repeatable)",
    )
    p.add_argument(
        "--feature-cache",
        metavar="DIR",
        help="whisper-viseme-head: keep the encoder states of the data here (reused while the "
        "data, layers and encoder are the same)",
    )
    p.add_argument(
        "--whisper",
        metavar="DIR",
        help="whisper-viseme-head: Whisper model folder (default: the packaged tiny.en)",
    )
    p.add_argument("--max-mb", type=float, default=40.0, help="export-data: size cap in MiB")
    p.set_defaults(func=cmd_train)

    e = subparsers.add_parser("eval", help="evaluate a checkpoint: report.md + plot.png")
    e.add_argument("checkpoint")
    e.add_argument(
        "--data", required=True, help="training-data export, corpus or dataset directory"
    )
    e.add_argument("--split", default="test", choices=("train", "val", "test", "all"))
    e.add_argument("--out", help="report directory (default eval-NAME in the working directory)")
    e.add_argument("--frontend", help="front end to evaluate a predictor end to end")
    e.add_argument("--device", default="cpu")
    e.add_argument(
        "--seed", type=int, help="seed of the split by voice (default: the checkpoint's own)"
    )
    e.add_argument("--max-utts", type=int)
    e.set_defaults(func=cmd_eval)

    c = subparsers.add_parser(
        "combine-frontends",
        help="average trained front ends (viseme or wav2vec2) into one ensemble checkpoint",
        description="One front end whose posteriors are the mean of the given ones'.",
    )
    c.add_argument(
        "members",
        nargs="+",
        metavar="CHECKPOINT",
        help="viseme-frontend or wav2vec2 dirs (≥ 2 front ends); a viseme ensemble counts as "
        "its members, DIR#i,j,… as those members (from 0)",
    )
    c.add_argument("--out", required=True, help="the ensemble's checkpoint directory")
    c.add_argument("--data", help="export whose test voices the ensemble is evaluated on")
    c.add_argument(
        "--float16",
        action="store_true",
        help="wav2vec2: store the members' weights in half precision (half the size; they "
        "still run in float32)",
    )
    c.add_argument(
        "--viseme-bias",
        action="append",
        metavar="VISEME=LOGIT",
        help="viseme-frontend: add LOGIT to that viseme's log-odds, e.g. PP=1.0 (P/B/M "
        "recognized more eagerly, so lips close more reliably; repeatable)",
    )
    c.add_argument(
        "--phone-bias",
        action="append",
        metavar="PHONE=LOGIT",
        help="wav2vec2: add LOGIT to that phone's log-odds in the posteriors features, e.g. "
        "P=2 (repeatable)",
    )
    c.set_defaults(func=cmd_combine)

    x = subparsers.add_parser("export-onnx", help="export a predictor / viseme front end to ONNX")
    x.add_argument("checkpoint")
    x.add_argument("--out", help="ONNX file (default NAME.onnx in the working directory)")
    x.set_defaults(func=cmd_export_onnx)


def _command_line() -> str:
    return "audio2anim " + " ".join(shlex.quote(a) for a in sys.argv[1:])


def parse_train_args(argv: list[str]):
    """``["train", MODEL, …]`` → the parsed arguments of ``audio2anim train`` (for scripts that
    run several trainings in one process, such as scripts/train_all.py)."""
    import argparse

    parser = argparse.ArgumentParser(prog="audio2anim")
    add_commands(parser.add_subparsers(dest="command", required=True))
    return parser.parse_args(argv)


def keyed_floats(
    items, option: str = "--voice-weight", form: str = "VOICE=WEIGHT", example: str = "espeak=0.5"
) -> dict:
    """["espeak=0.5", …] → {"espeak": 0.5, …} (``--voice-weight``, ``--viseme-bias``,
    ``--phone-bias``); ValueError naming the option and the malformed item."""
    out = {}
    for item in items:
        key, sep, w = item.rpartition("=")
        try:
            out[key] = float(w)
        except ValueError:
            sep = ""
        if not sep or not key:
            raise ValueError(f"{option} {item!r}: expected {form}, e.g. {example}")
    return out


def float_range(text: str) -> tuple[float, float]:
    """``"LO:HI"`` → (LO, HI), for ``--gain-db`` and ``--posterior-temperature``."""
    try:
        lo, hi = (float(v) for v in text.split(":"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected LO:HI, e.g. -24:12, got {text!r}") from None
    return lo, hi


def hparam_overrides(items, model: str, size: str) -> dict:
    """["channels=256", …] → {"channels": 256, …} (JSON values: numbers, true/false, lists);
    ValueError naming a malformed item or a key the model's preset does not have."""
    from .config import HPARAMS

    known = HPARAMS[size][model]
    out = {}
    for item in items:
        key, sep, text = item.partition("=")
        if not sep or not key:
            raise ValueError(f"--hparam {item!r}: expected KEY=VALUE, e.g. channels=256")
        if key not in known:
            raise ValueError(
                f"--hparam {key}: not a hyper-parameter of {model} (known: {', '.join(known)})"
            )
        try:
            out[key] = json.loads(text)
        except ValueError:
            out[key] = text
    return out


def default_train_out(model: str) -> str:
    """Where ``train MODEL`` writes without ``--out``: ``runs/MODEL`` in the working directory."""
    return str(Path("runs") / model)


def inside_package(path: str | Path) -> bool:
    """Whether ``path`` lies in the installed package (its code, graphs and shipped checkpoints),
    where no command writes by default and `train` never writes."""
    from audio2anim.resources import PACKAGE_DIR

    return Path(path).resolve().is_relative_to(PACKAGE_DIR.resolve())


def _refuse_package_out(what: str, out: str | Path) -> str | None:
    if inside_package(out):
        return (
            f"{what}: --out {out} is inside the installed package ({out} would replace shipped "
            "files); choose a directory of your own"
        )
    return None


def _checkpoint_arg(path: str) -> Path:
    """A checkpoint argument as the graphs resolve it (working directory, then the checkpoint
    folders, then the shipped ones), or the path as given when none holds it."""
    from audio2anim.resources import find_checkpoint

    return find_checkpoint(path) or Path(path)


def train_options(args, command: str):
    """The `TrainOptions` of parsed ``audio2anim train`` arguments."""
    from .config import TrainOptions

    return TrainOptions(
        model=args.model,
        out=args.out or default_train_out(args.model),
        device=args.device,
        epochs=40 if args.epochs is None else args.epochs,
        seed=args.seed,
        split_seed=args.split_seed,
        steps_per_epoch=args.steps_per_epoch,
        batch=32 if args.batch is None else args.batch,
        crop_s=args.crop_s,
        lr=args.lr,
        patience=args.patience,
        max_minutes=args.max_minutes,
        frontend=args.frontend,
        w2v_feature=args.w2v_feature,
        w2v_augment=args.w2v_augment,
        viseme_input=args.viseme_input,
        speed_perturb=args.speed_perturb,
        voice_weights=keyed_floats(args.voice_weight or ()),
        vtlp=args.vtlp,
        gain_db=args.gain_db,
        eq_db=args.eq_db,
        reverb=args.reverb,
        spec_augment=args.spec_augment,
        lipsync_frontend=args.lipsync_frontend,
        posterior_temperature=args.posterior_temperature,
        distill_from=tuple(args.distill_from or ()),
        size=args.size,
        hparams={
            **hparam_overrides(args.hparam or (), args.model, args.size),
            **(
                {}
                if args.lookahead is None or args.model == "wav2vec2"
                else {"lookahead": args.lookahead}
            ),
        },
        command=command,
    )


def cmd_train(args) -> int:
    if args.model == "export-data":
        from .data import export_data

        if not args.out:
            print("train export-data: --out is required", file=sys.stderr)
            return 2
        refused = _refuse_package_out("train export-data", args.out)
        if refused:
            print(refused, file=sys.stderr)
            return 2
        try:
            meta = export_data(args.data, args.out, max_mb=args.max_mb, seed=args.seed)
        except (ValueError, FileNotFoundError) as e:
            print(f"train export-data: {e}", file=sys.stderr)
            return 2
        s = meta["summary"]
        print(
            f"exported {s['utterances']} utterances, {s['hours']:.3f} h of {s['corpus_hours']:.3f} h, "
            f"{s['bytes'] / 2**20:.1f} MiB → {args.out}"
        )
        return 0
    from .data import load_data

    if args.model == WHISPER_HEAD:
        return cmd_train_whisper_head(args)
    from .recipes import train

    refused = _refuse_package_out(f"train {args.model}", args.out or default_train_out(args.model))
    if refused:
        print(refused, file=sys.stderr)
        return 2
    try:
        opts = train_options(args, getattr(args, "command_line", None) or _command_line())
        out = train(load_data(args.data, args.add_train or ()), opts)
    except (ValueError, FileNotFoundError) as e:
        print(f"train {args.model}: {e}", file=sys.stderr)
        return 2
    print(f"saved {out}")
    return 0


def cmd_train_whisper_head(args) -> int:
    """``train whisper-viseme-head``: `audio2anim.train.whisper_head.train_whisper_head`."""
    from .data import load_data

    out = args.out or default_train_out(WHISPER_HEAD)
    refused = _refuse_package_out(f"train {WHISPER_HEAD}", out)
    if refused:
        print(refused, file=sys.stderr)
        return 2
    try:
        hp = dict(WHISPER_HEAD_HPARAMS)
        for item in args.hparam or ():
            key, sep, text = item.partition("=")
            if not sep or key not in hp:
                raise ValueError(
                    f"--hparam {item!r}: expected KEY=VALUE with KEY one of {', '.join(hp)}"
                )
            hp[key] = json.loads(text)
        bias = keyed_floats(args.viseme_bias or (), "--viseme-bias", "VISEME=LOGIT", "PP=1.0")
        from audio2anim.models.class_bias import check_bias_names
        from audio2anim.visemes import VISEMES

        check_bias_names(bias, VISEMES, "--viseme-bias", "viseme")
        from .whisper_head import train_whisper_head

        path = train_whisper_head(
            load_data(args.data, args.add_train or ()),
            out,
            epochs=8 if args.epochs is None else args.epochs,
            seed=args.seed,
            split_seed=args.split_seed,
            lr=args.lr or 1e-3,
            batch=512 if args.batch is None else args.batch,
            viseme_bias=bias,
            encoder=args.whisper,
            cache=args.feature_cache,
            command=getattr(args, "command_line", None) or _command_line(),
            **hp,
        )
    except (ValueError, FileNotFoundError) as e:
        print(f"train {WHISPER_HEAD}: {e}", file=sys.stderr)
        return 2
    print(f"saved {path}")
    return 0


def cmd_eval(args) -> int:
    from .evaluate import run_eval

    checkpoint = _checkpoint_arg(args.checkpoint)
    out = args.out or f"eval-{checkpoint.resolve().name}"
    refused = _refuse_package_out("eval", out)
    if refused:
        print(refused, file=sys.stderr)
        return 2
    try:
        result, report = run_eval(
            checkpoint,
            args.data,
            out=out,
            split=args.split,
            device=args.device,
            frontend=args.frontend,
            seed=args.seed,
            max_utts=args.max_utts,
        )
    except (ValueError, FileNotFoundError) as e:
        print(f"eval {args.checkpoint}: {e}", file=sys.stderr)
        return 2
    print(report.read_text())
    print(f"report: {report}")
    return 0


def cmd_combine(args) -> int:
    from audio2anim.models.checkpoint import read_sidecar

    from .combine import averaging_warning, combine_checkpoints

    try:
        bias = keyed_floats(args.viseme_bias or (), "--viseme-bias", "VISEME=LOGIT", "PP=1.0")
        phones = keyed_floats(args.phone_bias or (), "--phone-bias", "PHONE=LOGIT", "P=2")
        out = combine_checkpoints(
            args.members,
            args.out,
            args.data,
            _command_line(),
            float16=args.float16,
            viseme_bias=bias,
            phone_bias=phones,
        )
    except (ValueError, FileNotFoundError) as e:
        print(f"combine-frontends: {e}", file=sys.stderr)
        return 2
    print(f"saved {out}")
    warning = averaging_warning(read_sidecar(out))
    if warning:
        print(f"combine-frontends: warning: {warning}", file=sys.stderr)
    return 0


def cmd_export_onnx(args) -> int:
    from audio2anim.models.onnx_export import export_onnx

    checkpoint = _checkpoint_arg(args.checkpoint)
    out = args.out or f"{checkpoint.resolve().name}.onnx"
    refused = _refuse_package_out("export-onnx", out)
    if refused:
        print(refused, file=sys.stderr)
        return 2
    try:
        out = export_onnx(checkpoint, out)
    except (ValueError, FileNotFoundError) as e:
        print(f"export-onnx {args.checkpoint}: {e}", file=sys.stderr)
        return 2
    print(f"wrote {out}")
    return 0
