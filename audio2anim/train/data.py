"""Training data: a compact export of a corpus, and its loader.

`export_data` reads a corpus (``audio2anim.data.corpus.Corpus``) and writes, per utterance,
everything training and evaluation need — so the training machine needs neither the corpus,
nor the teacher, nor soundfile: only numpy.

    OUT/export.json        format "audio2anim-trainingdata/1", names, vocab, voices,
                           utterances [{id, voice, duration, shard, augment}], summary
    OUT/shard-NNN.mulaw.xz 8-bit µ-law audio at 16 kHz, lzma-compressed (stdlib), the
                           shard's utterances concatenated (each cut to a multiple of 320)
    OUT/shard-NNN.npz      (np.savez_compressed, no pickled objects) per shard, concatenated
                           over its utterances:
        targets    uint8   [frames, 30] parameters (MOUTH then EYES) at 50 Hz, round(255 v)
        vis100     uint8   viseme ID per 10 ms frame (labels of the viseme front end)
        vis50      uint8   viseme ID per 20 ms frame (inputs of the viseme predictors)
        seg_start, seg_end float32, seg_class uint8 (0 none, 1 bilabial, 2 rounded, 3 open),
        seg_label  uint8   CTC phone id (`audio2anim.models.wav2vec.PHONE_VOCAB`)
        utt_samples int64, utt_segments int32, utt_voice int16   per utterance

8-bit µ-law keeps speech intelligible at half the size of int16 (the front ends are trained
with noise augmentation far above its quantization noise); lzma takes another ~25 % (about 42 MiB per hour of TTS speech).
``max_mb`` caps the export (clean utterances first, voices interleaved, then augmented ones)
so it fits the 64 MiB working tree sent to the GPU machine.

`load_data(path)` accepts an export directory, a corpus directory, or a dataset directory
(``audio2anim data make-viseme-ids / teach / split``). For a corpus it exports (unbounded) into
``CORPUS/cache/training-data`` first and reuses that cache while the manifest is unchanged. A
dataset reads its source corpus that way, keeps the dataset's utterances, takes its ``mouth``
and ``eyes`` arrays as the targets (when it has both; they must be at 50 Hz) and, when it has
a ``split.json`` (`data split`), uses that split: its train ids train, its test ids are the
validation and test side.
"""

from __future__ import annotations

import hashlib
import json
import lzma
import random
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from audio2anim import arkit
from audio2anim.audio import MODEL_RATE as SAMPLE_RATE

FORMAT = "audio2anim-trainingdata/1"
FRAME_RATE = 50  # parameter / wav2vec2 frame rate
HOP = SAMPLE_RATE // FRAME_RATE  # 320 samples
PARAM_NAMES: tuple[str, ...] = arkit.MOUTH + arkit.EYES
CLASS_CODES = {None: 0, "bilabial": 1, "rounded": 2, "open": 3}
DATASET_FORMAT = "audio2anim-dataset/1"  # audio2anim.data.dataset (not imported: numpy only here)
MU = 255.0


def mulaw_encode(x: np.ndarray) -> np.ndarray:
    """float [-1, 1] → uint8 µ-law (µ = 255)."""
    x = np.clip(np.asarray(x, np.float32), -1.0, 1.0)
    y = np.sign(x) * np.log1p(MU * np.abs(x)) / np.log1p(MU)
    return np.round((y + 1.0) * 127.5).astype(np.uint8)


def mulaw_decode(q: np.ndarray) -> np.ndarray:
    """uint8 µ-law → float32 in [-1, 1]."""
    y = q.astype(np.float32) / 127.5 - 1.0
    return (np.sign(y) * np.expm1(np.abs(y) * np.log1p(MU)) / MU).astype(np.float32)


