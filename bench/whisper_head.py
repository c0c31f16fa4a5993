#!/usr/bin/env python3
"""A viseme head on the frozen Whisper tiny.en encoder, offline, against the shipped front end on
real recorded speech.

    python bench/whisper_head.py --train CORPUS [--train CORPUS …]
                                 [--sets alsa,ktuberling,tuxpaint] [--cache DIR]
                                 [--epochs 8] [--seed 0] [--threads 1]
                                 [--save-checkpoint DIR] [--out out/whisper_head.md]

Training: every ``--train`` corpus (e.g. ``audio2anim data synth`` and ``audio2anim data asterisk
--part train``) is exported (`audio2anim.train.data.export_data`) and loaded; the labels are the
export's 50 Hz viseme ids (``vis50``, from the corpus phones). Every utterance of the corpora
trains (no split by voice, unlike ``audio2anim train whisper-viseme-head``). The library does the
work: `audio2anim.train.whisper_head.encoder_states` (the frozen encoder over the offline
windows of `audio2anim.models.whisper_head`: whole up to 25 s) and `fit_head` (the recipe's
training loop); two heads are trained, one on the final layer and one on the final layer and
layer 3 concatenated (`WhisperVisemeHead`: ±1 frame, standardised, Linear → GELU → Linear,
hidden 256), a fixed number of epochs, seed fixed; nothing is selected on any scored set.

Scoring: each of ``--sets`` is aligned and exported exactly as `bench/real_speech.py` does
(`align_and_export`) and scored with `audio2anim.train.evaluate`'s own tallies: viseme frame
accuracy over 10 ms frames (the head's 50 Hz posteriors are repeated to 100 Hz; the shipped
front end is `evaluate` of ``viseme-frontend``) and P/B/M closure recall and false closures of the
``viseme-cnn`` predictor fed by each front end's 50 Hz posteriors (the shipped front end's
downsampled by `downsample_posteriors`, as `evaluate` does). Prints one Markdown table.
``--save-checkpoint DIR`` writes the final+layer 3 head (safetensors + config.json) to DIR.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from real_speech import align_and_export, parse_sets  # noqa: E402

from audio2anim.resources import PACKAGE_CHECKPOINTS  # noqa: E402
from audio2anim.train.evaluate import fmt  # noqa: E402

LAYER3 = 3  # `encode(layers=True)`[3]: the output of the encoder's third block (0 = input)
HEADS = {"final": (-1,), "final+L3": (-1, LAYER3)}
PREDICTOR = "viseme-cnn"


def head_states(states: list[np.ndarray], layers: tuple[int, ...], width: int) -> list:
    """States of (-1, 3) side by side → those of ``layers`` (the first ``width`` columns are
    the final layer's)."""
    return states if len(layers) == 2 else [s[:, :width] for s in states]


def train_head(states, labels, layers, width, epochs, seed):
    from audio2anim.models.whisper_head import WhisperVisemeHead
    from audio2anim.train.whisper_head import fit_head, inputs

    torch.manual_seed(seed)
    head = WhisperVisemeHead(width=width, layers=layers)
    x = inputs(head_states(states, layers, width), head.context)
    fit_head(head, x, np.concatenate(labels), epochs=epochs, seed=seed, progress=False)
    return head


def load_corpus(corpus: Path, tmp: Path):
    from audio2anim.train.data import export_data, load_data

    out = tmp / f"export-{corpus.name}"
    export_data(corpus, out, max_mb=None)
    return load_data(out).utterances


def score_set(name, utts, ckdir: Path, posteriors: dict[str, list[np.ndarray]]) -> dict:
    """{front end: {"acc", "closure", "n_bilabial", "false_closure"}}; ``posteriors``: the heads'
    50 Hz posteriors per utterance. The shipped front end through `evaluate`."""
    import torch

    from audio2anim.models.checkpoint import load
    from audio2anim.models.logmel import logmel
    from audio2anim.models.viseme_frontend import downsample_posteriors
    from audio2anim.train.evaluate import _figures, _tally, evaluate

    shipped = evaluate(ckdir / "viseme-frontend", utts)
    front, _ = load(ckdir / "viseme-frontend")
    predictor, _ = load(ckdir / PREDICTOR)
    rows = {}
    with torch.no_grad():
        shipped_post = [downsample_posteriors(front.posteriors(logmel(u.audio))) for u in utts]
        for label, posts in (("shipped front end", shipped_post), *posteriors.items()):
            acc: dict = {}
            lips: dict = {}
            for u, p in zip(utts, posts, strict=True):
                if label != "shipped front end":
                    _tally(acc, "frontend", u, np.repeat(p, 2, axis=0))
                _tally(lips, "from_audio", u, predictor.predict(p))
            a = (shipped["viseme_frame_accuracy"] if label == "shipped front end"
                 else _figures("frontend", acc)["viseme_frame_accuracy"])  # fmt: skip
            f = _figures("from_audio", lips)
            rows[label] = {"acc": a, "closure": f["bilabial_closure_recall"],
                           "n_bilabial": f["segments"]["bilabial"],
                           "false_closure": f.get("false_closure_rate")}  # fmt: skip
    return rows


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--train", type=Path, action="append", required=True, help="corpus folder")
    ap.add_argument("--sets", default="alsa,ktuberling,tuxpaint")
    ap.add_argument("--checkpoints", type=Path, default=PACKAGE_CHECKPOINTS)
    ap.add_argument(
        "--cache",
        type=Path,
        help="folder for the training corpora's encoder states, by corpus folder name "
        "(delete it when a corpus changes)",
    )
    ap.add_argument("--epochs", type=int, default=8)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--save-checkpoint", type=Path)
    ap.add_argument("--out", default="out/whisper_head.md")
    args = ap.parse_args()
    sets = parse_sets(args.sets)
    os.environ.setdefault("TQDM_DISABLE", "1")
    torch.set_num_threads(args.threads)
    from audio2anim.models.whisper_head import shared_whisper, with_context
    from audio2anim.train.whisper_head import encoder_states

    whisper = shared_whisper()
    width = whisper.width
    with tempfile.TemporaryDirectory(prefix="whisper_head-") as tmp:
        tmp = Path(tmp)
        train_enc, train_lab, seconds = [], [], 0.0
        for corpus in args.train:
            utts = load_corpus(corpus, tmp)
            t0 = time.perf_counter()
            train_enc += encoder_states(whisper, HEADS["final+L3"], utts, args.cache,
                                        f"train-{corpus.name}", progress=False)  # fmt: skip
            train_lab += [u.vis50 for u in utts]
            seconds += sum(u.frames for u in utts) / 50
            print(f"{corpus}: {len(utts)} utterances encoded "
                  f"({time.perf_counter() - t0:.1f} s)", flush=True)  # fmt: skip
        heads = {}
        for label, layers in HEADS.items():
            print(f"head {label}: {seconds / 60:.1f} min", flush=True)
            heads[label] = train_head(train_enc, train_lab, layers, width, args.epochs, args.seed)
        del train_enc

        lines = [
            f"Training: {seconds / 60:.1f} min ({', '.join(str(c) for c in args.train)}); "
            f"closure through `{PREDICTOR}`.",
            "",
            "| set | front end | viseme acc. | P/B/M closure recall (segments) | false closures |",
            "|---|---|---|---|---|",
        ]
        for name in sets:
            setdir = tmp / name
            setdir.mkdir()
            align_and_export(name, setdir)
            from audio2anim.train.data import load_data

            utts = load_data(setdir / "export").utterances
            posts = {}
            encs = encoder_states(whisper, HEADS["final+L3"], utts, None, name, progress=False)
            with torch.no_grad():
                for label, layers in HEADS.items():
                    head = heads[label]
                    posts[f"Whisper head ({label})"] = [
                        np.exp(
                            head(torch.from_numpy(with_context(s.astype(np.float32), 1))).numpy()
                        )
                        for s in head_states(encs, layers, width)
                    ]
            rows = score_set(name, utts, args.checkpoints, posts)
            for label, r in rows.items():
                closure = (f"{fmt(r['closure'])} ({r['n_bilabial']})" if r["n_bilabial"]
                           else "n/a (0 segments)")  # fmt: skip
                lines.append(
                    f"| {name} | {label} | {fmt(r['acc'])} | {closure} "
                    f"| {fmt(r['false_closure'])} |"
                )
            print("\n".join(lines[-3:]), flush=True)
    text = "\n".join(lines) + "\n"
    print()
    print(text)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text)
    if args.save_checkpoint:
        from audio2anim.models.checkpoint import save
        from audio2anim.models.whisper_head import encoder_summary

        save(heads["final+L3"], args.save_checkpoint, {"encoder": encoder_summary(whisper)})
        print(f"head written to {args.save_checkpoint}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
