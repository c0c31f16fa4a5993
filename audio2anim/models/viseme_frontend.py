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
- `combine_frontends([a, b, c])` → one front end whose posteriors are the mean of theirs (an
  ensemble, ``members`` = 3): the members side by side in one wider network (grouped convs,
  one GRU and one output head per member behind a single-GRU interface whose state is the
  members' states concatenated), so streaming, ONNX export and the operator need nothing new.
  `ensemble_members(ens)` takes one apart again, so an ensemble's members can be recombined
  with others.
- ``viseme_bias`` ({"PP": 1.0}): a log-odds offset per viseme added to the output, i.e. each
  named viseme's posterior multiplied by e^offset before renormalizing (a prior correction).
  Recognizers trained on synthetic voices hear fewer P/B/M in real speech than are there;
  lips that never close on them look worse than an occasional extra closure. Stored in the
  hyper-parameters, so every path (posteriors, streaming, ONNX, the operator) applies it.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from audio2anim.visemes import N_VISEMES

from .checkpoint import constructor_args
from .class_bias import set_viseme_bias
from .logmel import DEFAULT as LOGMEL_DEFAULT

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
        members: int = 1,
        viseme_bias: dict[str, float] | None = None,
    ) -> None:
        super().__init__()
        if not 0 <= lookahead <= 6:
            raise ValueError(f"lookahead must be 0..6 frames (≤ 60 ms), got {lookahead}")
        if members < 1 or channels % members or hidden % members:
            raise ValueError(f"members ({members}) must divide channels and hidden")
        self.hparams = constructor_args(locals())  # viseme_bias: see set_viseme_bias
        self.n_mels, self.lookahead, self.kernel = n_mels, lookahead, kernel
        self.members, self.n_visemes = members, n_visemes
        # not in the state dict: the hyper-parameters carry it, so older files load unchanged
        self.register_buffer("logit_bias", torch.zeros(n_visemes), persistent=False)
        self.set_viseme_bias(viseme_bias or {})
        self.register_buffer("in_mean", torch.zeros(n_mels))
        self.register_buffer("in_std", torch.ones(n_mels))
        dims = [n_mels] + [channels] * conv_layers
        self.convs = nn.ModuleList(  # every member reads the whole input, then only its own
            nn.Conv1d(a, b, kernel, groups=1 if i == 0 else members)
            for i, (a, b) in enumerate(zip(dims[:-1], dims[1:], strict=True))
        )
        self.drop = nn.Dropout(dropout)
        if members == 1:
            self.gru = nn.GRU(channels, hidden, batch_first=True)
            self.out = nn.Linear(hidden, n_visemes)
        else:
            self.gru = MemberGRUs(channels, hidden, members)
            self.out = MemberHeads(hidden, n_visemes, members)

    def set_viseme_bias(self, bias: dict[str, float]) -> None:
        """Replace the per-viseme log-odds offsets (see the module docstring); {} removes them.
        ValueError names an unknown viseme."""
        set_viseme_bias(self, bias)

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
        return self.head(y)

    def _load_from_state_dict(self, state, prefix, *args, **kwargs):
        if self.members > 1 and prefix + "gru.weight_ih_l0" in state:
            _split_block_diagonal(state, prefix, self.members, self.n_visemes)
        super()._load_from_state_dict(state, prefix, *args, **kwargs)

    def head(self, y: torch.Tensor) -> torch.Tensor:
        """GRU output [..., hidden] → logits [..., 15]; with several members, the log of their
        mean posteriors (a softmax of it is that mean); plus ``viseme_bias``."""
        logits = self.out(y)
        if self.members > 1:
            logp = F.log_softmax(logits.unflatten(-1, (self.members, self.n_visemes)), -1)
            logits = torch.logsumexp(logp, -2) - float(np.log(self.members))
        return logits + self.logit_bias

    @torch.no_grad()
    def posteriors(self, logmel: np.ndarray) -> np.ndarray:
        """[T, n_mels] log-mel → [T, 15] posteriors aligned with the input frames."""
        x = np.asarray(logmel, np.float32)
        tail = np.full((self.lookahead, self.n_mels), SILENCE_LOGMEL, np.float32)
        xt = torch.as_tensor(np.concatenate([x, tail]), device=self.in_mean.device)[None]
        logits = self(xt)[0, self.lookahead :]
        return torch.softmax(logits, -1).cpu().numpy()


