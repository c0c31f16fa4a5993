"""Several wav2vec2 front ends as one: its features are the mean of their CTC posteriors.

Small wav2vec2 models trained alike with different seeds make different phone errors on
unseen speakers, so the mean of their posteriors has a lower phone error rate than any one of
them (checkpoints/README.md has the figures). Only posteriors can be averaged: each member's
hidden states live in a space of their own, so ``hidden-N`` features are the members' side by
side ([T, members × hidden]), and ``posteriors+hidden-N`` the mean posteriors followed by those.

A saved ensemble is a directory (`models.wav2vec.save_ensemble` writes it; `load_wav2vec2`
reads it like any wav2vec2 checkpoint):

    config.json    {"format": WAV2VEC2_ENSEMBLE_FORMAT, "members": ["member-0", ...],
                    "audio2anim": {...}}
    member-0/      one wav2vec2 checkpoint directory per member (Hugging Face format)

The members' weights may be stored as float16 to halve the file size; they always run in
float32 (or whatever the caller casts the module to).
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn


class Wav2Vec2Ensemble(nn.Module):
    """Several wav2vec2 front ends with a `Wav2Vec2FrontEnd`'s interface (see the module
    docstring for how their features combine).

    Input: 16 kHz audio; output: [T, feature_dim] at 50 Hz. The members must share feature,
    vocab, framing, attention chunks and input normalization; ValueError names the first that
    differs. `run` gives the log of the mean posteriors (for CTC decoding).
    """

    kind = "wav2vec2"

    def __init__(self, members: list[nn.Module]) -> None:
        super().__init__()
        if len(members) < 2:
            raise ValueError("a wav2vec2 ensemble needs at least two front ends")
        first = members[0]
        for i, m in enumerate(members):
            if m.feature != first.feature:
                raise ValueError(f"member {i}: feature {m.feature!r} differs from member 0's")
            for key in ("vocab", "chunk_frames", "left_chunks", "normalize_input"):
                if m.hparams[key] != first.hparams[key]:
                    raise ValueError(f"member {i}: {key} differs from member 0's")
            if (m.hop, m.lookahead_frames) != (first.hop, first.lookahead_frames):
                raise ValueError(f"member {i}: framing or lookahead differs from member 0's")
        self.members = nn.ModuleList(members)
        self.vocab, self.hop = first.vocab, first.hop
        self.chunk_frames, self.left_chunks = first.chunk_frames, first.left_chunks
        self.hparams = {**first.hparams, "members": len(members)}

    def set_phone_bias(self, bias: dict[str, float]) -> None:
        """Every member's `Wav2Vec2FrontEnd.set_phone_bias` (the offsets apply to each
        member's posteriors before they are averaged)."""
        for m in self.members:
            m.set_phone_bias(bias)
        self.hparams = {**self.members[0].hparams, "members": len(self.members)}

    @property
    def feature(self) -> str:
        return self.members[0].feature

    @feature.setter
    def feature(self, name: str) -> None:  # as a single front end's: every member's at once
        for m in self.members:
            m.feature = name

    @property
    def frame_rate(self) -> float:
        return self.members[0].frame_rate

    @property
    def lookahead_frames(self) -> int | None:
        return self.members[0].lookahead_frames

    @property
    def _averaged_dims(self) -> int:
        """How many leading feature dims are posteriors, averaged over the members (the rest
        are hidden states, one block per member)."""
        if self.feature == "posteriors":
            return self.members[0].feature_dim
        return (
            self.members[0].model.config.vocab_size if self.feature.startswith("posteriors+") else 0
        )

    @property
    def feature_dim(self) -> int:
        v = self._averaged_dims
        return v + len(self.members) * (self.members[0].feature_dim - v)

    def run(self, audio: torch.Tensor, hidden_layer: int | None = None, chunked: bool = True):
        """As `Wav2Vec2FrontEnd.run` without hidden states; the "logits" are the log of the
        mean posteriors (their softmax is that mean, their arg-max the greedy CTC path)."""
        if hidden_layer is not None:
            raise ValueError("a wav2vec2 ensemble's run gives posteriors only; use features")
        probs = [torch.softmax(m.run(audio, None, chunked)[0].float(), -1) for m in self.members]
        return torch.stack(probs).mean(0).clamp_min(1e-12).log(), None

    def features_torch(self, audio: torch.Tensor) -> torch.Tensor:
        return self.merge([m.features_torch(audio) for m in self.members])

    def merge(self, feats: list[torch.Tensor]) -> torch.Tensor:
        """The members' features → the ensemble's: posteriors averaged, hidden states side by
        side (each member's live in a space of their own)."""
        v = self._averaged_dims
        mean = [torch.stack([f[..., :v] for f in feats]).mean(0)] if v else []
        return torch.cat([*mean, *[f[..., v:] for f in feats]], -1)

    @torch.no_grad()
    def features(self, samples: np.ndarray) -> np.ndarray:
        """One utterance: samples [n] float32 at 16 kHz → [n // 320, D] float32."""
        dev = next(self.parameters()).device
        x = torch.as_tensor(np.asarray(samples, np.float32), device=dev)[None]
        if x.shape[-1] < self.hop:
            return np.zeros((0, self.feature_dim), np.float32)
        return self.features_torch(x)[0].cpu().numpy()
