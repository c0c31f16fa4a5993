"""``audio2anim combine-frontends``: several trained viseme front ends → one ensemble checkpoint.

The ensemble's posteriors are the mean of its members' (`combine_frontends`). Averaging front
ends trained alike with different seeds makes real-speech accuracy steadier than any one seed
(checkpoints/README.md has the figures). Its sidecar is the first member's (feature, lookahead,
visemes, data), with ``ensemble.members`` listing every member's checkpoint, training command
and test figures, and, when ``data`` is given, its own figures on that data's test voices.
"""

from __future__ import annotations

from pathlib import Path


def combine_checkpoints(
    members: list[str | Path], out: str | Path, data: str | Path | None = None, command: str = ""
) -> Path:
    """Write the ensemble of the viseme front-end checkpoints ``members`` to ``out``."""
    import torch

    from audio2anim.models.checkpoint import load, save
    from audio2anim.models.viseme_frontend import combine_frontends

    loaded = []
    for path in members:
        model, side = load(path)
        if side["kind"] != "viseme-frontend":
            raise ValueError(f"{path}: a {side['kind']} checkpoint, not a viseme-frontend")
        loaded.append((model, side))
    try:
        model = combine_frontends([m for m, _ in loaded])
    except ValueError as e:
        raise ValueError(f"{members[0]} + …: {e}") from None
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
                "test_viseme_frame_accuracy": side.get("metrics", {}).get("viseme_frame_accuracy"),
            }
            for path, t, (_, side) in zip(members, trainings, loaded, strict=True)
        ]
    }
    out = save(model, out, sidecar)
    if data is not None:
        from .data import load_data
        from .evaluate import evaluate

        _, _, test = load_data(data).split(split_seed)
        sidecar["metrics"] = {"split": "test", **evaluate(out, test)}
        save(model, out, sidecar)
    return out
