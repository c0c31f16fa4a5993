"""The five animation-parameter predictors: features [T, D] → parameters [T, O] at the same rate.

Every predictor maps a sequence of input frames (viseme one-hots/posteriors, or wav2vec2
features) to a sequence of normalized parameter frames. Output frame ``t`` depends on input
frames ``t - past … t + lookahead`` only (zero-padded — i.e. the normalization mean — outside
the stream), so a streaming caller needs ``lookahead`` frames of future input and ``past``
frames of history. Inputs are normalized inside the model (``in_mean``/``in_std`` buffers) and
outputs are predicted normalized (``out_mean``/``out_std``); the statistics are buffers, so
they travel in ``model.safetensors`` with the weights. `SequencePredictor.predict` returns
denormalized parameters clipped to [0, 1].

| kind            | class                      | receptive field                                  |
|-----------------|----------------------------|--------------------------------------------------|
| viseme-mlp      | `WindowMLP`                | window of past+lookahead+1 frames → MLP          |
| viseme-cnn      | `ConvPredictor`            | stacked valid 1-D convs                          |
| w2v-cnn         | `ConvPredictor`            | stacked valid 1-D convs                          |
| w2v-ar          | `AutoregressivePredictor`  | conv trunk + its own previous K outputs          |
| w2v-attention   | `AttentionPredictor`       | conv trunk + self-attention over the last W frames|

The autoregressive model trains with teacher forcing plus (parallel) scheduled sampling and runs
step by step at inference (`ARStream`); ``generate`` is the full-sequence reference that
`ARStream` reproduces exactly.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from .checkpoint import constructor_args


class SequencePredictor(nn.Module):
    """Shared plumbing: hyper-parameters, normalization buffers, padding, `predict`."""

    kind = ""

    def __init__(self, in_dim: int, out_dim: int, past: int, lookahead: int) -> None:
        super().__init__()
        if past < 0 or lookahead < 0:
            raise ValueError(f"past ({past}) and lookahead ({lookahead}) must be >= 0")
        self.in_dim, self.out_dim = in_dim, out_dim
        self.past, self.lookahead = past, lookahead
        self.register_buffer("in_mean", torch.zeros(in_dim))
        self.register_buffer("in_std", torch.ones(in_dim))
        self.register_buffer("out_mean", torch.zeros(out_dim))
        self.register_buffer("out_std", torch.ones(out_dim))
        self.hparams: dict = {}

    def set_normalization(self, in_mean, in_std, out_mean, out_std) -> None:
        """Set the statistics (array-likes); std values are floored at 1e-3."""
        for name, val in (
            ("in_mean", in_mean),
            ("in_std", in_std),
            ("out_mean", out_mean),
            ("out_std", out_std),
        ):
            t = torch.as_tensor(val, dtype=torch.float32)  # arrays or tensors on any device
            if name.endswith("std"):
                t = t.clamp(min=1e-3)
            getattr(self, name).copy_(t)

    def normalize_in(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.in_mean) / self.in_std

    def normalize_out(self, y: torch.Tensor) -> torch.Tensor:
        return (y - self.out_mean) / self.out_std

    def denormalize_out(self, y: torch.Tensor) -> torch.Tensor:
        return y * self.out_std + self.out_mean

    def _pad_window(self, xn: torch.Tensor) -> torch.Tensor:
        """[B, T, D] normalized → [B, D, past + T + lookahead] zero-padded, channels first."""
        return F.pad(xn.transpose(1, 2), (self.past, self.lookahead))

    @torch.no_grad()
    def predict(self, x: np.ndarray) -> np.ndarray:
        """Parameters for a whole utterance: x [T, D] float → [T, O] in [0, 1]."""
        dev = self.in_mean.device
        xt = torch.as_tensor(np.asarray(x, np.float32), device=dev)[None]
        y = self.generate(xt) if hasattr(self, "generate") else self(xt)
        return self.denormalize_out(y)[0].clamp(0, 1).cpu().numpy()


class WindowMLP(SequencePredictor):
    """An MLP on the flattened window [t - past, t + lookahead] (a wide conv, then 1×1 convs)."""

    def __init__(
        self,
        in_dim: int,
        out_dim: int,
        past: int = 12,
        lookahead: int = 3,
        hidden: int = 256,
        layers: int = 2,
        dropout: float = 0.1,
    ) -> None:
        super().__init__(in_dim, out_dim, past, lookahead)
        self.hparams = constructor_args(locals())
        mods: list[nn.Module] = [nn.Conv1d(in_dim, hidden, past + lookahead + 1), nn.GELU()]
        for _ in range(layers - 1):
            mods += [nn.Dropout(dropout), nn.Conv1d(hidden, hidden, 1), nn.GELU()]
        mods += [nn.Dropout(dropout), nn.Conv1d(hidden, out_dim, 1)]
        self.net = nn.Sequential(*mods)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x [B, T, D] raw features → [B, T, O] normalized parameters."""
        return self.net(self._pad_window(self.normalize_in(x))).transpose(1, 2)


