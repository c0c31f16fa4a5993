"""Predictor inputs computed by trained front ends: the features the w2v-* predictors learn
from (`w2v_features`: a wav2vec2 checkpoint's features, or the 15 viseme posteriors of a
``whisper-viseme-head`` on the Whisper encoder, `feature_frontend`), viseme front-end
posteriors (`frontend_posteriors`), and `FeatureCache`, which lets several trainings in one
process (scripts/train_all.py's three w2v predictors) share one extraction."""

from __future__ import annotations

import math
from collections import OrderedDict
from pathlib import Path

import numpy as np
import torch

from audio2anim.visemes import N_VISEMES, VISEME_PROBS

from .augmentation import augment_audio
from .data import Utterance


class FeatureCache:
    """Per-utterance features of up to ``max_sets`` feature sets (a set: one checkpoint, its
    weights' version, device, feature and augmentation), the least recently used dropped first.
    Owned by the caller that runs several trainings; pass it to `w2v_features` or
    ``train(..., features=cache)``."""

    def __init__(self, max_sets: int = 2) -> None:
        self.max_sets = max_sets
        self._sets: OrderedDict[tuple, dict[str, np.ndarray]] = OrderedDict()

    def features(self, key: tuple) -> dict[str, np.ndarray]:
        """The features of set ``key`` (utterance id → array), created empty when new."""
        if key in self._sets:
            self._sets.move_to_end(key)
        else:
            self._sets[key] = {}
            while len(self._sets) > self.max_sets:
                self._sets.popitem(last=False)
        return self._sets[key]

    def __len__(self) -> int:
        return len(self._sets)


def feature_frontend(frontend_dir: str | Path, device, feature: str | None = None):
    """A front end the w2v-* predictors learn from, as ``(features, info)``: ``features`` maps
    16 kHz audio [1, n] (a torch tensor) → [n // 320, D] numpy features at 50 Hz; ``info`` is
    what the predictor's sidecar records of them (``feature``, ``dim``, …).

    - a wav2vec2 checkpoint (or ensemble, or any Hugging Face Wav2Vec2 folder): its
      ``feature`` (``posteriors``, ``hidden-N``, ``posteriors+hidden-N``; None: the
      checkpoint's), streamed with its chunked attention;
    - a ``whisper-viseme-head`` checkpoint: its 15 viseme posteriors on the Whisper encoder
      (offline windows, the head's own P/B/M offset), the analogue of a CTC model's softmaxed
      output; ``info["kind"]`` is `VISEME_PROBS`, the stream kind the predictor then takes.
      ``feature`` must be None or ``posteriors``."""
    from audio2anim.models.checkpoint import read_sidecar

    if read_sidecar(frontend_dir).get("kind") == "whisper-viseme-head":
        from audio2anim.models.whisper_head import WhisperVisemes

        if feature not in (None, "posteriors"):
            raise ValueError(
                f"w2v feature {feature!r}: the whisper-viseme-head front end {frontend_dir} "
                "gives its viseme posteriors only ('posteriors')"
            )
        head = WhisperVisemes(frontend_dir)
        info = {
            "kind": VISEME_PROBS,
            "checkpoint": str(frontend_dir),
            "feature": "posteriors",
            "dim": N_VISEMES,
            "frame_rate": 50.0,
            "encoder": head.sidecar.get("encoder"),
        }
        return lambda x: head.posteriors(x[0].float().cpu().numpy()).astype(np.float32), info

    from audio2anim.models.wav2vec import load_wav2vec2

    front = load_wav2vec2(str(frontend_dir), device=str(device), feature=feature)
    info = {
        "checkpoint": str(frontend_dir),
        "feature": front.feature,
        "dim": front.feature_dim,
        "frame_rate": front.frame_rate,
        "lookahead_frames": front.lookahead_frames,
    }

    def features(x: torch.Tensor) -> np.ndarray:
        if x.shape[-1] < front.hop:  # not one frame
            return np.zeros((0, front.feature_dim), np.float32)
        return front.features_torch(x.float())[0].cpu().numpy()

    return features, info


