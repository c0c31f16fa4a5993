"""Datasets of per-utterance frame arrays, and the original pipeline's dataset steps.

A dataset ("audio2anim-dataset/1") is a folder::

    DATASET/manifest.json   {"format", "corpus" (path of the source corpus), "frame_rate",
                             "arrays": {name: {"names": [...]} | {"classes": [...]} | {}},
                             "utterances": [{"id", "voice", "frames"}]}
    DATASET/shards/<id>.npz one array per name, first axis = frames (same count for all)
    DATASET/stats/<name>.json   normalization statistics (written by `normalize`)
    DATASET/split.json          train/test utterance ids (written by `split`)

Steps (each also an ``audio2anim data`` subcommand, same meaning as the original pipeline):

- `teach`: corpus → arrays ``mouth`` and ``eyes`` (ARKit groups) at a frame rate, from the
  procedural teacher, or from captured animation where the corpus has ``params/<id>.npz``.
- `make_viseme_ids`: corpus phone segments → array ``viseme_ids`` (int64 per frame; -1 =
  no label, for captured takes imported without a transcript).
- `append`: one array over all (or the listed) utterances concatenated, plus ``offsets``
  (utterance boundaries: utterance k is ``data[offsets[k]:offsets[k+1]]``) and ``ids``.
- `softmax`: softmax over the last (feature) axis, numerically stable (max subtracted).
- `normalize`: min-max to [0, 1] or z-score per column; statistics saved in
  ``stats/<name>.json`` and reused by `unnormalize` to map predictions back.
- `split`: train/test by utterance or by voice, seeded; an utterance is never on both sides.
- `info`: hours, voices, per-viseme frame histogram.

`audio2anim train` and `eval` take a dataset folder as ``--data`` (`audio2anim.train.data`):
audio and labels from its source corpus, targets from its ``mouth``/``eyes``, its split.

Every shard and manifest is written to a temporary file and renamed into place.
"""

from __future__ import annotations

import io
import json
import random
from pathlib import Path

import numpy as np

from audio2anim.audio import MODEL_RATE

from .corpus import Corpus, atomic_write_bytes

FORMAT = "audio2anim-dataset/1"


class Dataset:
    """A dataset folder: manifest + shards. Create with `Dataset.create`, open with `Dataset(path)`."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        mpath = self.path / "manifest.json"
        if not mpath.exists():
            raise FileNotFoundError(f"{mpath}: no dataset manifest here")
        try:
            self.manifest = json.loads(mpath.read_text())
        except json.JSONDecodeError as exc:
            raise ValueError(f"{mpath}: not valid JSON ({exc})") from None
        if self.manifest.get("format") != FORMAT:
            raise ValueError(f"{mpath}: format is {self.manifest.get('format')!r}, not {FORMAT!r}")
        for key in ("frame_rate", "arrays", "utterances"):
            if key not in self.manifest:
                raise ValueError(f"{mpath}: lacks field {key!r}")

    @classmethod
    def create(cls, path: str | Path, corpus: str | Path, frame_rate: float, utterances) -> Dataset:
        """A new empty dataset (or the existing one at ``path`` if its frame rate matches)."""
        path = Path(path)
        if (path / "manifest.json").exists():
            ds = cls(path)
            if abs(ds.frame_rate - frame_rate) > 1e-9:
                raise ValueError(
                    f"{path}: dataset is at {ds.frame_rate} Hz, this step asked for {frame_rate} Hz"
                )
            return ds
        (path / "shards").mkdir(parents=True, exist_ok=True)
        manifest = {
            "format": FORMAT,
            "corpus": str(Path(corpus).resolve()),
            "frame_rate": float(frame_rate),
            "arrays": {},
            "utterances": [dict(u) for u in utterances],
        }
        atomic_write_bytes(path / "manifest.json", json.dumps(manifest, indent=1).encode())
        return cls(path)

    @property
    def frame_rate(self) -> float:
        return float(self.manifest["frame_rate"])

    @property
    def utterances(self) -> list[dict]:
        return self.manifest["utterances"]

    @property
    def ids(self) -> list[str]:
        return [u["id"] for u in self.utterances]

    def arrays(self) -> dict:
        return self.manifest["arrays"]

    def save_manifest(self) -> None:
        atomic_write_bytes(
            self.path / "manifest.json", json.dumps(self.manifest, indent=1).encode()
        )

    def load(self, uid: str) -> dict[str, np.ndarray]:
        path = self.path / "shards" / f"{uid}.npz"
        if not path.exists():
            return {}
        with np.load(path, allow_pickle=False) as z:
            return {k: z[k] for k in z.files}

    def array(self, uid: str, name: str) -> np.ndarray:
        shard = self.load(uid)
        if name not in shard:
            raise KeyError(f"{self.path}/shards/{uid}.npz has no array {name!r}")
        return shard[name]

    def put(self, uid: str, arrays: dict[str, np.ndarray]) -> None:
        """Add or replace arrays of one utterance's shard (frame counts must agree)."""
        shard = self.load(uid)
        shard.update(arrays)
        counts = {k: len(v) for k, v in shard.items()}
        if len(set(counts.values())) > 1:
            raise ValueError(f"{self.path}/shards/{uid}.npz: frame counts differ: {counts}")
        buf = io.BytesIO()
        np.savez(buf, **shard)
        atomic_write_bytes(self.path / "shards" / f"{uid}.npz", buf.getvalue())

    def declare(self, name: str, meta: dict) -> None:
        self.manifest["arrays"][name] = meta
        self.save_manifest()


