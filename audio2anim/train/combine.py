"""``audio2anim combine-frontends``: several trained front ends → one ensemble checkpoint.

The ensemble's posteriors are the mean of its members'. Viseme front ends become one
`VisemeFrontEnd` (`combine_frontends`); wav2vec2 front ends an ensemble directory
(`wav2vec_ensemble`, members optionally stored in float16). Averaging front ends trained alike
with different seeds makes real-speech accuracy steadier than any one seed
(checkpoints/README.md has the figures). Its sidecar is the first member's (feature, lookahead,
visemes, data), with ``ensemble.members`` listing every member's checkpoint, training command
and test figures, and, when ``data`` is given, its own figures on that data's test voices.

A viseme ensemble given as a member contributes its members (``DIR#3,4,5`` picks some of
them, counted from 0), so an ensemble can be recombined with newly trained front ends.
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
    from audio2anim.models.viseme_frontend import combine_frontends, ensemble_members
    from audio2anim.models.wav2vec import save_ensemble

    loaded = []  # (path, sidecar, picked member indices or None for a single front end)
    kind = None
    for spec in members:
        path, _, picks = str(spec).partition("#")
        side = read_sidecar(path)
        kind = kind or side["kind"]  # the first member's
        if side["kind"] not in KINDS or side["kind"] != kind:
            raise ValueError(
                f"{path}: a {side['kind']} checkpoint; combine viseme-frontend or wav2vec2 "
                f"checkpoints, all of one kind"
            )
        n = side.get("hparams", {}).get("members", 1)
        if n > 1 and kind != "viseme-frontend":
            raise ValueError(f"{path}: already an ensemble")
        loaded.append((path, side, _picked(spec, picks, n)))
    if float16 and kind != "wav2vec2":
        raise ValueError("float16 storage applies to wav2vec2 members only")
    if viseme_bias and kind != "viseme-frontend":
        raise ValueError("--viseme-bias applies to viseme-frontend members only")
    if phone_bias and kind != "wav2vec2":
        raise ValueError("--phone-bias applies to wav2vec2 members only")
    from .evaluate import trained_split_seed

    first = loaded[0][1]
    split_seed = trained_split_seed(first)  # `eval` reads it from the sidecar, as for any model
    records = [rec for path, side, picks in loaded for rec in _member_records(path, side, picks)]
    sidecar = {k: v for k, v in first.items() if k not in ("format", "kind", "hparams", "metrics")}
    sidecar.pop("ensemble", None)
    sidecar["training"] = {
        "command": command,
        "epochs_run": "+".join(str(r.pop("epochs_run")) for r in records),
        "steps": "+".join(str(r.pop("steps")) for r in records),
        "stop_reason": f"mean of {len(records)} front ends",
        "torch": torch.__version__,
        "device": "cpu",
        "options": {"split_seed": split_seed},
    }
    sidecar["ensemble"] = {"members": records}
    if kind == "wav2vec2":
        sidecar["ensemble"]["weights"] = "float16" if float16 else "float32"

        def write(sidecar):
            save_ensemble([path for path, _, _ in loaded], out, sidecar, float16, phone_bias)
            return Path(out)
    else:
        try:
            parts = []
            for path, _, picks in loaded:
                each = ensemble_members(load(path)[0])
                parts += each if picks is None else [each[i] for i in picks]
            model = combine_frontends(parts)
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


def _picked(spec: str, picks: str, n: int) -> list[int] | None:
    """``DIR#3,4,5`` → [3, 4, 5] (members of an ensemble of ``n``); ``DIR`` → None (all)."""
    if not picks:
        return None
    try:
        idx = [int(i) for i in picks.split(",")]
    except ValueError:
        raise ValueError(f"{spec}: expected DIR#i,j,… with member numbers from 0") from None
    bad = [i for i in idx if not 0 <= i < n]
    if bad or len(set(idx)) != len(idx):
        raise ValueError(f"{spec}: members are numbered 0…{n - 1}, each once; got {picks}")
    return idx


def _member_records(path: str, side: dict, picks: list[int] | None) -> list[dict]:
    """The ``ensemble.members`` entries one input contributes: an ensemble's own entries (those
    picked), or one entry for a single front end (its checkpoint, command, seed, test figures;
    ``epochs_run``/``steps`` are taken out again for the training record)."""
    if "ensemble" in side:
        runs = zip(
            side["training"]["epochs_run"].split("+"),
            side["training"]["steps"].split("+"),
            strict=True,
        )
        recs = [{**m, "epochs_run": e, "steps": s} for m, (e, s) in
                zip(side["ensemble"]["members"], runs, strict=True)]  # fmt: skip
        return recs if picks is None else [recs[i] for i in picks]
    t = side.get("training", {})
    metrics = side.get("metrics", {})
    return [
        {
            "checkpoint": str(path),
            "command": t.get("command"),
            "seed": t.get("options", {}).get("seed"),
            **{
                f"test_{k}": metrics[k]
                for k in ("viseme_frame_accuracy", "phone_error_rate")
                if k in metrics
            },
            "epochs_run": t.get("epochs_run"),
            "steps": t.get("steps"),
        }
    ]


def averaging_warning(sidecar: dict) -> str | None:
    """One line when an evaluated ensemble (``sidecar``) scores worse on its test voices than
    every member did on theirs, else None. Seeds of a CTC model can place their phone spikes on
    different frames; the mean of misplaced spikes loses to the blank (a wav2vec2 pair read
    PER 0.238 where its members read 0.128 and 0.124; docs/experiments.md)."""
    metrics = sidecar.get("metrics", {})
    members = sidecar.get("ensemble", {}).get("members", [])
    for key, lower_is_better in (("phone_error_rate", True), ("viseme_frame_accuracy", False)):
        own = metrics.get(key)
        theirs = [m[f"test_{key}"] for m in members if f"test_{key}" in m]
        if own is None or len(theirs) != len(members) or not theirs:
            continue
        worse = own > max(theirs) if lower_is_better else own < min(theirs)
        if worse:
            listed = ", ".join(f"{v:.3f}" for v in theirs)
            return (
                f"the ensemble's test {key.replace('_', ' ')} {own:.3f} is worse than every "
                f"member's ({listed}); members that disagree on timing do not average "
                f"(CTC seeds can place their phone spikes on different frames): try other members"
            )
    return None