def w2v_features(
    frontend_dir: str,
    utts: list[Utterance],
    device,
    feature: str | None = None,
    augment_seed: int | None = None,
    cache: FeatureCache | None = None,
) -> tuple[list[np.ndarray], dict]:
    """Per-utterance features of a front end (`feature_frontend`: a wav2vec2 checkpoint, or a
    ``whisper-viseme-head``'s viseme posteriors), of the clean audio or, with
    ``augment_seed``, of audio through `augment_audio` (gain, EQ, noise). With a ``cache``,
    features it holds for the same checkpoint, device, feature and augmentation are reused and
    new ones are added to it."""
    from tqdm import tqdm

    features, info = feature_frontend(frontend_dir, device, feature)
    weights = Path(frontend_dir) / "config.json"  # rewritten with every save, ensembles too
    key = (
        str(Path(frontend_dir).resolve()),
        weights.stat().st_mtime_ns,
        str(device),
        info["feature"],
        augment_seed,
    )
    store = {} if cache is None else cache.features(key)
    feats = []
    gen = None if augment_seed is None else torch.Generator(device=device).manual_seed(augment_seed)
    with torch.no_grad():
        for u in tqdm(utts, desc="front-end features", unit="utt", leave=False, mininterval=2.0):
            if u.id not in store:
                x = torch.as_tensor(u.audio, device=device)[None]
                x = x if gen is None else augment_audio(x, gen)
                store[u.id] = features(x)
            feats.append(store[u.id])
    return feats, info


def frontend_posteriors(
    frontend_dir: str, utts: list[Utterance], device, seed: int = 0
) -> list[np.ndarray]:
    """50 Hz viseme posteriors of a viseme front end on (augmented, as in its training) audio:
    the realistic, imperfect input a viseme predictor gets at inference. ``frontend_dir``: a
    ``viseme-frontend`` checkpoint, or a ``whisper-viseme-head`` (without its P/B/M offset; a
    live one streamed by its live recipe, its encoder in ONNX Runtime, as its graph runs it)."""
    from tqdm import tqdm

    from audio2anim.models.checkpoint import load, read_sidecar

    gen = torch.Generator(device=device).manual_seed(seed + 1)
    if read_sidecar(frontend_dir).get("kind") == "whisper-viseme-head":
        posteriors = _whisper_posteriors(frontend_dir)
    else:
        from audio2anim.models.logmel import DEFAULT as LM
        from audio2anim.models.logmel import logmel_torch

        front, _ = load(frontend_dir, device=str(device))

        def posteriors(audio: torch.Tensor) -> np.ndarray:
            lm = logmel_torch(audio)
            tail = torch.full((1, front.lookahead, lm.shape[2]), math.log(LM.floor), device=device)
            probs = torch.softmax(front(torch.cat([lm, tail], 1))[:, front.lookahead :], -1)[0]
            t = probs.shape[0] // 2
            return probs[: 2 * t].reshape(t, 2, -1).mean(1).cpu().numpy()

    out = []
    with torch.no_grad():
        for u in tqdm(utts, desc="viseme posteriors", unit="utt", leave=False, mininterval=2.0):
            out.append(
                posteriors(augment_audio(torch.as_tensor(u.audio, device=device)[None], gen))
            )
    return out


def _whisper_posteriors(frontend_dir: str | Path):
    """audio [1, n] (torch) → [n // 320, 15] posteriors of a ``whisper-viseme-head`` without
    its offsets."""
    from audio2anim.models.whisper_head import WhisperVisemes

    front = WhisperVisemes(frontend_dir)
    front.head.set_viseme_bias({})
    onnx = None
    if front.live is not None:
        from audio2anim.models.onnx_export import cached_export

        onnx = cached_export(frontend_dir)

    def posteriors(audio: torch.Tensor) -> np.ndarray:
        s = front.stream(onnx=onnx)
        x = audio[0].float().cpu().numpy()
        return np.concatenate([s.push(x), s.flush()]).astype(np.float32)

    return posteriors
