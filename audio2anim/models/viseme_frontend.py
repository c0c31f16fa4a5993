"""The viseme front end: log-mel frames (100 Hz) → 15 viseme posteriors, streaming.

Architecture: per-band normalization → ``conv_layers`` causal 1-D convs (width ``kernel``,
GELU) → one-layer GRU → linear → 15 logits. The network itself is strictly causal; the bounded
lookahead comes from *delaying the labels* during training: the output at frame ``t`` is
trained to be the viseme of frame ``t - lookahead``, so it has heard ``lookahead`` frames
(10 ms each) of the future of the frame it labels. ``lookahead`` is fixed at training time
(≤ 6 frames = 60 ms) and stored in the checkpoint.

- `VisemeFrontEnd.forward(logmel [B, T, 80])` → logits [B, T, 15], output t ↔ label t - L.
- `VisemeFrontEnd.posteriors(logmel [T, 80])` → [T, 15] aligned with the input frames (the
  last L frames are completed with silence-floor padding).
- `VisemeStream` does the same block by block with explicit state (conv history + GRU hidden);
  its concatenated output equals `posteriors`.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from .logmel import DEFAULT as LOGMEL_DEFAULT

N_VISEMES = 15
SILENCE_LOGMEL = float(np.log(LOGMEL_DEFAULT.floor))  # log-mel of digital silence


class VisemeFrontEnd(nn.Module):
    kind = "viseme-frontend"

    def __init__(
        self,
        n_mels: int = 80,
        n_visemes: int = N_VISEMES,
        channels: int = 128,
        hidden: int = 128,
        conv_layers: int = 2,
        kernel: int = 3,
        lookahead: int = 4,
        dropout: float = 0.1,
    ) -> None:
        super().__init__()
        if not 0 <= lookahead <= 6:
            raise ValueError(f"lookahead must be 0..6 frames (≤ 60 ms), got {lookahead}")
        self.hparams = dict(
            n_mels=n_mels,
            n_visemes=n_visemes,
            channels=channels,
            hidden=hidden,
            conv_layers=conv_layers,
            kernel=kernel,
            lookahead=lookahead,
            dropout=dropout,
        )
        self.n_mels, self.lookahead, self.kernel = n_mels, lookahead, kernel
        self.register_buffer("in_mean", torch.zeros(n_mels))
        self.register_buffer("in_std", torch.ones(n_mels))
        dims = [n_mels] + [channels] * conv_layers
        self.convs = nn.ModuleList(
            nn.Conv1d(a, b, kernel) for a, b in zip(dims[:-1], dims[1:], strict=True)
        )
        self.drop = nn.Dropout(dropout)
        self.gru = nn.GRU(channels, hidden, batch_first=True)
        self.out = nn.Linear(hidden, n_visemes)

    def set_normalization(self, mean, std) -> None:
        # torch.as_tensor accepts arrays and tensors on any device; copy_ moves them
        self.in_mean.copy_(torch.as_tensor(mean, dtype=torch.float32))
        self.in_std.copy_(torch.as_tensor(std, dtype=torch.float32).clamp(min=1e-3))

    def _convs(self, h: torch.Tensor) -> torch.Tensor:
        """h [B, n_mels, kernel-1 history + T] channels-first → [B, C, T'] (valid convs)."""
        for conv in self.convs:
            h = self.drop(F.gelu(conv(h)))
        return h

    def forward(self, logmel: torch.Tensor, state: torch.Tensor | None = None):
        """logmel [B, T, n_mels] raw → logits [B, T, 15] (output t labels frame t - lookahead).

        Left padding is the normalized silence floor's zero, i.e. the stream starts from
        "nothing heard yet" exactly as `VisemeStream` does.
        """
        x = ((logmel - self.in_mean) / self.in_std).transpose(1, 2)
        pad = len(self.convs) * (self.kernel - 1)
        h = self._convs(F.pad(x, (pad, 0))).transpose(1, 2)
        y, _ = self.gru(h, state)
        return self.out(y)

    @torch.no_grad()
    def posteriors(self, logmel: np.ndarray) -> np.ndarray:
        """[T, n_mels] log-mel → [T, 15] posteriors aligned with the input frames."""
        x = np.asarray(logmel, np.float32)
        tail = np.full((self.lookahead, self.n_mels), SILENCE_LOGMEL, np.float32)
        xt = torch.as_tensor(np.concatenate([x, tail]), device=self.in_mean.device)[None]
        logits = self(xt)[0, self.lookahead :]
        return torch.softmax(logits, -1).cpu().numpy()


class VisemeStream:
    """Block-wise `VisemeFrontEnd.posteriors`: ``push(logmel [k, 80])`` → posteriors [j, 15] of
    the frames now complete (``lookahead`` frames behind the input); ``flush()`` → the rest."""

    def __init__(self, model: VisemeFrontEnd) -> None:
        self.model = model.eval()
        dev = model.in_mean.device
        pad = len(model.convs) * (model.kernel - 1)
        self.history = torch.zeros(1, model.n_mels, pad, device=dev)  # normalized zeros
        self.state = None
        self.skip = model.lookahead  # the first L outputs label frames before the stream
        self.seen = 0

    @torch.no_grad()
    def push(self, logmel: np.ndarray) -> np.ndarray:
        m = self.model
        x = torch.as_tensor(np.asarray(logmel, np.float32), device=m.in_mean.device)
        if len(x) == 0:
            return np.zeros((0, N_VISEMES), np.float32)
        self.seen += len(x)
        xn = ((x - m.in_mean) / m.in_std).T[None]
        h = torch.cat([self.history, xn], dim=2)
        self.history = h[:, :, h.shape[2] - self.history.shape[2] :]
        y, self.state = m.gru(m._convs(h).transpose(1, 2), self.state)
        probs = torch.softmax(m.out(y)[0], -1)
        drop = min(self.skip, len(probs))
        self.skip -= drop
        return probs[drop:].cpu().numpy()

    @torch.no_grad()
    def flush(self) -> np.ndarray:
        m = self.model
        n = m.lookahead if self.seen else 0
        return self.push(np.full((n, m.n_mels), SILENCE_LOGMEL, np.float32))


def downsample_posteriors(probs: np.ndarray, factor: int = 2) -> np.ndarray:
    """[T, 15] posteriors at 100 Hz → [T // factor, 15] at 50 Hz (mean of each pair of frames:
    the 20 ms frame j covers the 10 ms frames 2j and 2j + 1)."""
    t = len(probs) // factor
    return np.asarray(probs[: t * factor], np.float32).reshape(t, factor, -1).mean(axis=1)