def frame_count(duration: float, frame_rate: float, sample_rate: int = MODEL_RATE) -> int:
    """Frames of an utterance, computed exactly as the teacher does from the sample count
    (``int(samples / sample_rate * frame_rate)``); the manifest's duration is rounded."""
    samples = round(duration * sample_rate)
    return int(samples / sample_rate * frame_rate)


def _corpus_dataset(corpus: Corpus, out, frame_rate: float) -> Dataset:
    utts = [
        {
            "id": u.id,
            "voice": u.voice,
            "frames": frame_count(u.duration, frame_rate, corpus.sample_rate),
        }
        for u in corpus.utterances
    ]
    ds = Dataset.create(out, corpus.path, frame_rate, utts)
    known = set(ds.ids)
    missing = [u for u in utts if u["id"] not in known]
    if missing:  # the corpus grew since: extend the dataset's utterance list
        ds.manifest["utterances"].extend(missing)
        ds.save_manifest()
    return ds


# ---------------------------------------------------------------------------- teach


def resample_params(values: np.ndarray, src_rate: float, dst_rate: float, n_out: int) -> np.ndarray:
    """Linear interpolation of [T, n] values from ``src_rate`` to ``n_out`` frames at ``dst_rate``."""
    values = np.asarray(values, dtype=np.float64)
    if len(values) == 0:
        return np.zeros((n_out, values.shape[1]), dtype=np.float32)
    src_t = (np.arange(len(values)) + 0.5) / src_rate
    dst_t = (np.arange(n_out) + 0.5) / dst_rate
    out = np.stack([np.interp(dst_t, src_t, values[:, j]) for j in range(values.shape[1])], axis=1)
    return out.astype(np.float32)


def captured_groups(params: dict, frame_rate: float, n_frames: int) -> dict[str, np.ndarray]:
    """Captured params {"names", "values", "frame_rate"} → {"mouth", "eyes"} at ``frame_rate``."""
    from audio2anim import arkit

    col = {name: j for j, name in enumerate(params["names"])}
    values = resample_params(params["values"], params["frame_rate"], frame_rate, n_frames)
    out = {}
    for group, names in arkit.GROUPS.items():
        missing = [n for n in names if n not in col]
        if missing:
            raise ValueError(f"captured params lack {missing}")
        out[group] = np.clip(values[:, [col[n] for n in names]], 0.0, 1.0).astype(np.float32)
    return out


def _teach_one(job):
    corpus_path, uid, frame_rate, seed = job
    from .teacher import animate

    corpus = Corpus(corpus_path)
    n = frame_count(corpus.utterance(uid).duration, frame_rate, corpus.sample_rate)
    captured = corpus.params(uid)
    if captured is not None:
        return uid, captured_groups(captured, frame_rate, n), "captured"
    audio = corpus.audio(uid)
    out = animate(
        corpus.phones(uid), corpus.phoneset(uid), audio, corpus.sample_rate, frame_rate, seed
    )
    return uid, {k: v[:n] for k, v in out.items()}, "teacher"


