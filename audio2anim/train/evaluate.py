"""``audio2anim eval``: figures of a checkpoint on held-out utterances, a Markdown report, a plot.

- front ends: viseme frame accuracy + confusion matrix (viseme-frontend, 100 Hz frames); phone
  error rate of greedy CTC decoding (wav2vec2);
- predictors: parameter MAE per group and the three lip-sync figures of
  `audio2anim.train.metrics` against the teacher targets. Viseme predictors are scored twice:
  on the true visemes (one-hots, "oracle") and, when a viseme front end is known (sidecar
  ``frontend`` or ``--frontend``), end to end on its posteriors from the audio. wav2vec
  predictors always run end to end from the audio through their front end (a wav2vec2
  checkpoint, or a ``whisper-viseme-head`` for those trained on its posteriors).

Definitions of every figure: `audio2anim.train.metrics`.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from audio2anim import arkit

from . import metrics as M
from .data import Utterance


def resolve_frontend(checkpoint: Path, sidecar: dict, override: str | None) -> str | None:
    """The front-end checkpoint a predictor uses: ``override``, else the sidecar's ``frontend``
    (stored relative to the checkpoint directory)."""
    if override:
        return override
    ref = sidecar.get("frontend")
    if not ref:
        return None
    p = Path(ref)
    return str(p if p.is_absolute() else (checkpoint / p).resolve())


def viseme_posteriors_50hz(frontend: str | Path, device: str = "cpu"):
    """A viseme front end (``viseme-frontend`` or ``whisper-viseme-head`` checkpoint) as a
    function: 16 kHz audio → [frames, 15] posteriors at 50 Hz, what a viseme predictor reads
    (the ``viseme-frontend``'s 100 Hz pairs averaged, as ``feature.visemes`` does)."""
    from audio2anim.models.checkpoint import load, read_sidecar
    from audio2anim.models.logmel import logmel
    from audio2anim.models.viseme_frontend import downsample_posteriors

    if read_sidecar(frontend)["kind"] == "whisper-viseme-head":
        from audio2anim.models.whisper_head import WhisperVisemes

        return WhisperVisemes(frontend).posteriors
    front, _ = load(frontend, device=device)
    return lambda audio: downsample_posteriors(front.posteriors(logmel(audio)))


def _predictions(checkpoint: Path, utts: list[Utterance], device: str, frontend: str | None):
    """Yields (mode, utt, output) for every evaluated utterance; output per kind."""
    import torch

    from audio2anim.models.checkpoint import load
    from audio2anim.models.logmel import logmel

    model, side = load(checkpoint, device=device)
    kind = side["kind"]
    with torch.no_grad():
        if kind == "viseme-frontend":
            for u in utts:
                yield "frontend", u, model.posteriors(logmel(u.audio))
        elif kind == "whisper-viseme-head":  # 50 Hz posteriors, each on two 10 ms frames
            posteriors = viseme_posteriors_50hz(checkpoint, device)
            for u in utts:
                yield "frontend", u, np.repeat(posteriors(u.audio), 2, axis=0)
        elif kind == "wav2vec2":
            for u in utts:
                x = torch.as_tensor(u.audio, device=device)[None]
                logits, _ = model.run(torch.nn.functional.pad(x, (80, 0)))
                yield "ctc", u, logits[0].argmax(-1).cpu().numpy()
        elif kind.startswith("viseme-"):
            eye = np.eye(15, dtype=np.float32)
            for u in utts:
                yield "oracle", u, model.predict(eye[u.vis50])
            fe = resolve_frontend(checkpoint, side, frontend)
            if fe:
                posteriors = viseme_posteriors_50hz(fe, device)
                for u in utts:
                    yield "from_audio", u, model.predict(posteriors(u.audio))
        else:
            fe = resolve_frontend(checkpoint, side, frontend)
            if not fe:
                raise ValueError(
                    f"{checkpoint}/config.json: no 'frontend' (wav2vec2 or whisper-viseme-head "
                    "checkpoint); pass --frontend"
                )
            from .features import feature_frontend

            feature = side.get("feature", {}).get("feature")
            features, _ = feature_frontend(fe, device, feature)
            for u in utts:
                x = torch.as_tensor(u.audio, device=device)[None]
                yield "from_audio", u, model.predict(features(x))


def fmt(v) -> str:
    """A figure for a Markdown table: three decimals, or 'n/a' when missing or NaN."""
    return "n/a" if v is None or v != v else f"{v:.3f}"


def _tally(a: dict, mode: str, u: Utterance, out) -> None:
    """Add one utterance's output to the accumulator ``a`` of a mode."""
    if mode == "frontend":
        pred = out.argmax(-1)
        n = min(len(pred), len(u.vis100))
        a.setdefault("conf", np.zeros((15, 15), np.int64))
        a["conf"] += M.confusion_matrix(pred[:n], u.vis100[:n])
    elif mode == "ctc":
        ref = [x for x in u.ctc_labels().tolist() if x != 1]
        a["err"] = a.get("err", 0) + M.edit_distance(M.ctc_greedy(out), ref)
        a["len"] = a.get("len", 0) + len(ref)
    else:
        n = min(len(out), len(u.targets))
        a.setdefault("abs", []).append(np.abs(out[:n] - u.targets[:n]))
        a.setdefault("lips", M.LipSyncCounter()).add(
            out[:n], u.targets[:n], u.seg_start, u.seg_end, u.seg_class
        )


def _figures(mode: str, a: dict) -> dict:
    """The figures of an accumulator (see the module docstring)."""
    if mode == "frontend":
        conf = a["conf"]
        return {
            "viseme_frame_accuracy": float(np.trace(conf) / max(1, conf.sum())),
            "confusion_matrix": conf.tolist(),
            "frames": int(conf.sum()),
        }
    if mode == "ctc":
        return {"phone_error_rate": a["err"] / max(1, a["len"])}
    err = np.concatenate(a["abs"])
    m = len(arkit.MOUTH)
    return {
        "mae": {
            "mouth": float(err[:, :m].mean()),
            "eyes": float(err[:, m:].mean()),
            "all": float(err.mean()),
        },
        **a["lips"].result(),
    }


def evaluate(
    checkpoint: str | Path,
    utts: list[Utterance],
    device: str = "cpu",
    frontend: str | None = None,
    samples: dict | None = None,
) -> dict:
    """Figures of ``checkpoint`` on ``utts`` (see the module docstring) as a JSON-able dict,
    overall and under ``per_voice`` for each voice (where a model fails is rarely uniform).

    If ``samples`` is a dict, the first utterance's (target, prediction) per mode is stored in
    it for plotting.
    """
    checkpoint = Path(checkpoint)
    acc: dict[str, dict] = {}
    voices: dict[str, dict[str, dict]] = {}
    for mode, u, out in _predictions(checkpoint, utts, device, frontend):
        _tally(acc.setdefault(mode, {}), mode, u, out)
        _tally(voices.setdefault(u.voice, {}).setdefault(mode, {}), mode, u, out)
        if samples is not None and mode not in samples and mode not in ("frontend", "ctc"):
            n = min(len(out), len(u.targets))
            samples[mode] = (u.id, u.targets[:n], out[:n])
    result: dict = {"utterances": len(utts)}
    for mode, a in acc.items():
        if mode in ("frontend", "ctc"):
            result.update(_figures(mode, a))
        else:
            result[mode] = _figures(mode, a)
    result["per_voice"] = {
        voice: {
            mode: {k: v for k, v in _figures(mode, a).items() if k != "confusion_matrix"}
            for mode, a in modes.items()
        }
        for voice, modes in sorted(voices.items())
    }
    return result


def markdown_report(checkpoint: Path, sidecar: dict, result: dict, plot_name: str | None) -> str:
    """The Markdown text of an evaluation report."""
    lines = [f"# Evaluation of `{checkpoint}` ({sidecar.get('kind')})", ""]
    lines.append(f"Utterances: {result['utterances']}")
    lines.append("")
    if "viseme_frame_accuracy" in result:
        names = sidecar.get("visemes") or [str(i) for i in range(15)]
        lines += [
            f"Viseme frame accuracy: **{result['viseme_frame_accuracy']:.3f}** over {result['frames']} frames (100 Hz)",
            "",
        ]
        conf = np.array(result["confusion_matrix"])
        lines += ["Confusion matrix (rows: true, columns: predicted, row-normalized %):", ""]
        lines.append("| true \\ pred | " + " | ".join(names) + " |")
        lines.append("|---" * (len(names) + 1) + "|")
        for i, row in enumerate(conf):
            tot = max(1, row.sum())
            lines.append(
                f"| {names[i]} | " + " | ".join(f"{100 * v / tot:.0f}" for v in row) + " |"
            )
        lines.append("")
    if "phone_error_rate" in result:
        lines += [
            f"Phone error rate (greedy CTC, silence ignored): **{result['phone_error_rate']:.3f}**",
            "",
        ]
    for mode in ("oracle", "from_audio"):
        if mode in result:
            r = result[mode]
            title = "true visemes as input" if mode == "oracle" else "end to end from audio"
            lines += [
                f"## Parameters, {title}",
                "",
                "| figure | value | segments |",
                "|---|---|---|",
                f"| MAE mouth | {r['mae']['mouth']:.4f} | |",
                f"| MAE eyes | {r['mae']['eyes']:.4f} | |",
                f"| bilabial closure recall | {r['bilabial_closure_recall']:.3f} | {r['segments']['bilabial']} |",
                f"| rounding recall | {r['rounding_recall']:.3f} | {r['segments']['rounded']} |",
                f"| open-vowel openness | {r['open_vowel_openness']:.3f} | {r['segments']['open']} |",
                f"| false closure rate (lower is better) | {fmt(r.get('false_closure_rate'))} "
                f"| {r.get('open_frames', 0)} frames |",
                "",
            ]
    if len(result.get("per_voice", {})) > 1:
        lines += _per_voice_table(result["per_voice"])
    if plot_name:
        lines += [f"![predicted vs target]({plot_name})", ""]
    lines += ["Definitions: see `audio2anim/train/metrics.py`.", ""]
    return "\n".join(lines)


def _per_voice_table(per_voice: dict) -> list[str]:
    """Markdown lines: one row per voice and mode."""
    titles = {
        "frontend": "front end",
        "ctc": "CTC",
        "oracle": "true visemes in",
        "from_audio": "from audio",
    }
    lines = [
        "## Per voice",
        "",
        "| voice | mode | viseme acc. | PER | MAE mouth | closure | rounding | openness "
        "| false closures |",
        "|---|---|---|---|---|---|---|---|---|",
    ]

    for voice, modes in per_voice.items():
        for mode, r in modes.items():
            lines.append(
                f"| {voice} | {titles.get(mode, mode)} | {fmt(r.get('viseme_frame_accuracy'))} "
                f"| {fmt(r.get('phone_error_rate'))} | {fmt(r.get('mae', {}).get('mouth'))} "
                f"| {fmt(r.get('bilabial_closure_recall'))} | {fmt(r.get('rounding_recall'))} "
                f"| {fmt(r.get('open_vowel_openness'))} | {fmt(r.get('false_closure_rate'))} |"
            )
    return [*lines, ""]


def plot_sample(path: Path, uid: str, target: np.ndarray, pred: np.ndarray, title: str) -> None:
    """Predicted vs target jawOpen / mouthClose / mouthFunnel over one utterance → PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = ("jawOpen", "mouthClose", "mouthFunnel")
    t = np.arange(len(target)) / 50.0
    fig, axes = plt.subplots(len(names), 1, figsize=(10, 6), sharex=True)
    for ax, name in zip(axes, names, strict=True):
        j = M.NAMES.index(name)
        ax.plot(t, target[:, j], label="target (teacher)", color="k", lw=1.5)
        ax.plot(t, pred[:, j], label="predicted", color="tab:red", lw=1.2)
        ax.set_ylabel(name)
        ax.set_ylim(-0.02, 1.02)
    axes[0].legend(loc="upper right")
    axes[0].set_title(f"{title} — {uid}")
    axes[-1].set_xlabel("seconds")
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def trained_split_seed(sidecar: dict) -> int:
    """The seed of the split by voice a checkpoint trained on: its ``split_seed``, else its
    ``seed`` (runs before that option), else 0."""
    options = sidecar.get("training", {}).get("options", {})
    seed = options.get("split_seed")
    return options.get("seed", 0) if seed is None else seed


def run_eval(
    checkpoint: str | Path,
    data_path: str | Path,
    out: str | Path | None = None,
    split: str = "test",
    device: str = "cpu",
    frontend: str | None = None,
    seed: int | None = None,
    max_utts: int | None = None,
) -> tuple[dict, Path]:
    """Evaluate on a split of a training-data export (or corpus); write report.md (+ plot.png,
    metrics.json) to ``out`` (default ``eval-NAME`` in the working directory). Returns (result, report path).
    ``seed`` is the seed of the split by voice; default: the one the checkpoint trained with."""
    import json

    from audio2anim.models.checkpoint import read_sidecar

    from .data import load_data

    checkpoint = Path(checkpoint)
    sidecar = read_sidecar(checkpoint)
    data = load_data(data_path)
    train, val, test = data.split(trained_split_seed(sidecar) if seed is None else seed)
    utts = {"train": train, "val": val, "test": test, "all": data.utterances}[split]
    if max_utts:
        utts = utts[:max_utts]
    samples: dict = {}
    result = evaluate(checkpoint, utts, device=device, frontend=frontend, samples=samples)
    result["split"] = split
    out = Path(out) if out else Path(f"eval-{checkpoint.resolve().name}")
    out.mkdir(parents=True, exist_ok=True)
    plot_name = None
    mode = "from_audio" if "from_audio" in samples else ("oracle" if samples else None)
    if mode:
        uid, target, pred = samples[mode]
        plot_name = "plot.png"
        plot_sample(out / plot_name, uid, target, pred, f"{sidecar.get('kind')} ({mode})")
    report = out / "report.md"
    report.write_text(markdown_report(checkpoint, sidecar, result, plot_name))
    from audio2anim.models.checkpoint import jsonable

    (out / "metrics.json").write_text(json.dumps(jsonable(result), indent=1) + "\n")
    return result, report


def relative_frontend(frontend: str, out: str | Path) -> str:
    """How a sidecar refers to its front end: relative to the checkpoint directory."""
    return os.path.relpath(Path(frontend).resolve(), Path(out).resolve())