@dataclass
class Utterance:
    """One utterance of the training data, decoded."""

    id: str
    voice: str
    audio: np.ndarray  # float32 [n], n = 320 * frames
    targets: np.ndarray  # float32 [frames, 30] in [0, 1]
    vis100: np.ndarray  # int64 [2 * frames]
    vis50: np.ndarray  # int64 [frames]
    seg_start: np.ndarray
    seg_end: np.ndarray
    seg_class: np.ndarray
    seg_label: np.ndarray
    augment: dict = field(default_factory=dict)

    @property
    def frames(self) -> int:
        return len(self.vis50)

    def ctc_labels(self) -> np.ndarray:
        """Phone-id sequence for CTC: segment labels with repeated ``sil`` collapsed."""
        lab = self.seg_label.astype(np.int64)
        if len(lab) == 0:
            return lab
        keep = np.ones(len(lab), bool)
        keep[1:] = ~((lab[1:] == 1) & (lab[:-1] == 1))
        lab = lab[keep]
        # leading/trailing silence carries no information for CTC
        while len(lab) and lab[0] == 1:
            lab = lab[1:]
        while len(lab) and lab[-1] == 1:
            lab = lab[:-1]
        return lab


def utterance_arrays(corpus, utt) -> dict:
    """Compute the exported arrays of one corpus utterance (teacher targets unless captured);
    audio at any corpus rate is resampled to 16 kHz."""
    from audio2anim import visemes
    from audio2anim.data import teacher
    from audio2anim.models.wav2vec import phone_label

    uid, phoneset = utt.id, utt.phoneset
    audio = np.asarray(corpus.audio(uid), np.float32)
    if corpus.sample_rate != SAMPLE_RATE:  # e.g. a corpus of 48 kHz recordings
        import soxr

        audio = soxr.resample(audio, corpus.sample_rate, SAMPLE_RATE).astype(np.float32)
    frames = len(audio) // HOP
    audio = audio[: frames * HOP]
    segments = corpus.phones(uid)
    captured = corpus.params(uid)
    if captured is not None:
        targets = _captured_targets(captured, frames, f"{corpus.path}/params/{uid}.npz")
    else:
        seed = int(hashlib.sha1(uid.encode()).hexdigest()[:8], 16)
        anim = teacher.animate(segments, phoneset, audio, SAMPLE_RATE, FRAME_RATE, seed=seed)
        targets = np.concatenate([anim["mouth"], anim["eyes"]], axis=1)
    targets = _fit_length(np.asarray(targets, np.float32), frames)
    return {
        "audio": audio,
        "targets": np.clip(targets, 0.0, 1.0),
        "vis100": visemes.viseme_ids(segments, phoneset, 100, 2 * frames),
        "vis50": visemes.viseme_ids(segments, phoneset, FRAME_RATE, frames),
        "seg_start": np.array([s.start for s in segments], np.float32),
        "seg_end": np.array([s.end for s in segments], np.float32),
        "seg_class": np.array(
            [CLASS_CODES[visemes.phone_class(s.phone, phoneset)] for s in segments], np.uint8
        ),
        "seg_label": np.array([phone_label(s.phone, phoneset) for s in segments], np.uint8),
    }


def _fit_length(a: np.ndarray, n: int) -> np.ndarray:
    if len(a) >= n:
        return a[:n]
    pad = np.repeat(a[-1:] if len(a) else np.zeros((1, a.shape[1]), a.dtype), n - len(a), 0)
    return np.concatenate([a, pad])


def _captured_targets(captured: dict, frames: int, where: str) -> np.ndarray:
    """Captured {"names", "values", "frame_rate"} → [frames, 30] at 50 Hz (linear interp.)."""
    names = list(captured["names"])
    values = np.asarray(captured["values"], np.float32)
    rate = float(captured["frame_rate"])
    if values.ndim != 2 or values.shape[1] != len(names):
        raise ValueError(f"{where}: values shape {values.shape} does not match {len(names)} names")
    src_t = np.arange(len(values)) / rate
    dst_t = np.arange(frames) / FRAME_RATE
    out = np.zeros((frames, len(PARAM_NAMES)), np.float32)
    for j, name in enumerate(PARAM_NAMES):
        if name in names:
            out[:, j] = np.interp(dst_t, src_t, values[:, names.index(name)])
    return out