class FrameNorm(nn.Module):
    """LayerNorm over the channels of each frame of a [B, C, T] tensor. Per-frame, so it keeps
    the model causal and streamable (a norm over C×T would let future frames move past ones)."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(channels)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return self.norm(h.transpose(1, 2)).transpose(1, 2)


class ConvTrunk(nn.Module):
    """1×1 input projection then ``layers`` valid convs of width ``kernel`` (norm, GELU, dropout).

    Receptive field: ``layers * (kernel - 1) + 1`` frames; the input must come padded.
    """

    def __init__(self, in_dim: int, channels: int, layers: int, kernel: int, dropout: float):
        super().__init__()
        self.proj = nn.Conv1d(in_dim, channels, 1)
        self.convs = nn.ModuleList(nn.Conv1d(channels, channels, kernel) for _ in range(layers))
        self.norms = nn.ModuleList(FrameNorm(channels) for _ in range(layers))
        self.drop = nn.Dropout(dropout)
        self.receptive_field = layers * (kernel - 1) + 1

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x [B, D, T + rf - 1] → [B, C, T]."""
        h = self.proj(x)
        for conv, norm in zip(self.convs, self.norms, strict=True):
            h = self.drop(F.gelu(norm(conv(h))))
        return h


def _trunk_past(layers: int, kernel: int, lookahead: int) -> int:
    past = layers * (kernel - 1) - lookahead
    if past < 0:
        raise ValueError(
            f"lookahead {lookahead} exceeds the receptive field ({layers} layers × (kernel {kernel} - 1))"
        )
    return past


