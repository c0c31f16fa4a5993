"""Batches: the utterances of a split as flat device tensors, random crops of them weighted by
voice, and padded stacks of whole utterances for validation."""

from __future__ import annotations

import numpy as np
import torch

from .data import HOP, Utterance
from .targets import lipsync_classes


def crop_weights(utts: list[Utterance], voice_weights: dict) -> np.ndarray:
    """Per-utterance crop weights from ``voice_weights`` (voice or engine → weight, default 1);
    a ValueError names a key that matches no voice, a negative weight, or an all-zero result."""
    voices = sorted({u.voice for u in utts})
    for key, w in voice_weights.items():
        if not any(v == key or v.split(":")[0] == key for v in voices):
            raise ValueError(
                f"voice weight {key!r} matches no training voice ({', '.join(voices)})"
            )
        if w < 0:
            raise ValueError(f"voice weight {key!r}: {w} is negative")
    out = np.array(
        [voice_weights.get(u.voice, voice_weights.get(u.voice.split(":")[0], 1.0)) for u in utts],
        np.float32,
    )
    if not out.any():
        raise ValueError("voice weights leave no training voice")
    return out


class FrameSet:
    """The utterances of one split as flat device tensors, with random-crop gathering."""

    def __init__(
        self,
        utts: list[Utterance],
        device,
        features: list[np.ndarray] | None = None,
        voice_weights: dict | None = None,
    ):
        self.utts = utts
        self.device = device
        nf = np.array([u.frames for u in utts], np.int64)
        self.nf = torch.as_tensor(nf, device=device)
        self.off = torch.as_tensor(np.concatenate([[0], np.cumsum(nf)[:-1]]), device=device)
        self.audio = torch.as_tensor(np.concatenate([u.audio for u in utts]), device=device)
        self.targets = torch.as_tensor(np.concatenate([u.targets for u in utts]), device=device)
        self.vis100 = torch.as_tensor(np.concatenate([u.vis100 for u in utts]), device=device)
        self.vis50 = torch.as_tensor(np.concatenate([u.vis50 for u in utts]), device=device)
        self.features = (
            None
            if features is None
            else torch.as_tensor(np.concatenate(features).astype(np.float32), device=device)
        )
        self.lipsync = torch.as_tensor(
            np.concatenate([lipsync_classes(u) for u in utts]), device=device
        )
        self.weights = self.nf.float() * torch.as_tensor(
            crop_weights(utts, voice_weights or {}), device=device
        )

    def crop(self, batch: int, frames: int, gen: torch.Generator):
        """Random crops → (utt index [B], start frame [B], flat frame index [B, F], mask [B, F])."""
        u = torch.multinomial(self.weights, batch, replacement=True, generator=gen)
        n = self.nf[u]
        room = (n - frames + 1).clamp(min=1)
        start = (torch.rand(batch, device=self.device, generator=gen) * room).long()
        rel = start[:, None] + torch.arange(frames, device=self.device)
        mask = rel < n[:, None]
        idx = self.off[u][:, None] + torch.minimum(rel, n[:, None] - 1)
        return u, start, idx, mask

    def audio_of(self, idx: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """[B, F] frame indices → [B, F * 320] samples (zeros past the utterance end)."""
        s = idx[:, :, None] * HOP + torch.arange(HOP, device=self.device)
        a = self.audio[s] * mask[:, :, None]
        return a.flatten(1)

    def index100(self, idx: torch.Tensor) -> torch.Tensor:
        """[B, F] 50 Hz frame indices → [B, 2F] indices of their 100 Hz frames."""
        return (idx[:, :, None] * 2 + torch.arange(2, device=self.device)).flatten(1)

    def vis100_of(self, idx: torch.Tensor) -> torch.Tensor:
        return self.vis100[self.index100(idx)]


def val_subset(utts: list[Utterance], n: int) -> list[Utterance]:
    """At most ``n`` utterances spread evenly over ``utts``."""
    if len(utts) <= n:
        return utts
    step = len(utts) / n
    return [utts[int(i * step)] for i in range(n)]


def padded(arrays: list[np.ndarray], device) -> tuple[torch.Tensor, torch.Tensor]:
    """Stack variable-length [T, ...] arrays → (padded [B, Tmax, ...], mask [B, Tmax])."""
    tmax = max(len(a) for a in arrays)
    out = np.zeros((len(arrays), tmax, *arrays[0].shape[1:]), arrays[0].dtype)
    mask = np.zeros((len(arrays), tmax), bool)
    for i, a in enumerate(arrays):
        out[i, : len(a)] = a
        mask[i, : len(a)] = True
    return torch.as_tensor(out, device=device), torch.as_tensor(mask, device=device)
