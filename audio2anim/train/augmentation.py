"""Training-time audio and spectrum augmentation, on batches of device tensors, drawn from
a seeded ``torch.Generator``: speed perturbation (with `stretch_frames` for frame labels), gain,
EQ, noise and rooms (`augment_audio`, `add_reverb`), vocal tract length perturbation and
SpecAugment masks."""

from __future__ import annotations

import numpy as np
import torch
from torch.nn import functional as F

from audio2anim.audio import MODEL_RATE

from .data import HOP


def speed_perturb(audio: torch.Tensor, amount: float, gen: torch.Generator):
    """Resample [B, F * 320] audio by one random factor r in [1 - amount, 1 + amount] (played
    r times faster: shorter, higher) → (audio [B, F' * 320], r), F' = round(F / r). Frame-wise
    labels follow with `stretch_frames`; label sequences (CTC) are unchanged."""
    frames = audio.shape[1] // HOP
    if amount <= 0:
        return audio, 1.0
    r = 1.0 + amount * (2 * float(torch.rand(1, device=audio.device, generator=gen)) - 1)
    n = max(1, round(frames / r)) * HOP
    out = F.interpolate(audio[:, None], size=n, mode="linear", align_corners=False)[:, 0]
    return out, r


def stretch_frames(x: torch.Tensor, r: float, n: int) -> torch.Tensor:
    """Frame-wise [B, T, ...] values of audio sped up by ``r`` → [B, n, ...]: new frame t covers
    old frame floor((t + 0.5) r)."""
    src = ((torch.arange(n, device=x.device) + 0.5) * r).long().clamp(max=x.shape[1] - 1)
    return x[:, src]


def augment_audio(
    x: torch.Tensor,
    gen: torch.Generator,
    gain_db=(-12.0, 6.0),
    eq_db: float = 6.0,
    reverb: float = 0.0,
) -> torch.Tensor:
    """Random gain (uniform in ``gain_db``), smooth random EQ (±``eq_db`` at 6 control points
    over 0…8 kHz), white/brown noise at 5–40 dB SNR and, for a ``reverb`` fraction of the crops,
    a room (`add_reverb`). Real recordings arrive at any level, through any microphone and in
    any room; these ranges are what the front end learns to ignore."""
    b, n = x.shape
    dev = x.device

    def rand(*shape):
        return torch.rand(*shape, device=dev, generator=gen)

    if reverb > 0:
        x = torch.where(rand(b, 1) < reverb, add_reverb(x, gen), x)
    spec = torch.fft.rfft(x, dim=-1)
    ctrl = ((rand(b, 1, 6) * 2 - 1) * eq_db).float()  # dB at 6 control points over 0..8 kHz
    curve = F.interpolate(ctrl, size=spec.shape[-1], mode="linear", align_corners=True)[:, 0]
    x = torch.fft.irfft(spec * 10 ** (curve / 20), n=n, dim=-1)
    rms = x.pow(2).mean(-1, keepdim=True).sqrt().clamp(min=1e-4)
    white = torch.randn(b, n, device=dev, generator=gen)
    brown = torch.cumsum(torch.randn(b, n, device=dev, generator=gen), -1)
    brown = brown - brown.mean(-1, keepdim=True)
    brown = brown / brown.std(-1, keepdim=True).clamp(min=1e-6)
    mix = rand(b, 1)
    noise = mix * white + (1 - mix) * brown
    snr_db = 5 + 35 * rand(b, 1)
    use_noise = (rand(b, 1) < 0.7).float()
    x = x + use_noise * noise * rms / 10 ** (snr_db / 20)
    lo, hi = gain_db
    gain = 10 ** ((lo + rand(b, 1) * (hi - lo)) / 20)
    return (x * gain).clamp(-1, 1)


def add_reverb(x: torch.Tensor, gen: torch.Generator, sr: int = MODEL_RATE) -> torch.Tensor:
    """Audio [B, N] in a random room each: convolved with a synthetic impulse response, the
    direct sound at t = 0 (so labels keep their times) plus exponentially decaying noise with
    RT60 0.15–0.8 s at a direct-to-reverberant ratio of −5…+15 dB; the level is kept."""
    b, n = x.shape
    dev = x.device
    length = int(0.8 * sr)
    t = torch.arange(length, device=dev) / sr
    rt60 = 0.15 + 0.65 * torch.rand(b, 1, device=dev, generator=gen)
    tail = torch.randn(b, length, device=dev, generator=gen) * torch.exp(-6.9 * t / rt60)
    tail[:, 0] = 0.0  # the reverberant part only, for its level
    drr_db = -5 + 20 * torch.rand(b, 1, device=dev, generator=gen)
    rir = tail / tail.pow(2).sum(-1, keepdim=True).sqrt().clamp(min=1e-9) * 10 ** (-drr_db / 20)
    rir[:, 0] = 1.0  # the direct sound
    size = n + length
    wet = torch.fft.irfft(torch.fft.rfft(x, size) * torch.fft.rfft(rir, size), size)[:, :n]
    scale = x.pow(2).mean(-1, keepdim=True).sqrt() / wet.pow(2).mean(-1, keepdim=True).sqrt()
    return wet * scale.nan_to_num(1.0).clamp(max=10.0)


def vtlp_filterbanks(amount: float, b: int, gen: torch.Generator, device) -> torch.Tensor:
    """One `vtlp_filterbank` per crop, factors uniform in [1 - amount, 1 + amount] → [B, K, M]."""
    from audio2anim.models.logmel import vtlp_filterbank

    alphas = 1 + amount * (2 * torch.rand(b, generator=gen, device=device) - 1)
    return torch.as_tensor(
        np.stack([vtlp_filterbank(float(a)) for a in alphas.cpu()]), device=device
    )


def spec_augment(
    lm: torch.Tensor, fill: torch.Tensor, gen: torch.Generator, bands=(2, 8), spans=(2, 4)
) -> torch.Tensor:
    """Log-mel [B, T, M] with ``bands[0]`` random mel bands of width 0…``bands[1]`` and
    ``spans[0]`` random spans of 0…``spans[1]`` frames per crop set to ``fill`` [M]."""
    b, t, m = lm.shape
    dev = lm.device

    def masks(count: int, width: int, size: int) -> torch.Tensor:
        w = torch.randint(0, width + 1, (b, count, 1), device=dev, generator=gen)
        start = (torch.rand(b, count, 1, device=dev, generator=gen) * (size - w + 1)).long()
        pos = torch.arange(size, device=dev)
        return ((pos >= start) & (pos < start + w)).any(1)  # [B, size]

    hit = masks(*bands, m)[:, None, :] | masks(*spans, t)[:, :, None]
    return torch.where(hit, fill.to(lm.dtype), lm)