class ConvPredictor(SequencePredictor):
    """Stacked 1-D convolutions (viseme-cnn, w2v-cnn)."""

    def __init__(
        self,
        in_dim: int,
        out_dim: int,
        lookahead: int = 3,
        channels: int = 128,
        layers: int = 4,
        kernel: int = 5,
        dropout: float = 0.1,
    ) -> None:
        super().__init__(in_dim, out_dim, _trunk_past(layers, kernel, lookahead), lookahead)
        self.hparams = constructor_args(locals())
        self.trunk = ConvTrunk(in_dim, channels, layers, kernel, dropout)
        self.head = nn.Conv1d(channels, out_dim, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x [B, T, D] raw features → [B, T, O] normalized parameters."""
        return self.head(self.trunk(self._pad_window(self.normalize_in(x)))).transpose(1, 2)


class AutoregressivePredictor(SequencePredictor):
    """Conv trunk on the features plus an embedding of its own previous ``prev_frames`` outputs.

    ``forward(x, prev)`` is the parallel (teacher-forced) pass: ``prev`` [B, T, O] holds the
    normalized parameters of frames 0…T-1, and frame t sees ``prev[t - K … t - 1]`` (zeros
    before the stream start). ``generate(x)`` feeds back its own outputs (clamped to the valid
    range by `feedback`), one frame at a time.
    """

    def __init__(
        self,
        in_dim: int,
        out_dim: int,
        lookahead: int = 3,
        channels: int = 128,
        layers: int = 4,
        kernel: int = 5,
        prev_frames: int = 4,
        dropout: float = 0.1,
    ) -> None:
        super().__init__(in_dim, out_dim, _trunk_past(layers, kernel, lookahead), lookahead)
        self.hparams = constructor_args(locals())
        self.prev_frames = prev_frames
        self.trunk = ConvTrunk(in_dim, channels, layers, kernel, dropout)
        self.prev_proj = nn.Linear(prev_frames * out_dim, channels)
        self.head = nn.Sequential(
            nn.GELU(), nn.Linear(channels, channels), nn.GELU(), nn.Linear(channels, out_dim)
        )

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """x [B, T, D] raw → trunk features [B, T, C]."""
        return self.trunk(self._pad_window(self.normalize_in(x))).transpose(1, 2)

    def feedback(self, y: torch.Tensor) -> torch.Tensor:
        """What is fed back: normalized outputs clamped to the valid parameter range [0, 1].

        Without the clamp a free-running model can feed itself values no target ever had and
        diverge, up to NaN.
        """
        lo = -self.out_mean / self.out_std
        hi = (1 - self.out_mean) / self.out_std
        return torch.maximum(torch.minimum(y, hi), lo)

    def step_head(self, h: torch.Tensor, prev_window: torch.Tensor) -> torch.Tensor:
        """h [B, C] and the K previous normalized outputs [B, K, O] (oldest first) → [B, O]."""
        return self.head(h + self.prev_proj(prev_window.flatten(1)))

    def forward(self, x: torch.Tensor, prev: torch.Tensor) -> torch.Tensor:
        h = self.encode(x)
        k = self.prev_frames
        windows = F.pad(prev, (0, 0, k, 0))[:, :-1].unfold(1, k, 1)  # [B, T, O, K]
        windows = windows.transpose(2, 3).flatten(2)  # [B, T, K*O], oldest first
        return self.head(h + self.prev_proj(windows))

    @torch.no_grad()
    def generate(self, x: torch.Tensor) -> torch.Tensor:
        """Autoregressive inference on a whole sequence: x [B, T, D] → [B, T, O] normalized."""
        h = self.encode(x)
        b, t, _ = h.shape
        prev = torch.zeros(b, self.prev_frames, self.out_dim, device=x.device, dtype=h.dtype)
        outs = []
        for i in range(t):
            y = self.step_head(h[:, i], prev)
            outs.append(y)
            prev = torch.cat([prev[:, 1:], self.feedback(y)[:, None]], dim=1)
        return torch.stack(outs, dim=1) if outs else h.new_zeros(b, 0, self.out_dim)


class ARStream:
    """Step-by-step inference of an `AutoregressivePredictor` with explicit state.

    ``push(frames [k, D])`` returns the denormalized outputs [j, O] completed so far (output t is
    ready once input ``t + lookahead`` has arrived); ``flush()`` returns the last ``lookahead``
    outputs. The concatenated outputs equal ``model.predict(all_frames)``.
    """

    def __init__(self, model: AutoregressivePredictor) -> None:
        self.model = model.eval()
        rf = model.trunk.receptive_field
        dev = model.in_mean.device
        # normalized input history, zero-filled = the padding `forward` uses before the start
        self.window = torch.zeros(1, model.in_dim, rf, device=dev)
        self.prev = torch.zeros(1, model.prev_frames, model.out_dim, device=dev)
        self.seen = 0  # input frames pushed
        self.emitted = 0

    @torch.no_grad()
    def _advance(self, xn_frame: torch.Tensor) -> torch.Tensor | None:
        m = self.model
        self.window = torch.cat([self.window[:, :, 1:], xn_frame[None, :, None]], dim=2)
        self.seen += 1
        # the window now ends at padded index seen-1 + past; it yields output seen-1-lookahead
        if self.seen - 1 - m.lookahead < 0:
            return None
        h = m.trunk(self.window)[:, :, -1]
        y = m.step_head(h, self.prev)
        self.prev = torch.cat([self.prev[:, 1:], m.feedback(y)[:, None]], dim=1)
        self.emitted += 1
        return y[0]

    @torch.no_grad()
    def push(self, frames: np.ndarray) -> np.ndarray:
        m = self.model
        xn = m.normalize_in(
            torch.as_tensor(np.asarray(frames, np.float32), device=m.in_mean.device)
        )
        outs = [y for f in xn if (y := self._advance(f)) is not None]
        return self._finish(outs)

    @torch.no_grad()
    def flush(self) -> np.ndarray:
        m = self.model
        outs = []
        for _ in range(m.lookahead if self.seen else 0):
            # zero in normalized space: the same right padding as the full pass
            y = self._advance(torch.zeros(m.in_dim, device=m.in_mean.device))
            if y is not None:
                outs.append(y)
        return self._finish(outs)

    def _finish(self, outs: list) -> np.ndarray:
        m = self.model
        if not outs:
            return np.zeros((0, m.out_dim), np.float32)
        return m.denormalize_out(torch.stack(outs)).clamp(0, 1).cpu().numpy()


class AttentionBlock(nn.Module):
    """Pre-norm transformer block (multi-head self-attention + GELU feed-forward).

    Written out instead of ``nn.TransformerEncoderLayer`` because the latter's fused path
    exports to ONNX with the example's sequence length frozen into a reshape.
    """

    def __init__(self, channels: int, heads: int, dropout: float) -> None:
        super().__init__()
        if channels % heads:
            raise ValueError(f"channels ({channels}) must be a multiple of heads ({heads})")
        self.heads = heads
        self.norm1 = nn.LayerNorm(channels)
        self.qkv = nn.Linear(channels, 3 * channels)
        self.proj = nn.Linear(channels, channels)
        self.norm2 = nn.LayerNorm(channels)
        self.ff = nn.Sequential(
            nn.Linear(channels, 2 * channels),
            nn.GELU(),
            nn.Dropout(dropout),
            nn.Linear(2 * channels, channels),
        )
        self.drop = nn.Dropout(dropout)

    def forward(self, h: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """h [B, T, C], mask [T, T] additive → [B, T, C]."""
        b, t, c = h.shape
        qkv = self.qkv(self.norm1(h)).reshape(b, t, 3, self.heads, c // self.heads)
        q, k, v = qkv.permute(2, 0, 3, 1, 4)  # each [B, H, T, C/H]
        att = (q @ k.transpose(-1, -2)) * (c // self.heads) ** -0.5 + mask
        y = (self.drop(torch.softmax(att, -1)) @ v).transpose(1, 2).reshape(b, t, c)
        h = h + self.drop(self.proj(y))
        return h + self.drop(self.ff(self.norm2(h)))


class AttentionPredictor(SequencePredictor):
    """Conv trunk, then self-attention blocks where frame t attends to frames [t - W, t]."""

    def __init__(
        self,
        in_dim: int,
        out_dim: int,
        lookahead: int = 3,
        channels: int = 128,
        layers: int = 3,
        kernel: int = 5,
        attn_layers: int = 2,
        heads: int = 4,
        attn_window: int = 50,
        dropout: float = 0.1,
    ) -> None:
        super().__init__(in_dim, out_dim, _trunk_past(layers, kernel, lookahead), lookahead)
        self.hparams = constructor_args(locals())
        self.attn_window = attn_window
        self.trunk = ConvTrunk(in_dim, channels, layers, kernel, dropout)
        self.blocks = nn.ModuleList(
            AttentionBlock(channels, heads, dropout) for _ in range(attn_layers)
        )
        self.head = nn.Linear(channels, out_dim)

    def attention_mask(self, t: int, device) -> torch.Tensor:
        """[T, T] additive mask: 0 where key j is in [i - W, i], -inf elsewhere."""
        i = torch.arange(t, device=device)
        rel = i[:, None] - i[None, :]
        allowed = (rel >= 0) & (rel <= self.attn_window)
        return torch.zeros(t, t, device=device).masked_fill(~allowed, float("-inf"))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.trunk(self._pad_window(self.normalize_in(x))).transpose(1, 2)
        mask = self.attention_mask(h.shape[1], h.device)
        for block in self.blocks:
            h = block(h, mask)
        return self.head(h)