def _ordered(utterances: list, seed: int) -> list:
    """Clean utterances first, then augmented; within each, voices interleaved (seeded)."""
    rng = random.Random(seed)
    out = []
    for augmented in (False, True):
        by_voice: dict[str, list] = {}
        for u in utterances:
            if bool(u.augment) == augmented:
                by_voice.setdefault(u.voice, []).append(u)
        for lst in by_voice.values():
            rng.shuffle(lst)
        queues = [by_voice[v] for v in sorted(by_voice)]
        while any(queues):
            for q in queues:
                if q:
                    out.append(q.pop())
    return out


def _manifest_hash(corpus_path: Path) -> str:
    return hashlib.sha1((corpus_path / "manifest.json").read_bytes()).hexdigest()


def export_data(
    corpus_path: str | Path,
    out: str | Path,
    max_mb: float | None = 40.0,
    shard_seconds: float = 600.0,
    seed: int = 0,
) -> dict:
    """Export a corpus to ``out`` (see the module docstring); returns the export.json dict."""
    from tqdm import tqdm

    from audio2anim.data.corpus import Corpus

    if max_mb is not None and max_mb <= 0:
        raise ValueError(f"the size cap must be positive (MiB), got {max_mb:g}")
    corpus_path = Path(corpus_path)
    corpus = Corpus(corpus_path)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    for old in [*out.glob("shard-*.npz"), *out.glob("shard-*.mulaw.xz")]:
        old.unlink()
    order = _ordered(list(corpus.utterances), seed)
    budget = None if max_mb is None else max_mb * 2**20
    voices = sorted({u.voice for u in order})
    entries: list[dict] = []
    total_bytes = 0
    bytes_per_sample = 0.8  # lzma µ-law of TTS speech ≈ 0.73; refined after each shard
    pending: list[tuple] = []
    pending_samples = 0
    stopped_by_budget = False

    def flush_shard() -> None:
        nonlocal total_bytes, bytes_per_sample, pending, pending_samples
        if not pending:
            return
        path = out / f"shard-{len({e['shard'] for e in entries}):03d}.npz"
        size = write_shard(path, [(u.voice, a) for u, a in pending], voices)
        total_bytes += size
        bytes_per_sample = size / max(1, pending_samples)
        for u, a in pending:
            entries.append(
                {
                    "id": u.id,
                    "voice": u.voice,
                    "duration": len(a["audio"]) / SAMPLE_RATE,
                    "shard": path.name,
                    "augment": u.augment,
                }
            )
        pending, pending_samples = [], 0

    for u in tqdm(order, desc="export", unit="utt"):
        if budget is not None:
            # 3 % margin: a shard compresses a little differently from the last one
            estimate = (
                total_bytes + (pending_samples + u.duration * SAMPLE_RATE) * bytes_per_sample * 1.03
            )
            if estimate > budget:
                stopped_by_budget = True
                break
        try:
            arrays = utterance_arrays(corpus, u)
        except ValueError as e:
            raise ValueError(f"{corpus_path}: utterance {u.id!r}: {e}") from None
        if len(arrays["vis50"]) == 0:
            continue
        pending.append((u, arrays))
        pending_samples += len(arrays["audio"])
        if pending_samples >= shard_seconds * SAMPLE_RATE:
            flush_shard()
    flush_shard()
    summary = {
        "corpus": str(corpus_path),
        "corpus_manifest_sha1": _manifest_hash(corpus_path),
        "corpus_hours": round(corpus.hours(), 4),
        "corpus_utterances": len(corpus.utterances),
        "max_mb": max_mb,
        "cut_by_budget": stopped_by_budget,
        "bytes": total_bytes,
    }
    return write_meta(out, voices, entries, summary)