class MemberGRUs(nn.Module):
    """``members`` one-layer GRUs side by side, called like one ``nn.GRU(channels, hidden)``:
    member i reads its own slice of the input channels and keeps its own slice of the hidden
    units (input [B, T, channels], state [1, B, hidden] = the members' states concatenated)."""

    def __init__(self, channels: int, hidden: int, members: int) -> None:
        super().__init__()
        self.hidden_size = hidden
        self.grus = nn.ModuleList(
            nn.GRU(channels // members, hidden // members, batch_first=True) for _ in range(members)
        )

    def forward(self, x: torch.Tensor, state: torch.Tensor | None = None):
        k = len(self.grus)
        states = state.chunk(k, -1) if state is not None else (None,) * k
        outs = [gru(xi, si) for gru, xi, si in zip(self.grus, x.chunk(k, -1), states, strict=True)]
        return torch.cat([y for y, _ in outs], -1), torch.cat([h for _, h in outs], -1)


class MemberHeads(nn.Module):
    """One linear head per member: [..., hidden] → [..., members × n_visemes], member i's
    logits from its own slice of the hidden units."""

    def __init__(self, hidden: int, n_visemes: int, members: int) -> None:
        super().__init__()
        self.heads = nn.ModuleList(nn.Linear(hidden // members, n_visemes) for _ in range(members))

    def forward(self, y: torch.Tensor) -> torch.Tensor:
        parts = y.chunk(len(self.heads), -1)
        return torch.cat([head(p) for head, p in zip(self.heads, parts, strict=True)], -1)


def _split_block_diagonal(state: dict, prefix: str, k: int, v: int) -> None:
    """Rewrite, in place, an ensemble saved before per-member GRUs existed (one dense GRU and
    head with zero off-diagonal blocks) into `MemberGRUs` / `MemberHeads` tensors."""
    for name in ("weight_ih_l0", "weight_hh_l0", "bias_ih_l0", "bias_hh_l0"):
        big = state.pop(f"{prefix}gru.{name}")
        h = big.shape[0] // 3 // k
        for i in range(k):  # gates r, z, n, each laid out over every member's units
            rows = [big[g * h * k + i * h : g * h * k + (i + 1) * h] for g in range(3)]
            if big.dim() == 2:
                cols = big.shape[1] // k
                rows = [r[:, i * cols : (i + 1) * cols] for r in rows]
            state[f"{prefix}gru.grus.{i}.{name}"] = torch.cat(rows).contiguous()
    weight, bias = state.pop(f"{prefix}out.weight"), state.pop(f"{prefix}out.bias")
    h = weight.shape[1] // k
    for i in range(k):
        block = weight[i * v : (i + 1) * v, i * h : (i + 1) * h]
        state[f"{prefix}out.heads.{i}.weight"] = block.contiguous()
        state[f"{prefix}out.heads.{i}.bias"] = bias[i * v : (i + 1) * v].contiguous()


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
        probs = torch.softmax(m.head(y)[0], -1)
        drop = min(self.skip, len(probs))
        self.skip -= drop
        return probs[drop:].cpu().numpy()

    @torch.no_grad()
    def flush(self) -> np.ndarray:
        m = self.model
        n = m.lookahead if self.seen else 0
        return self.push(np.full((n, m.n_mels), SILENCE_LOGMEL, np.float32))


@torch.no_grad()
def ensemble_members(model: VisemeFrontEnd) -> list[VisemeFrontEnd]:
    """The single front ends whose mean ``model`` is (``[model]`` for a single one); each has
    the ensemble's input normalization and no viseme bias (an ensemble's bias is its own)."""
    k = model.members
    if k == 1:
        return [model]
    hp = {**model.hparams, "members": 1}
    hp["channels"] //= k
    hp["hidden"] //= k
    hp.pop("viseme_bias", None)
    out = []
    for i in range(k):
        m = VisemeFrontEnd(**hp)
        m.set_normalization(model.in_mean, model.in_std)
        for mine, theirs in zip(m.convs, model.convs, strict=True):  # output channels stack
            mine.weight.copy_(theirs.weight.chunk(k)[i])
            mine.bias.copy_(theirs.bias.chunk(k)[i])
        m.gru.load_state_dict(model.gru.grus[i].state_dict())
        m.out.load_state_dict(model.out.heads[i].state_dict())
        m.kind = model.kind
        out.append(m.eval())
    return out


@torch.no_grad()
def _renormalized_first_conv(m: VisemeFrontEnd, mean: torch.Tensor, std: torch.Tensor):
    """``m``'s first conv (weight, bias) for input normalized by (``mean``, ``std``) instead of
    its own: its input (x - m_i) / s_i is (x0 · std + mean - m_i) / s_i for x0 the other
    normalization's, an affine map folded into the conv."""
    conv = m.convs[0]
    scale = (std / m.in_std)[None, :, None]
    shift = ((mean - m.in_mean) / m.in_std)[None, :, None]
    return conv.weight * scale, conv.bias + (conv.weight * shift).sum((1, 2))


@torch.no_grad()
def combine_frontends(models: list[VisemeFrontEnd]) -> VisemeFrontEnd:
    """One front end whose posteriors are the mean of ``models``' members (an ensemble given
    counts as its members, each weighted like any other; same lookahead and layer shapes).

    Members normalized differently (trained on different audio) are folded onto the first's
    normalization: exact but for the stream's start, whose left padding (the normalized zero)
    then stands for the first's mean log-mel rather than the member's own, a difference that
    lasts as long as the member's GRU remembers it. ValueError names what differs."""
    flat = [(i, m) for i, model in enumerate(models) for m in ensemble_members(model)]
    if len(flat) < 2:
        raise ValueError("combining front ends needs at least two")
    first = flat[0][1]
    for i, m in flat:
        for key in ("n_mels", "n_visemes", "channels", "hidden", "conv_layers", "kernel",
                    "lookahead"):  # fmt: skip
            if m.hparams[key] != first.hparams[key]:
                raise ValueError(
                    f"front end {i}: {key} {m.hparams[key]} differs from front end 0's "
                    f"{first.hparams[key]} (per member)"
                )
    k = len(flat)
    c, h = first.hparams["channels"], first.hparams["hidden"]
    hp = {**first.hparams, "channels": c * k, "hidden": h * k, "members": k}
    hp.pop("viseme_bias", None)  # an ensemble's own bias is set on it, not inherited
    out = VisemeFrontEnd(**hp)
    out.set_normalization(first.in_mean, first.in_std)
    first_conv = [_renormalized_first_conv(m, first.in_mean, first.in_std) for _, m in flat]
    out.convs[0].weight.copy_(torch.cat([w for w, _ in first_conv]))
    out.convs[0].bias.copy_(torch.cat([b for _, b in first_conv]))
    for layer, conv in enumerate(out.convs[1:], 1):  # output channels stack; groups keep them apart
        conv.weight.copy_(torch.cat([m.convs[layer].weight for _, m in flat]))
        conv.bias.copy_(torch.cat([m.convs[layer].bias for _, m in flat]))
    for i, (_, m) in enumerate(flat):
        out.gru.grus[i].load_state_dict(m.gru.state_dict())
        out.out.heads[i].load_state_dict(m.out.state_dict())
    out.kind = first.kind
    return out.eval()


def downsample_posteriors(probs: np.ndarray, factor: int = 2) -> np.ndarray:
    """[T, 15] posteriors at 100 Hz → [T // factor, 15] at 50 Hz (mean of each pair of frames:
    the 20 ms frame j covers the 10 ms frames 2j and 2j + 1)."""
    t = len(probs) // factor
    return np.asarray(probs[: t * factor], np.float32).reshape(t, factor, -1).mean(axis=1)
