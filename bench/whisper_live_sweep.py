#!/usr/bin/env python3
"""The live Whisper front end's lookahead and hop against the graph's algorithmic latency: viseme
accuracy and each predictor's lip sync fed by it, per (lookahead, hop).

    python bench/whisper_live_sweep.py --configs 100:40,60:40,80:20 \
        [--data synth05 --split val | --sets tuxpaint,ktuberling,alsa,pypi] \
        [--predictors audio2anim/checkpoints/viseme-cnn,DIR,…] \
        [--model audio2anim/checkpoints/whisper-stream-visemes] [--work out/live_sweep] \
        [--pp-offsets 2,3,4] [--blend-model audio2anim/checkpoints/whisper-viseme-head
        --blend-weights 0,0.3,0.5]

Each configuration (``L:H``, milliseconds) streams every utterance once through
`audio2anim.models.whisper_live.LiveWhisperStream` (window 1 s, the encoder in ONNX Runtime as
the live graph runs it) and feeds the same posteriors to every predictor, so a configuration
costs one encoder pass whatever the number of predictors. Latency of a row: the front end's
(L + H − 20 ms + 2.5 ms) plus the predictor's lookahead. ``--data`` scores a split of a training
export or corpus (split by voice as `audio2anim eval`, ``--split-seed``); ``--sets`` the real
sets of `bench/real_speech.py`, aligned once into ``--work`` and reused by later runs. Prints one
Markdown table per set and writes the tables, and the rows as JSON, into ``--work``.
``--pp-offsets`` repeats each configuration with these P/B/M log-odds offsets in place of the
checkpoint's (the operator's ``viseme_bias: {PP: x}``). ``--blend-model`` with
``--blend-weights`` repeats each with that checkpoint blended in at each weight (0: none) as the
operator's ``blend_model`` / ``blend_weight`` do (`audio2anim.models.viseme_blend`; an offline
head over whole clips in ONNX Runtime, as the offline graph runs it); the P/B/M offset then
applies to the blend.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from audio2anim.resources import PACKAGE_CHECKPOINTS  # noqa: E402


def parse_configs(text: str) -> list[tuple[int, int]]:
    """``"100:40,60:40"`` → [(lookahead ms, hop ms), …]; ValueError unless whole 20 ms frames."""
    out = []
    for item in text.split(","):
        la, hop = (int(v) for v in item.split(":"))
        if la % 20 or hop % 20 or hop <= 0:
            raise ValueError(f"--configs: {item!r}: lookahead and hop in whole 20 ms frames")
        out.append((la, hop))
    return out


def set_utterances(name: str, work: Path) -> list:
    """The utterances of real set ``name``, aligned and exported into ``work`` once."""
    import tempfile

    import real_speech

    from audio2anim.train.data import load_data

    export = work / "sets" / name
    if not (export / "export.json").is_file():
        with tempfile.TemporaryDirectory(prefix="live_sweep-") as tmp:
            items = real_speech.pypi_clips() if name == "pypi" else None
            real_speech.align_and_export(name, Path(tmp), items)
            export.parent.mkdir(parents=True, exist_ok=True)
            os.replace(Path(tmp) / "export", export)
    return load_data(export).utterances


def sweep(model: Path, configs, predictors, utts, offsets=(None,), blend=None) -> list[dict]:
    """Rows of figures: one per (configuration, P/B/M offset, blend weight, predictor), the
    front end's accuracy in each (offset None: the checkpoint's). ``blend``: (checkpoint,
    weights) blended in, or None."""
    import numpy as np

    from audio2anim.models.checkpoint import load, read_sidecar
    from audio2anim.models.onnx_export import cached_export
    from audio2anim.models.whisper_head import WhisperVisemes
    from audio2anim.models.whisper_live import live_latency_s
    from audio2anim.models.whisper_windows import declared_latency_s
    from audio2anim.train.evaluate import _figures, _tally

    front = WhisperVisemes(model)
    own_bias = dict(front.head.hparams.get("viseme_bias") or {})
    onnx = cached_export(model)
    loaded = [(p, *load(p)) for p in predictors]
    weights, other = (blend[1], blend_front(blend[0])) if blend else ([0.0], None)
    other_ms = 1000 * declared_latency_s(read_sidecar(blend[0])) if blend else 0.0
    rows = []
    for (la, hop), pp, w in ((c, o, w) for c in configs for o in offsets for w in weights):
        bias = own_bias if pp is None else {"PP": pp}
        front.head.set_viseme_bias(bias if w == 0 else {})
        stream = front.stream(1.0, hop / 1000, la / 1000, onnx)
        if w > 0:
            stream = blended(stream, other, w, bias)
        acc: dict = {}
        lips: dict[Path, dict] = {p: {} for p in predictors}
        for u in utts:
            post = np.concatenate([stream.push(u.audio), stream.flush()])
            _tally(acc, "frontend", u, np.repeat(post, 2, axis=0))
            for p, predictor, _ in loaded:
                _tally(lips[p], "from_audio", u, predictor.predict(post))
        front_ms = 1000 * live_latency_s(hop // 20, la // 20)
        if w > 0:  # the blend waits for the slower stream
            front_ms = max(front_ms, other_ms)
        base = {"lookahead_ms": la, "hop_ms": hop, "front_latency_ms": round(front_ms, 1), "pp": pp,
                **({"blend_weight": w} if blend else {}),
                **{k: v for k, v in _figures("frontend", acc).items() if k != "confusion_matrix"}}  # fmt: skip
        for p, _, side in loaded:
            figs = _figures("from_audio", lips[p])
            rows.append({**base, "predictor": p.name, "predictor_lookahead_ms": side["lookahead_ms"],
                         "latency_ms": round(front_ms + side["lookahead_ms"], 1),
                         "mae_mouth": figs["mae"]["mouth"],
                         **{k: v for k, v in figs.items() if k != "mae"}})  # fmt: skip
        print(
            f"L {la} ms, hop {hop} ms{'' if pp is None else f', PP {pp:g}'}"
            f"{f', blend {w:g}' if blend else ''}: "
            f"viseme acc. {base['viseme_frame_accuracy']:.3f}",
            flush=True,
        )
    return rows


def blend_front(checkpoint: Path):
    """``checkpoint``'s front, as the operator runs it for ``blend_model`` in the offline graph
    (an offline head in ONNX Runtime), without offsets of its own."""
    from audio2anim.models.checkpoint import read_sidecar
    from audio2anim.models.whisper_head import WhisperVisemes
    from audio2anim.models.whisper_onnx import OnnxWhisperVisemes
    from audio2anim.models.whisper_windows import live_settings

    if live_settings(read_sidecar(checkpoint)) is None:
        front = OnnxWhisperVisemes(checkpoint)
        front.set_viseme_bias({})
    else:
        front = WhisperVisemes(checkpoint)
        front.head.set_viseme_bias({})
    return front


def blended(stream, other, weight: float, bias: dict):
    """``stream`` with front ``other`` (`blend_front`, its default windows) blended in at
    ``weight``, ``bias`` applied to the blend."""
    from audio2anim.models.class_bias import bias_array
    from audio2anim.models.viseme_blend import BlendedVisemeStream
    from audio2anim.visemes import VISEMES

    offsets = bias_array(bias, VISEMES, "viseme_bias", "viseme")
    return BlendedVisemeStream([stream, other.stream()], [1 - weight, weight], offsets)


def table(rows: list[dict], title: str) -> str:
    from audio2anim.train.evaluate import fmt

    def lip(r, key, seg):
        n = r["segments"][seg]
        return "n/a" if n == 0 else f"{fmt(r[key])} ({n})"

    pp = any(r.get("pp") is not None for r in rows)  # a P/B/M offset column
    bl = any("blend_weight" in r for r in rows)  # a blend weight column
    lines = [f"{title}", "",
             "| L / hop (ms) | " + ("PP offset | " if pp else "") + ("blend weight | " if bl else "")
             + "predictor (lookahead) "
             "| latency (ms) | viseme acc. | closure (n) "
             "| false closures | rounding (n) | openness (n) | MAE mouth |",
             "|---|---|---|---|---|---|---|---|---|" + ("---|" if pp else "") + ("---|" if bl else "")]  # fmt: skip
    for r in sorted(
        rows,
        key=lambda r: (
            r["latency_ms"],
            r["lookahead_ms"],
            r.get("pp") or 0,
            r.get("blend_weight", 0),
            r["predictor"],
        ),  # fmt: skip
    ):
        offset = (f"{r['pp']:g} | " if r.get("pp") is not None else "checkpoint's | ") if pp else ""
        offset += f"{r['blend_weight']:g} | " if bl else ""
        lines.append(
            f"| {r['lookahead_ms']} / {r['hop_ms']} | {offset}{r['predictor']} ({r['predictor_lookahead_ms']} ms) "
            f"| {r['latency_ms']:g} | {fmt(r['viseme_frame_accuracy'])} "
            f"| {lip(r, 'bilabial_closure_recall', 'bilabial')} | {fmt(r.get('false_closure_rate'))} "
            f"| {lip(r, 'rounding_recall', 'rounded')} | {lip(r, 'open_vowel_openness', 'open')} "
            f"| {fmt(r['mae_mouth'])} |"
        )
    return "\n".join(lines) + "\n"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--configs", required=True, help="L:H,… in ms (lookahead:hop)")
    ap.add_argument("--model", type=Path, default=PACKAGE_CHECKPOINTS / "whisper-stream-visemes")
    ap.add_argument("--predictors", default=str(PACKAGE_CHECKPOINTS / "viseme-cnn"),
                    help="comma-separated predictor checkpoints fed by the front end")  # fmt: skip
    ap.add_argument("--data", type=Path, help="a training export or corpus")
    ap.add_argument("--split", default="val", choices=("train", "val", "test", "all"))
    ap.add_argument("--split-seed", type=int, default=0)
    ap.add_argument("--sets", help="real sets of bench/real_speech.py, comma-separated")
    ap.add_argument("--work", type=Path, default=Path("out/live_sweep"))
    ap.add_argument("--threads", type=int, default=1, help="torch and ONNX Runtime threads")
    ap.add_argument("--pp-offsets", help="P/B/M log-odds offsets to try, comma-separated")
    ap.add_argument("--blend-model", type=Path, help="a second front-end checkpoint to blend in")
    ap.add_argument("--blend-weights", default="0.3",
                    help="its weights to try, comma-separated (0: no blend)")  # fmt: skip
    args = ap.parse_args()
    if (args.data is None) == (args.sets is None):
        print("give one of --data and --sets", file=sys.stderr)
        return 2
    try:
        configs = parse_configs(args.configs)
        offsets = [float(v) for v in args.pp_offsets.split(",")] if args.pp_offsets else [None]
        blend = None
        if args.blend_model is not None:
            weights = [float(v) for v in args.blend_weights.split(",")]
            if any(not 0 <= w < 1 for w in weights):
                raise ValueError(f"--blend-weights: each in [0, 1), got {args.blend_weights}")
            if not (args.blend_model / "config.json").is_file():
                raise ValueError(f"--blend-model: {args.blend_model} is not a checkpoint folder")
            blend = (args.blend_model, weights)
    except ValueError as e:
        print(e, file=sys.stderr)
        return 2
    os.environ.setdefault("TQDM_DISABLE", "1")
    os.environ.setdefault("OMP_NUM_THREADS", str(args.threads))
    import torch

    torch.set_num_threads(args.threads)
    predictors = [Path(p) for p in args.predictors.split(",") if p]
    args.work.mkdir(parents=True, exist_ok=True)
    groups = {}
    if args.data is not None:
        from audio2anim.train.data import load_data

        train, val, test = load_data(args.data).split(args.split_seed)
        groups[f"{args.data.name} {args.split}"] = {
            "train": train, "val": val, "test": test, "all": train + val + test}[args.split]  # fmt: skip
    else:
        for name in args.sets.split(","):
            groups[name] = set_utterances(name, args.work)
    text, dump = [], {}
    for name, utts in groups.items():
        seconds = sum(len(u.audio) for u in utts) / 16000
        rows = sweep(args.model, configs, predictors, utts, offsets, blend)
        dump[name] = rows
        text.append(table(rows, f"### {name}: {len(utts)} utterances, {seconds:.1f} s"))
        print(text[-1], flush=True)
    stem = (
        "_".join(n.replace(" ", "-") for n in groups)
        + "_"
        + args.configs.replace(",", "_").replace(":", "-")
        + (f"_pp{args.pp_offsets.replace(',', '-')}" if args.pp_offsets else "")
        + (f"_blend{args.blend_weights.replace(',', '-')}" if blend else "")
    )
    (args.work / f"{stem}.md").write_text("\n".join(text))
    (args.work / f"{stem}.json").write_text(json.dumps(dump, indent=1) + "\n")
    print(f"written to {args.work / stem}.md / .json")
    return 0


if __name__ == "__main__":
    sys.exit(main())
