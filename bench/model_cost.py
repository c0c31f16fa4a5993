#!/usr/bin/env python3
"""CPU cost of the models: milliseconds of compute per second of audio, batch 1.

    python bench/model_cost.py [--checkpoints audio2anim/checkpoints] [--threads 2] [--seconds 10] [--write-docs]

For each model: ``one-shot`` = a whole 10 s utterance in one call (the offline cost);
``stream`` = the same audio in blocks of ``--block-ms`` (the live cost, incl. per-call
overhead). Front ends and predictors are timed separately and then as the two pipelines the
project targets (viseme front end + predictor ≤ 10 ms/s; small wav2vec2 + predictor ≤ 60 ms/s).
Checkpoints from ``--checkpoints`` are used where present, otherwise freshly initialized
full-size models (same architecture, same cost). ONNX Runtime timings of the exported
predictors are listed too, and the viseme front end as the ``feature.visemes`` operator streams
it (log-mel included) on each backend. Prints Markdown tables; median of ``--repeats`` runs.
``--write-docs`` also writes them into docs/performance.md (section ``model-cost``).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from perf_page import add_arguments, write_from_args  # noqa: E402

from audio2anim.resources import PACKAGE_CHECKPOINTS  # noqa: E402


def _timed(fn, repeats: int) -> float:
    fn()  # warm-up
    runs = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        runs.append(time.perf_counter() - t)
    return statistics.median(runs)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--checkpoints", default=str(PACKAGE_CHECKPOINTS))
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--block-ms", type=int, default=100)
    ap.add_argument("--repeats", type=int, default=5)
    add_arguments(ap)
    args = ap.parse_args()

    import torch

    from audio2anim.models.checkpoint import build, load, read_sidecar
    from audio2anim.models.logmel import LogMelStream, logmel
    from audio2anim.models.predictors import ARStream
    from audio2anim.models.viseme_frontend import VisemeStream, downsample_posteriors
    from audio2anim.models.wav2vec import build_small, load_wav2vec2
    from audio2anim.models.wav2vec_stream import open_stream
    from audio2anim.train.config import HPARAMS

    torch.set_num_threads(args.threads)
    rng = np.random.default_rng(0)
    n = int(args.seconds * 16000)
    t = np.arange(n) / 16000
    audio = (
        0.3 * np.sin(2 * np.pi * 180 * t) * (1 + np.sin(2 * np.pi * 4 * t))
        + 0.02 * rng.standard_normal(n)
    ).astype(np.float32)
    block = int(16000 * args.block_ms / 1000)
    ck = Path(args.checkpoints)
    source = {}

    def get(kind, in_dim=None):
        d = ck / kind
        if (d / "config.json").is_file():
            source[kind] = str(d)
            return load(d)[0] if kind != "wav2vec2" else load_wav2vec2(d)
        source[kind] = "untrained (full-size config)"
        if kind == "wav2vec2":
            hp = dict(HPARAMS["full"]["wav2vec2"])
            return build_small(**hp).eval()
        hp = dict(HPARAMS["full"][kind])
        if kind == "viseme-frontend":
            return build(kind, dict(n_mels=80, **hp)).eval()
        return build(kind, dict(in_dim=in_dim, out_dim=30, **hp)).eval()

    rows: list[tuple[str, str, float, float | None]] = []  # name, source, one-shot, stream
    per_s = 1000.0 / args.seconds

    # log-mel
    def lm_stream():
        s = LogMelStream()
        for i in range(0, n, block):
            s.push(audio[i : i + block])

    rows.append(
        (
            "log-mel (numpy)",
            "-",
            _timed(lambda: logmel(audio), args.repeats) * per_s,
            _timed(lm_stream, args.repeats) * per_s,
        )
    )
    lm = logmel(audio)
    fe = get("viseme-frontend")
    lm_block = args.block_ms // 10

    def fe_stream():
        s = VisemeStream(fe)
        for i in range(0, len(lm), lm_block):
            s.push(lm[i : i + lm_block])
        s.flush()

    with torch.inference_mode():
        fe_one = _timed(lambda: fe.posteriors(lm), args.repeats) * per_s
        fe_st = _timed(fe_stream, args.repeats) * per_s
    rows.append(("viseme front end", source["viseme-frontend"], fe_one, fe_st))
    post50 = downsample_posteriors(fe.posteriors(lm))

    w2v = get("wav2vec2")

    def w2v_stream():
        s = open_stream(w2v)
        for i in range(0, n, block):
            s.push(audio[i : i + block])
        s.flush()

    with torch.inference_mode():
        w2v_one = _timed(lambda: w2v.features(audio), args.repeats) * per_s
        w2v_st = _timed(w2v_stream, args.repeats) * per_s
    n_params = sum(p.numel() for p in w2v.parameters()) / 1e6
    rows.append((f"wav2vec2 ({n_params:.1f} M params)", source["wav2vec2"], w2v_one, w2v_st))
    feats: dict[str, np.ndarray] = {}  # per wav2vec2 feature choice ("posteriors", "hidden-4")

    def w2v_features(kind):
        side = read_sidecar(ck / kind) if (ck / kind / "config.json").is_file() else {}
        name = (side.get("feature") or {}).get("feature") or "posteriors"
        if name not in feats:
            w2v.feature = name  # what this predictor was trained on
            feats[name] = w2v.features(audio)
        return feats[name]

    w_block = args.block_ms // 20
    pred_cost = {}
    for kind in ("viseme-mlp", "viseme-cnn", "w2v-cnn", "w2v-ar", "w2v-attention"):
        x = post50 if kind.startswith("viseme") else w2v_features(kind)
        m = get(kind, x.shape[1])
        with torch.inference_mode():
            one = _timed(lambda m=m, x=x: m.predict(x), args.repeats) * per_s
            if kind == "w2v-ar":

                def st(m=m, x=x):
                    s = ARStream(m)
                    for i in range(0, len(x), w_block):
                        s.push(x[i : i + w_block])
                    s.flush()

            else:
                # a streaming caller re-runs the receptive field around each new block
                ctx = m.past + m.lookahead

                def st(m=m, x=x, ctx=ctx):
                    for i in range(0, len(x), w_block):
                        m.predict(x[max(0, i - ctx) : i + w_block + m.lookahead])

            stream = _timed(st, args.repeats) * per_s
        pred_cost[kind] = (one, stream)
        rows.append((f"{kind}", source[kind], one, stream))

    # ONNX Runtime (one-shot) of the exported predictors
    from audio2anim.models.checkpoint import save
    from audio2anim.models.onnx_export import OnnxModel, export_onnx

    onnx_rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for kind in ("viseme-frontend", "viseme-mlp", "viseme-cnn", "w2v-cnn", "w2v-attention"):
            src = ck / kind
            if not (src / "config.json").is_file():
                x = (
                    post50
                    if kind.startswith("viseme-") and kind != "viseme-frontend"
                    else w2v_features(kind)
                )
                src = Path(tmp) / kind
                save(get(kind, x.shape[1]) if kind != "viseme-frontend" else fe, src)
            om = OnnxModel(export_onnx(src, Path(tmp) / f"{kind}.onnx"))
            if kind == "viseme-frontend":
                cost = _timed(lambda om=om: om.posteriors(lm), args.repeats) * per_s
            else:
                x = post50 if kind.startswith("viseme") else w2v_features(kind)
                cost = _timed(lambda om=om, x=x: om.predict(x), args.repeats) * per_s
            onnx_rows.append((kind, cost))

    # the front end as feature.visemes streams it, audio in, on each backend (needs a checkpoint)
    from audio2anim.models.viseme_streams import OnnxFrontEndStream, TorchFrontEndStream

    op_rows = []
    if (ck / "viseme-frontend" / "config.json").is_file():
        for backend, cls in (("torch", TorchFrontEndStream), ("onnx", OnnxFrontEndStream)):
            stream = cls(ck / "viseme-frontend")

            def op_stream(stream=stream):
                stream.reset()
                for i in range(0, n, block):
                    stream.push(audio[i : i + block])
                stream.flush()

            with torch.inference_mode():
                op_rows.append((backend, _timed(op_stream, args.repeats) * per_s))

    lines: list[str] = []

    def emit(line: str) -> None:
        print(line)
        lines.extend(line.split("\n"))

    emit(
        f"CPU cost, ms per second of audio ({args.seconds:.0f} s input, torch {torch.__version__}, "
        f"{args.threads} threads, stream blocks {args.block_ms} ms, median of {args.repeats})\n"
    )
    emit("| model | weights | one-shot ms/s | stream ms/s |")
    emit("|---|---|---|---|")
    for name, src, one, st in rows:
        emit(f"| {name} | {src} | {one:.2f} | {'-' if st is None else f'{st:.2f}'} |")
    emit("\n| pipeline (one-shot, incl. log-mel) | ms/s | target |")
    emit("|---|---|---|")
    lm_one = rows[0][2]
    for kind in ("viseme-mlp", "viseme-cnn"):
        emit(
            f"| log-mel + viseme front end + {kind} | {lm_one + fe_one + pred_cost[kind][0]:.2f} | ≤ 10 |"
        )
    for kind in ("w2v-cnn", "w2v-ar", "w2v-attention"):
        emit(f"| wav2vec2 + {kind} | {w2v_one + pred_cost[kind][0]:.2f} | ≤ 60 |")
    emit("\n| ONNX Runtime (one-shot, 1 thread) | ms/s |")
    emit("|---|---|")
    for kind, cost in onnx_rows:
        emit(f"| {kind} | {cost:.2f} |")
    if op_rows:
        emit(
            f"\n| `feature.visemes` backend (streamed, {args.block_ms} ms blocks, incl. log-mel) | ms/s |"
        )
        emit("|---|---|")
        for backend, cost in op_rows:
            emit(f"| {backend} | {cost:.2f} |")
    write_from_args(args, "model-cost", "\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
