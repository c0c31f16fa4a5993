"""A small synthetic training-data export, for tests and dry runs of the training scripts.

Not speech: each "phone" is a 60–200 ms segment whose sound is two sinusoids with
viseme-specific frequencies (shifted per voice) plus noise, and whose targets are a fixed
random pose per viseme, smoothed in time (a crude coarticulation), with slow eye motion.
A model that learns anything from audio learns it here within a few steps, so the tests can
check that losses fall and the training scripts can be exercised end to end on a CPU.

    write_synthetic_export("/tmp/synth", voices=3, utterances_per_voice=4, seconds=3.0)
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from audio2anim.visemes import N_VISEMES

from .data import FRAME_RATE, HOP, PARAM_NAMES, SAMPLE_RATE, write_meta, write_shard

# CTC label of a viseme's representative phone (PHONE_VOCAB ids): sil, P, F, TH, D, K, CH, S,
# N, R, AA, EH, IH, OW, UW
_LABEL_OF_VISEME = (1, 28, 15, 33, 10, 21, 9, 30, 24, 29, 2, 12, 18, 26, 35)
_CLASS_OF_VISEME = {1: 1, 13: 2, 14: 2, 10: 3, 11: 3}  # bilabial, rounded, open


def _poses(rng: np.random.Generator) -> np.ndarray:
    n_out = len(PARAM_NAMES)
    poses = rng.uniform(0.0, 0.3, (N_VISEMES, n_out)).astype(np.float32)
    ix = {n: i for i, n in enumerate(PARAM_NAMES)}
    poses[0, :] = 0.02  # silence: neutral
    poses[:, ix["jawOpen"]] = np.linspace(0.1, 0.7, N_VISEMES)
    poses[1, ix["jawOpen"]] = poses[1, ix["mouthClose"]] = 0.15  # PP: lips shut
    for k in ("mouthLowerDownLeft", "mouthLowerDownRight", "mouthUpperUpLeft", "mouthUpperUpRight"):
        poses[1, ix[k]] = 0.0
    poses[13, ix["mouthFunnel"]] = poses[14, ix["mouthPucker"]] = 0.7  # oh, ou rounded
    return poses


def synthetic_utterance(
    rng: np.random.Generator, poses: np.ndarray, voice_shift: float, seconds: float
) -> dict:
    """One synthetic utterance as the arrays `audio2anim.train.data.write_shard` takes."""
    frames = int(seconds * FRAME_RATE)
    n = frames * HOP
    t_end = n / SAMPLE_RATE
    starts, ends, vis = [], [], []
    t = 0.0
    while t < t_end:
        d = float(rng.uniform(0.06, 0.2))
        v = 0 if rng.random() < 0.15 else int(rng.integers(1, N_VISEMES))
        starts.append(t)
        ends.append(min(t + d, t_end))
        vis.append(v)
        t += d
    audio = np.zeros(n, np.float32)
    time = np.arange(n) / SAMPLE_RATE
    for s, e, v in zip(starts, ends, vis, strict=True):
        a, b = int(s * SAMPLE_RATE), int(e * SAMPLE_RATE)
        if v == 0:
            audio[a:b] = rng.normal(0, 0.003, b - a)
            continue
        f1, f2 = (150 + 40 * v) * voice_shift, (900 + 130 * v) * voice_shift
        audio[a:b] = 0.3 * np.sin(2 * np.pi * f1 * time[a:b]) + 0.15 * np.sin(
            2 * np.pi * f2 * time[a:b]
        )
    audio += rng.normal(0, 0.002, n).astype(np.float32)
    ends_arr = np.array(ends)

    def ids_at(rate: float, count: int) -> np.ndarray:
        centers = (np.arange(count) + 0.5) / rate
        idx = np.minimum(np.searchsorted(ends_arr, centers, side="right"), len(vis) - 1)
        return np.array(vis)[idx]

    vis50 = ids_at(FRAME_RATE, frames)
    raw = poses[vis50]
    targets = np.zeros_like(raw)
    acc = raw[0]
    for i in range(frames):  # first-order smoothing ≈ coarticulation
        acc = 0.6 * acc + 0.4 * raw[i]
        targets[i] = acc
    eyes = slice(19, len(PARAM_NAMES))
    phase = rng.uniform(0, 2 * np.pi, len(PARAM_NAMES))[eyes]
    targets[:, eyes] = 0.2 + 0.1 * np.sin(np.arange(frames)[:, None] / 25.0 + phase)
    return {
        "audio": np.clip(audio, -1, 1).astype(np.float32),
        "targets": np.clip(targets, 0, 1).astype(np.float32),
        "vis100": ids_at(100.0, 2 * frames),
        "vis50": vis50,
        "seg_start": np.array(starts, np.float32),
        "seg_end": np.array(ends, np.float32),
        "seg_class": np.array([_CLASS_OF_VISEME.get(v, 0) for v in vis], np.uint8),
        "seg_label": np.array([_LABEL_OF_VISEME[v] for v in vis], np.uint8),
    }


def write_synthetic_export(
    out: str | Path,
    voices: int = 3,
    utterances_per_voice: int = 4,
    seconds: float = 3.0,
    seed: int = 0,
    voice_prefix: str = "synth",
) -> dict:
    """Write a synthetic training-data export to ``out`` (voices ``<voice_prefix>0``, …);
    returns its export.json dict."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    poses = _poses(rng)
    names = [f"{voice_prefix}{v}" for v in range(voices)]
    items, entries = [], []
    for v, name in enumerate(names):
        shift = 0.85 + 0.3 * v / max(1, voices - 1)
        for k in range(utterances_per_voice):
            arrays = synthetic_utterance(rng, poses, shift, seconds)
            items.append((name, arrays))
            entries.append(
                {
                    "id": f"{name}-{k:03d}",
                    "voice": name,
                    "duration": len(arrays["audio"]) / SAMPLE_RATE,
                    "shard": "shard-000.npz",
                    "augment": {},
                }
            )
    size = write_shard(out / "shard-000.npz", items, names)
    return write_meta(out, names, entries, {"corpus": "synthetic", "seed": seed, "bytes": size})