def write_shard(path: Path, items: list[tuple[str, dict]], voices: list[str]) -> int:
    """Write one shard of (voice, `utterance_arrays` dict) items; returns its size in bytes."""
    arrays = [a for _, a in items]
    audio_path = _audio_path(path)
    audio = mulaw_encode(np.concatenate([a["audio"] for a in arrays])).tobytes()
    audio_path.write_bytes(lzma.compress(audio, preset=6))
    np.savez_compressed(
        path,
        targets=np.round(np.concatenate([a["targets"] for a in arrays]) * 255).astype(np.uint8),
        vis100=np.concatenate([a["vis100"] for a in arrays]).astype(np.uint8),
        vis50=np.concatenate([a["vis50"] for a in arrays]).astype(np.uint8),
        seg_start=np.concatenate([a["seg_start"] for a in arrays]).astype(np.float32),
        seg_end=np.concatenate([a["seg_end"] for a in arrays]).astype(np.float32),
        seg_class=np.concatenate([a["seg_class"] for a in arrays]).astype(np.uint8),
        seg_label=np.concatenate([a["seg_label"] for a in arrays]).astype(np.uint8),
        utt_samples=np.array([len(a["audio"]) for a in arrays], np.int64),
        utt_segments=np.array([len(a["seg_start"]) for a in arrays], np.int32),
        utt_voice=np.array([voices.index(v) for v, _ in items], np.int16),
    )
    return path.stat().st_size + audio_path.stat().st_size


def _audio_path(shard: Path) -> Path:
    return shard.with_name(shard.stem + ".mulaw.xz")