def teach(corpus_path, out, frame_rate: float = 50.0, seed: int = 0, workers: int = 1,
          progress: bool = True) -> dict:  # fmt: skip
    """Corpus → dataset arrays ``mouth``/``eyes`` (teacher, or captured where present)."""
    import zlib

    from tqdm import tqdm

    from audio2anim import arkit

    corpus = Corpus(corpus_path)
    ds = _corpus_dataset(corpus, out, frame_rate)
    # the per-utterance seed mixes the id in, so utterances do not all blink alike
    jobs = [(str(corpus.path), u.id, frame_rate, seed * 7919 + zlib.crc32(u.id.encode()))
            for u in corpus.utterances]  # fmt: skip
    counts = {"teacher": 0, "captured": 0}
    bar = tqdm(total=len(jobs), unit="utt", desc="teach", disable=not progress)
    if workers <= 1:
        results = map(_teach_one, jobs)
    else:
        import multiprocessing

        pool = multiprocessing.get_context("fork").Pool(workers)
        results = pool.imap_unordered(_teach_one, jobs, chunksize=4)
    try:
        for uid, arrays, kind in results:
            ds.put(uid, arrays)
            counts[kind] += 1
            bar.update()
    finally:
        if workers > 1:
            pool.close()
            pool.join()
        bar.close()
    ds.manifest["arrays"]["mouth"] = {"names": list(arkit.MOUTH)}
    ds.manifest["arrays"]["eyes"] = {"names": list(arkit.EYES)}
    ds.manifest["teacher_seed"] = seed
    ds.save_manifest()
    return counts


# ---------------------------------------------------------------------------- visemes


def make_viseme_ids(corpus_path, out, frame_rate: float = 50.0, progress: bool = True) -> int:
    """Corpus phone segments → array ``viseme_ids`` [T] int64 per utterance. Returns count."""
    from tqdm import tqdm

    from audio2anim.visemes import VISEMES, viseme_ids

    corpus = Corpus(corpus_path)
    ds = _corpus_dataset(corpus, out, frame_rate)
    for utt in tqdm(corpus.utterances, unit="utt", desc="visemes", disable=not progress):
        n = frame_count(utt.duration, frame_rate, corpus.sample_rate)
        if utt.augment.get("phones") == "none":  # captured take without transcript: no labels
            ds.put(utt.id, {"viseme_ids": np.full(n, -1, dtype=np.int64)})
            continue
        try:
            ids = viseme_ids(corpus.phones(utt.id), utt.phoneset, frame_rate, n)
        except ValueError as exc:
            raise ValueError(f"{corpus.path}/phones/{utt.id}.tsv: {exc}") from None
        ds.put(utt.id, {"viseme_ids": ids})
    ds.declare("viseme_ids", {"classes": list(VISEMES)})
    return len(corpus.utterances)


# ---------------------------------------------------------------------------- append


def _select(ds: Dataset, ids: list[str] | None) -> list[str]:
    if ids is None:
        return ds.ids
    known = set(ds.ids)
    unknown = [i for i in ids if i not in known]
    if unknown:
        raise ValueError(f"{ds.path}: unknown utterance ids {unknown[:5]}")
    return list(ids)


def append(ds: Dataset, name: str, ids: list[str] | None = None) -> dict[str, np.ndarray]:
    """Concatenate array ``name`` over utterances → {"data", "offsets" [n+1], "ids" [n]}."""
    if name not in ds.arrays():
        raise ValueError(f"{ds.path}: no array {name!r} (have {sorted(ds.arrays())})")
    chosen = _select(ds, ids)
    parts = [ds.array(uid, name) for uid in chosen]
    offsets = np.zeros(len(parts) + 1, dtype=np.int64)
    offsets[1:] = np.cumsum([len(p) for p in parts])
    data = np.concatenate(parts) if parts else np.zeros((0,))
    return {"data": data, "offsets": offsets, "ids": np.array(chosen, dtype=str)}


