"""``audio2anim combine-frontends``: several trained front ends → one ensemble checkpoint.

The ensemble's posteriors are the mean of its members'. Viseme front ends become one
`VisemeFrontEnd` (`combine_frontends`); wav2vec2 front ends an ensemble directory
(`wav2vec_ensemble`, members optionally stored in float16). Averaging front ends trained alike
with different seeds makes real-speech accuracy steadier than any one seed
(checkpoints/README.md has the figures). Its sidecar is the first member's (feature, lookahead,
visemes, data), with ``ensemble.members`` listing every member's checkpoint, training command
and test figures, and, when ``data`` is given, its own figures on that data's test voices.
"""

from __future__ import annotations

from pathlib import Path

KINDS = ("viseme-frontend", "wav2vec2")


def combine_checkpoints(
    members: list[str | Path],
    out: str | Path,
    data: str | Path | None = None,
    command: str = "",
    float16: bool = False,
    viseme_bias: dict[str, float] | None = None,
    phone_bias: dict[str, float] | None = None,
) -> Path:
    """Write the ensemble of the front-end checkpoints ``members`` (all viseme-frontend or all
    wav2vec2) to ``out``; ``float16`` stores wav2vec2 members' weights in half precision;
    ``viseme_bias`` ({"PP": 1.0}) sets a viseme ensemble's log-odds offsets
    (`VisemeFrontEnd.set_viseme_bias`), ``phone_bias`` ({"P": 2.0}) a wav2vec2 ensemble's
    (`Wav2Vec2FrontEnd.set_phone_bias`)."""
    import torch

    from audio2anim.models.checkpoint import load, read_sidecar, save
    from audio2anim.models.viseme_frontend import combine_frontends
    from audio2anim.models.wav2vec_ensemble import save_ensemble

    loaded = []
    kind = read_sidecar(members[0])["kind"]
    for path in members:
        side = read_sidecar(path)
        if side["kind"] not in KINDS or side["kind"] != kind:
            raise ValueError(
                f"{path}: a {side['kind']} checkpoint; combine viseme-frontend or wav2vec2 "
                f"checkpoints, all of one kind"
            )
        if side.get("hparams", {}).get("members", 1) > 1:
            raise ValueError(f"{path}: already an ensemble")
        loaded.append((path, side))
    if float16 and kind != "wav2vec2":
        raise ValueError("float16 storage applies to wav2vec2 members only")
    if viseme_bias and kind != "viseme-frontend":
        raise ValueError("--viseme-bias applies to viseme-frontend members only")
    if phone_bias and kind != "wav2vec2":
        raise ValueError("--phone-bias applies to wav2vec2 members only")
    from .evaluate import trained_split_seed

    first = loaded[0][1]
    split_seed = trained_split_seed(first)  # `eval` reads it from the sidecar, as for any model
    trainings = [side.get("training", {}) for _, side in loaded]
    sidecar = {k: v for k, v in first.items() if k not in ("format", "kind", "hparams", "metrics")}
    sidecar["training"] = {
        "command": command,
        "epochs_run": "+".join(str(t.get("epochs_run")) for t in trainings),
        "steps": "+".join(str(t.get("steps")) for t in trainings),
        "stop_reason": f"mean of {len(loaded)} front ends",
        "torch": torch.__version__,
        "device": "cpu",
        "options": {"split_seed": split_seed},
    }
    sidecar["ensemble"] = {
        "members": [
            {
                "checkpoint": str(path),
                "command": t.get("command"),
                "seed": t.get("options", {}).get("seed"),
                **{
                    f"test_{k}": side["metrics"][k]
                    for k in ("viseme_frame_accuracy", "phone_error_rate")
                    if k in side.get("metrics", {})
                },
            }
            for path, t, (_, side) in zip(members, trainings, loaded, strict=True)
        ]
    }
    if kind == "wav2vec2":
        sidecar["ensemble"]["weights"] = "float16" if float16 else "float32"

        def write(sidecar):
            save_ensemble(members, out, sidecar, float16, phone_bias)
            return Path(out)
    else:
        try:
            model = combine_frontends([load(path)[0] for path in members])
            model.set_viseme_bias(viseme_bias or {})
        except ValueError as e:
            raise ValueError(f"{members[0]} + …: {e}") from None

        def write(sidecar):
            return save(model, out, sidecar)

    out = write(sidecar)
    if data is not None:
        from .data import load_data
        from .evaluate import evaluate

        _, _, test = load_data(data).split(split_seed)
        sidecar["metrics"] = {"split": "test", **evaluate(out, test)}
        write(sidecar)
    return out