def write_meta(out: Path, voices: list[str], entries: list[dict], summary: dict) -> dict:
    """Write export.json for shards already written; returns it."""
    hours = sum(e["duration"] for e in entries) / 3600
    per_voice: dict[str, float] = {}
    for e in entries:
        per_voice[e["voice"]] = per_voice.get(e["voice"], 0.0) + e["duration"] / 3600
    meta = {
        "format": FORMAT,
        "sample_rate": SAMPLE_RATE,
        "frame_rate": FRAME_RATE,
        "audio_codec": "mulaw8",
        "param_names": list(PARAM_NAMES),
        "groups": {"mouth": list(arkit.MOUTH), "eyes": list(arkit.EYES)},
        "voices": voices,
        "utterances": entries,
        "summary": {
            **summary,
            "hours": round(hours, 4),
            "utterances": len(entries),
            "hours_per_voice": {k: round(v, 4) for k, v in sorted(per_voice.items())},
            "augmented_utterances": sum(bool(e["augment"]) for e in entries),
            "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        },
    }
    (out / "export.json").write_text(json.dumps(meta, indent=1) + "\n")
    return meta


@dataclass
class TrainingData:
    """All utterances of an export, decoded, plus its metadata."""

    meta: dict
    utterances: list[Utterance]
    path: Path
    # utterances of other exports that only ever train (``--add-train``): outside the split by
    # voice, so adding them never moves a validation or test voice
    train_only: list[Utterance] = field(default_factory=list)
    train_only_from: list[dict] = field(default_factory=list)
    # a dataset's `data split` ({"train": ids, "test": ids}): replaces the split by voice
    fixed_split: dict | None = None

    @property
    def voices(self) -> list[str]:
        return sorted({u.voice for u in self.utterances})

    def add_train(self, other: TrainingData) -> None:
        """Put every utterance of ``other`` (an export of the same format) on the train side."""
        for key in ("param_names", "frame_rate"):
            if other.meta.get(key) != self.meta.get(key):
                raise ValueError(
                    f"{other.path}: field {key!r} differs from {self.path}'s: "
                    f"{other.meta.get(key)!r} vs {self.meta.get(key)!r}"
                )
        shared = set(self.voices) & set(other.voices)
        if shared:  # the split by voice may hold that voice out: it must not train too
            raise ValueError(
                f"{other.path}: voice {sorted(shared)[0]!r} is also in {self.path}; an export "
                "added for training needs voices of its own"
            )
        self.train_only += other.utterances
        self.train_only_from.append({"export": str(other.path), **other.meta.get("summary", {})})

    def split(self, seed: int = 0) -> tuple[list[Utterance], list[Utterance], list[Utterance]]:
        """(train, val, test) split by voice: ~15 % of voices each for val and test (≥ 1 each;
        with fewer than 3 voices, val = test = the last voice and — if only one voice — a
        deterministic 80/20 split of its utterances instead). Data read from a dataset with a
        ``split.json`` uses that split (``seed`` unused): train ids train, test ids are both
        the validation and the test side."""
        if self.fixed_split is not None:
            train_ids, test_ids = set(self.fixed_split["train"]), set(self.fixed_split["test"])
            train = [u for u in self.utterances if u.id in train_ids]
            test = [u for u in self.utterances if u.id in test_ids]
            return train + self.train_only, test, test
        voices = self.voices
        rng = random.Random(seed)
        shuffled = voices[:]
        rng.shuffle(shuffled)
        if len(voices) == 1:
            utts = sorted(self.utterances, key=lambda u: u.id)
            rng.shuffle(utts)
            cut = max(1, len(utts) // 5)
            held = utts[:cut]
            return (utts[cut:] or held) + self.train_only, held, held
        if len(voices) == 2:
            test_v = val_v = {shuffled[0]}
        else:
            k = max(1, round(0.15 * len(voices)))
            test_v = set(shuffled[:k])
            val_v = set(shuffled[k : 2 * k])
        train = [u for u in self.utterances if u.voice not in test_v | val_v]
        val = [u for u in self.utterances if u.voice in val_v]
        test = [u for u in self.utterances if u.voice in test_v]
        return train + self.train_only, val, test

    def split_summary(self, seed: int = 0) -> dict:
        train, val, test = self.split(seed)

        def desc(us):
            return {
                "voices": sorted({u.voice for u in us}),
                "utterances": len(us),
                "hours": round(sum(len(u.audio) for u in us) / SAMPLE_RATE / 3600, 4),
            }

        return {"train": desc(train), "val": desc(val), "test": desc(test)}


def _read_export(path: Path) -> TrainingData:
    meta_path = path / "export.json"
    meta = json.loads(meta_path.read_text())
    if meta.get("format") != FORMAT:
        raise ValueError(
            f"{meta_path}: field 'format' is {meta.get('format')!r}, expected {FORMAT!r}"
        )
    entries = meta["utterances"]
    by_shard: dict[str, list[dict]] = {}
    for e in entries:
        by_shard.setdefault(e["shard"], []).append(e)
    utts: list[Utterance] = []
    for shard, es in sorted(by_shard.items()):
        with np.load(path / shard, allow_pickle=False) as z:
            arrays = {k: z[k] for k in z.files}
        audio_bytes = lzma.decompress(_audio_path(path / shard).read_bytes())
        audio = mulaw_decode(np.frombuffer(audio_bytes, np.uint8))
        targets = arrays["targets"].astype(np.float32) / 255.0
        n_samples = arrays["utt_samples"]
        if len(n_samples) != len(es):
            raise ValueError(
                f"{path / shard}: {len(n_samples)} utterances, export.json lists {len(es)}"
            )
        s0 = f0 = g0 = 0
        for e, ns, ng in zip(es, n_samples, arrays["utt_segments"], strict=True):
            nf = int(ns) // HOP
            utts.append(
                Utterance(
                    id=e["id"],
                    voice=e["voice"],
                    audio=audio[s0 : s0 + ns],
                    targets=targets[f0 : f0 + nf],
                    vis100=arrays["vis100"][2 * f0 : 2 * (f0 + nf)].astype(np.int64),
                    vis50=arrays["vis50"][f0 : f0 + nf].astype(np.int64),
                    seg_start=arrays["seg_start"][g0 : g0 + ng],
                    seg_end=arrays["seg_end"][g0 : g0 + ng],
                    seg_class=arrays["seg_class"][g0 : g0 + ng],
                    seg_label=arrays["seg_label"][g0 : g0 + ng],
                    augment=e.get("augment") or {},
                )
            )
            s0, f0, g0 = s0 + int(ns), f0 + nf, g0 + int(ng)
    return TrainingData(meta, utts, path)


def load_data(path: str | Path, add_train: tuple | list = ()) -> TrainingData:
    """Training data from an export directory, or from a corpus directory (cached export);
    the exports or corpora of ``add_train`` join its train side (`TrainingData.add_train`)."""
    data = _load_one(Path(path))
    for extra in add_train:
        data.add_train(_load_one(Path(extra)))
    return data


def _from_dataset(path: Path, manifest: dict) -> TrainingData:
    """Training data of a dataset directory (see the module docstring)."""
    corpus = Path(manifest.get("corpus", ""))
    if not (corpus / "manifest.json").is_file():
        raise FileNotFoundError(
            f"{path / 'manifest.json'}: its source corpus {corpus} is not there (a dataset "
            "trains from the corpus audio it was made from)"
        )
    data = _load_one(corpus)
    ids = {u["id"] for u in manifest.get("utterances", [])}
    data.utterances = [u for u in data.utterances if u.id in ids]
    if not data.utterances:
        raise ValueError(f"{path}: none of its utterances is in the export of {corpus}")
    arrays = manifest.get("arrays", {})
    if "mouth" in arrays and "eyes" in arrays:
        rate = float(manifest.get("frame_rate", 0))
        if abs(rate - FRAME_RATE) > 1e-9:
            raise ValueError(
                f"{path}: dataset is at {rate:g} Hz; training reads {FRAME_RATE} Hz targets "
                f"(make it with `data teach --frame-rate {FRAME_RATE}`)"
            )
        for u in data.utterances:
            shard = path / "shards" / f"{u.id}.npz"
            with np.load(shard, allow_pickle=False) as z:
                if "mouth" not in z.files or "eyes" not in z.files:
                    raise ValueError(f"{shard}: lacks array 'mouth' or 'eyes'")
                targets = np.concatenate([z["mouth"], z["eyes"]], axis=1).astype(np.float32)
            u.targets = _fit_length(np.clip(targets, 0.0, 1.0), u.frames)
    split_path = path / "split.json"
    if split_path.is_file():
        split = json.loads(split_path.read_text())
        if not split.get("train") or not split.get("test"):
            raise ValueError(f"{split_path}: needs non-empty 'train' and 'test' id lists")
        data.fixed_split = {"train": list(split["train"]), "test": list(split["test"])}
    data.path = path
    return data


def _load_one(path: Path) -> TrainingData:
    if (path / "export.json").is_file():
        return _read_export(path)
    if not (path / "manifest.json").is_file():
        raise FileNotFoundError(
            f"{path}: neither a training-data export (export.json), a corpus nor a dataset "
            "(manifest.json)"
        )
    try:
        manifest = json.loads((path / "manifest.json").read_text())
    except json.JSONDecodeError as e:
        raise ValueError(f"{path / 'manifest.json'}: not valid JSON ({e})") from None
    if manifest.get("format") == DATASET_FORMAT:
        return _from_dataset(path, manifest)
    cache = path / "cache" / "training-data"
    if (cache / "export.json").is_file():
        meta = json.loads((cache / "export.json").read_text())
        if meta.get("summary", {}).get("corpus_manifest_sha1") == _manifest_hash(path):
            return _read_export(cache)
    export_data(path, cache, max_mb=None)
    return _read_export(cache)