def split_appended(appended: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Inverse of `append`: {id: per-utterance array}."""
    o = appended["offsets"]
    return {str(uid): appended["data"][o[k] : o[k + 1]] for k, uid in enumerate(appended["ids"])}


# ---------------------------------------------------------------------------- softmax


def softmax(x: np.ndarray, axis: int = -1, temperature: float = 1.0) -> np.ndarray:
    """Softmax over ``axis``; the max is subtracted first so large logits do not overflow."""
    z = np.asarray(x, dtype=np.float64) / temperature
    z = z - np.max(z, axis=axis, keepdims=True)
    e = np.exp(z)
    return (e / np.sum(e, axis=axis, keepdims=True)).astype(np.float32)


def softmax_array(ds: Dataset, name: str, out_name: str, temperature: float = 1.0) -> int:
    """Dataset step: ``out_name`` = softmax of array ``name`` over its feature axis."""
    if name not in ds.arrays():
        raise ValueError(f"{ds.path}: no array {name!r} (have {sorted(ds.arrays())})")
    for uid in ds.ids:
        x = ds.array(uid, name)
        if x.ndim != 2:
            raise ValueError(
                f"{ds.path}/shards/{uid}.npz: {name} is {x.ndim}-D, softmax needs [T, D]"
            )
        ds.put(uid, {out_name: softmax(x, -1, temperature)})
    ds.declare(out_name, {**ds.arrays()[name], "softmax_of": name, "temperature": temperature})
    return len(ds.ids)


# ---------------------------------------------------------------------------- normalize


def fit_stats(data: np.ndarray, method: str) -> dict:
    """Per-column statistics of [N, D] data for ``method`` "minmax" or "zscore"."""
    data = np.asarray(data, dtype=np.float64)
    if method == "minmax":
        lo, hi = data.min(axis=0), data.max(axis=0)
        return {"method": method, "min": lo.tolist(), "max": hi.tolist()}
    if method == "zscore":
        return {
            "method": method,
            "mean": data.mean(axis=0).tolist(),
            "std": data.std(axis=0).tolist(),
        }
    raise ValueError(f"normalize: unknown method {method!r} (expected minmax or zscore)")


def _scale(stats: dict) -> tuple[np.ndarray, np.ndarray]:
    """(offset, scale) with normalized = (x - offset) / scale; constant columns get scale 1."""
    if stats["method"] == "minmax":
        lo, hi = np.array(stats["min"]), np.array(stats["max"])
        span = hi - lo
        return lo, np.where(span > 1e-12, span, 1.0)
    mean, std = np.array(stats["mean"]), np.array(stats["std"])
    return mean, np.where(std > 1e-12, std, 1.0)


def normalize_values(x: np.ndarray, stats: dict) -> np.ndarray:
    offset, scale = _scale(stats)
    return ((np.asarray(x, dtype=np.float64) - offset) / scale).astype(np.float32)


def unnormalize(y: np.ndarray, stats: dict) -> np.ndarray:
    """Map normalized values (e.g. a model's predictions) back to the original units."""
    offset, scale = _scale(stats)
    return (np.asarray(y, dtype=np.float64) * scale + offset).astype(np.float32)


def load_stats(ds_or_path, name: str) -> dict:
    path = (ds_or_path.path if isinstance(ds_or_path, Dataset) else Path(ds_or_path)) / "stats"
    path = path / f"{name}.json"
    if not path.exists():
        raise FileNotFoundError(f"{path}: no normalization statistics (run `data normalize` first)")
    return json.loads(path.read_text())


def normalize(ds: Dataset, name: str, method: str = "minmax", out_name: str | None = None,
              fit_ids: list[str] | None = None) -> dict:  # fmt: skip
    """Fit stats on ``fit_ids`` (default all, e.g. the train split), save them, write normalized.

    Writes ``stats/<name>.json`` and array ``out_name`` (default ``<name>_norm``) in every shard.
    """
    out_name = out_name or f"{name}_norm"
    stacked = append(ds, name, fit_ids)["data"]
    if stacked.ndim == 1:
        stacked = stacked[:, None]
    stats = fit_stats(stacked, method)
    stats.update({"array": name, "fit_utterances": len(_select(ds, fit_ids))})
    atomic_write_bytes(ds.path / "stats" / f"{name}.json", json.dumps(stats, indent=1).encode())
    for uid in ds.ids:
        x = ds.array(uid, name)
        y = normalize_values(x if x.ndim > 1 else x[:, None], stats)
        ds.put(uid, {out_name: y if x.ndim > 1 else y[:, 0]})
    ds.declare(
        out_name, {**ds.arrays()[name], "normalized_from": name, "stats": f"stats/{name}.json"}
    )
    return stats


# ---------------------------------------------------------------------------- split


def split(utterances: list[dict], by: str = "utterance", test_fraction: float = 0.1,
          seed: int = 0) -> dict:  # fmt: skip
    """Seeded train/test split of utterances ({"id", "voice"}), by utterance or by voice.

    By voice, whole voices go to test (at least one, at least one left for train), so the
    test set measures generalization to unseen speakers. Never splits inside an utterance.
    """
    if not 0.0 < test_fraction < 1.0:
        raise ValueError(f"split: test fraction must be in (0, 1), got {test_fraction}")
    rng = random.Random(seed)
    if by == "utterance":
        ids = sorted(u["id"] for u in utterances)
        rng.shuffle(ids)
        n_test = max(1, round(test_fraction * len(ids))) if len(ids) > 1 else 0
        test = set(ids[:n_test])
    elif by == "voice":
        voices = sorted({u["voice"] for u in utterances})
        if len(voices) < 2:
            raise ValueError(f"split by voice needs at least 2 voices, the data has {voices}")
        rng.shuffle(voices)
        n_test = min(len(voices) - 1, max(1, round(test_fraction * len(voices))))
        test_voices = set(voices[:n_test])
        test = {u["id"] for u in utterances if u["voice"] in test_voices}
    else:
        raise ValueError(f"split: 'by' must be utterance or voice, got {by!r}")
    return {
        "by": by,
        "seed": seed,
        "test_fraction": test_fraction,
        "train": [u["id"] for u in utterances if u["id"] not in test],
        "test": [u["id"] for u in utterances if u["id"] in test],
        "test_voices": sorted({u["voice"] for u in utterances if u["id"] in test}),
    }


def write_split(ds: Dataset, by: str, test_fraction: float, seed: int) -> dict:
    result = split(ds.utterances, by, test_fraction, seed)
    atomic_write_bytes(ds.path / "split.json", json.dumps(result, indent=1).encode())
    return result


def read_split(path: str | Path) -> dict:
    path = Path(path)
    if path.is_dir():
        path = path / "split.json"
    if not path.exists():
        raise FileNotFoundError(f"{path}: no split (run `data split` first)")
    return json.loads(path.read_text())


# ---------------------------------------------------------------------------- info


def info(path: str | Path, frame_rate: float = 50.0) -> dict:
    """Summary of a corpus or a dataset: utterances, hours, voices, viseme frame histogram."""
    from audio2anim.visemes import VISEMES, viseme_ids

    path = Path(path)
    manifest = (
        json.loads((path / "manifest.json").read_text())
        if (path / "manifest.json").exists()
        else {}
    )
    hist = np.zeros(len(VISEMES), dtype=np.int64)
    if manifest.get("format") == FORMAT:
        ds = Dataset(path)
        durations = {u["id"]: u["frames"] / ds.frame_rate for u in ds.utterances}
        voices = {u["voice"] for u in ds.utterances}
        if "viseme_ids" in ds.arrays():
            for uid in ds.ids:
                ids = ds.array(uid, "viseme_ids")
                hist += np.bincount(ids[ids >= 0], minlength=len(VISEMES))
        kind, arrays = "dataset", sorted(ds.arrays())
    else:
        corpus = Corpus(path)
        durations = {u.id: u.duration for u in corpus.utterances}
        voices = set(corpus.voices())
        for utt in corpus.utterances:
            n = frame_count(utt.duration, frame_rate, corpus.sample_rate)
            if utt.augment.get("phones") == "none":
                continue
            hist += np.bincount(viseme_ids(corpus.phones(utt.id), utt.phoneset, frame_rate, n),
                                minlength=len(VISEMES))  # fmt: skip
        kind, arrays = "corpus", []
    per_voice: dict[str, float] = {}
    voice_of = {u["id"]: u["voice"] for u in manifest.get("utterances", [])}
    for uid, d in durations.items():
        per_voice[voice_of.get(uid, "?")] = per_voice.get(voice_of.get(uid, "?"), 0.0) + d
    return {
        "kind": kind,
        "utterances": len(durations),
        "hours": sum(durations.values()) / 3600.0,
        "voices": sorted(voices),
        "hours_per_voice": {v: h / 3600.0 for v, h in sorted(per_voice.items())},
        "viseme_frames": dict(zip(VISEMES, hist.tolist(), strict=True)),
        "arrays": arrays,
    }
