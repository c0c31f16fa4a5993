"""What batching the viseme models across sessions can save on this CPU.

Unbatched, `audio2anim serve` runs one ONNX Runtime call per session and chunk for each model
(the viseme front end, then the predictor); with ``--batch-window-ms`` it stacks the calls of
the sessions ready together into one call with a batch of B (`audio2anim.serve.batching`).
This bench times one call of the shipped models at batch B, with the shapes a session's 20 ms
chunk gives them (front end: 2 log-mel frames plus its history and GRU state per session;
predictor: its window of viseme frames), one intra-op thread as in the service, and prints the
time per call and per session.
A per-session time that falls with B is what batching saves; one that stays flat means the
models' own compute, not the per-call overhead, sets the cost.

    python bench/serve_batch.py --batches 1,2,4,8,16,32 --write-docs
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from perf_page import add_arguments, write_from_args  # noqa: E402


def timed(fn, seconds: float) -> float:
    """Median seconds per call of ``fn`` over about ``seconds``, in 5 rounds."""
    fn()
    rounds = []
    for _ in range(5):
        n, t0 = 0, time.perf_counter()
        while time.perf_counter() - t0 < seconds / 5:
            fn()
            n += 1
        rounds.append((time.perf_counter() - t0) / n)
    return float(np.median(rounds))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--batches", default="1,2,4,8,16,32", help="batch sizes, comma-separated")
    ap.add_argument("--seconds", type=float, default=2.0, help="timing per model and batch")
    add_arguments(ap)
    args = ap.parse_args()
    from audio2anim.models.predictor_stream import cached_onnx_model, history_frames
    from audio2anim.resources import require_checkpoint

    front = cached_onnx_model(require_checkpoint("checkpoints/viseme-frontend", "bench"))
    pred = cached_onnx_model(require_checkpoint("checkpoints/viseme-cnn", "bench"))
    hp = front.hp
    pad = hp["conv_layers"] * (hp["kernel"] - 1)
    window = history_frames(pred.meta) + pred.hp["lookahead"] + 1
    rng = np.random.default_rng(0)
    load = os.getloadavg()[0]
    rows = []
    for b in (int(v) for v in args.batches.split(",")):
        feeds = {
            "logmel": rng.standard_normal((b, 2, hp["n_mels"])).astype(np.float32),
            "history": rng.standard_normal((b, hp["n_mels"], pad)).astype(np.float32),
            "h0": np.zeros((1, b, hp["hidden"]), np.float32),
        }
        f = timed(lambda feeds=feeds: front.session.run(None, feeds), args.seconds)
        x = {"features": rng.random((b, window, pred.hp["in_dim"])).astype(np.float32)}
        p = timed(lambda x=x: pred.session.run(None, x), args.seconds)
        rows.append((b, f, p))
        print(f"B={b}: front end {f * 1e3:.3f} ms, predictor {p * 1e3:.3f} ms", file=sys.stderr)
    load = max(load, os.getloadavg()[0])
    base = rows[0][1] + rows[0][2]
    lines = [
        f"One ONNX Runtime call per model (1 intra-op thread) for B sessions' 20 ms chunk: front "
        f"end 2 log-mel frames, predictor a {window}-frame window; load {load:.1f}",
        "",
        "| B | front end ms | predictor ms | both, per session ms | per session vs B = 1 |",
        "|---|---|---|---|---|",
    ]
    for b, f, p in rows:
        per = (f + p) / b
        lines.append(
            f"| {b} | {f * 1e3:.3f} | {p * 1e3:.3f} | {per * 1e3:.3f} | {per / base:.2f} |"
        )
    text = "\n".join(lines)
    print(text)
    write_from_args(args, "serve_batch", text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
