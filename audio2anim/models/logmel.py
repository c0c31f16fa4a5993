"""Log-mel features: 80 mel bands, 25 ms Hann window, 10 ms hop at 16 kHz (100 frames/s).

Framing is causal: frame ``i`` is computed from the 400 samples that *end* at sample
``(i + 1) * 160`` (zeros before the stream start), so it can be emitted as soon as its last
10 ms of audio have arrived, and a stream of ``n`` samples has exactly ``n // 160`` frames.
`LogMelStream` keeps the last 240 samples between blocks, which makes its block-wise output
equal to the one-shot `logmel` output whatever the block sizes.

Three implementations of the same function: numpy (`logmel`, `LogMelStream`), torch
(`logmel_torch`, batched and differentiable, for GPU training). The mel filterbank is the HTK
mel scale with Slaney-style area normalization off (peak 1), 0–8000 Hz; values are
``log(max(mel_power, 1e-10))`` (natural log; -23.03 is the floor of digital silence).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from functools import lru_cache

import numpy as np

from audio2anim.audio import MODEL_RATE


@dataclass(frozen=True)
class LogMelConfig:
    """Parameters of the log-mel front end; stored in every checkpoint that consumes it."""

    sample_rate: int = MODEL_RATE
    n_mels: int = 80
    win_length: int = 400  # 25 ms
    hop_length: int = 160  # 10 ms
    n_fft: int = 512
    fmin: float = 0.0
    fmax: float = 8000.0
    floor: float = 1e-10

    @property
    def frame_rate(self) -> float:
        return self.sample_rate / self.hop_length

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> LogMelConfig:
        return cls(**d)


DEFAULT = LogMelConfig()
SILENCE_LOGMEL = float(np.log(DEFAULT.floor))  # log-mel of digital silence


def _hz_to_mel(f):
    return 2595.0 * np.log10(1.0 + np.asarray(f, dtype=np.float64) / 700.0)


def _mel_to_hz(m):
    return 700.0 * (10.0 ** (np.asarray(m, dtype=np.float64) / 2595.0) - 1.0)


def _triangles(freqs: np.ndarray, cfg: LogMelConfig) -> np.ndarray:
    """The HTK-mel triangles evaluated at ``freqs`` (Hz) → [len(freqs), n_mels], float32."""
    edges = _mel_to_hz(np.linspace(_hz_to_mel(cfg.fmin), _hz_to_mel(cfg.fmax), cfg.n_mels + 2))
    lo, mid, hi = edges[:-2, None], edges[1:-1, None], edges[2:, None]
    up = (freqs[None, :] - lo) / (mid - lo)
    down = (hi - freqs[None, :]) / (hi - mid)
    fb = np.maximum(0.0, np.minimum(up, down))
    return fb.T.astype(np.float32)


def _bin_freqs(cfg: LogMelConfig) -> np.ndarray:
    return np.linspace(0.0, cfg.sample_rate / 2, cfg.n_fft // 2 + 1)


@lru_cache(maxsize=8)
def mel_filterbank(cfg: LogMelConfig = DEFAULT) -> np.ndarray:
    """Triangular HTK-mel filters, shape [n_fft // 2 + 1, n_mels], float32."""
    return _triangles(_bin_freqs(cfg), cfg)


def vtlp_filterbank(alpha: float, cfg: LogMelConfig = DEFAULT, f_hi: float = 4800.0) -> np.ndarray:
    """`mel_filterbank` of a spectrum stretched by ``alpha`` (vocal tract length perturbation,
    Jaitly & Hinton 2013): energy at f counts as energy at ``alpha`` f, piecewise linear so
    that the Nyquist frequency stays put. ``alpha`` > 1 reads a voice as a shorter vocal tract
    (higher formants). ``alpha`` = 1 is `mel_filterbank`."""
    f = _bin_freqs(cfg)
    nyq = cfg.sample_rate / 2
    knee = f_hi * min(alpha, 1.0) / alpha  # where the warp bends to keep Nyquist fixed
    top = nyq - (nyq - f_hi * min(alpha, 1.0)) / (nyq - knee) * (nyq - f)
    return _triangles(np.where(f <= knee, alpha * f, top), cfg)


@lru_cache(maxsize=8)
def _window(cfg: LogMelConfig = DEFAULT) -> np.ndarray:
    # periodic Hann, the same as torch.hann_window(win_length)
    n = np.arange(cfg.win_length)
    return (0.5 - 0.5 * np.cos(2 * np.pi * n / cfg.win_length)).astype(np.float32)


def _frames_logmel(frames: np.ndarray, cfg: LogMelConfig) -> np.ndarray:
    spec = np.fft.rfft(frames * _window(cfg), n=cfg.n_fft, axis=-1)
    power = (spec.real**2 + spec.imag**2).astype(np.float32)
    return np.log(np.maximum(power @ mel_filterbank(cfg), cfg.floor)).astype(np.float32)


def logmel(samples: np.ndarray, cfg: LogMelConfig = DEFAULT) -> np.ndarray:
    """One-shot log-mel of mono float samples at ``cfg.sample_rate`` → [n // hop, n_mels]."""
    x = np.asarray(samples, dtype=np.float32)
    if x.ndim != 1:
        raise ValueError(f"logmel: expected mono samples [n], got shape {x.shape}")
    n_frames = len(x) // cfg.hop_length
    if n_frames == 0:
        return np.zeros((0, cfg.n_mels), np.float32)
    pad = cfg.win_length - cfg.hop_length
    xp = np.concatenate([np.zeros(pad, np.float32), x[: n_frames * cfg.hop_length]])
    frames = np.lib.stride_tricks.sliding_window_view(xp, cfg.win_length)[:: cfg.hop_length]
    return _frames_logmel(frames[:n_frames], cfg)


class LogMelStream:
    """Block-wise log-mel whose concatenated output equals `logmel` of the whole stream."""

    def __init__(self, cfg: LogMelConfig = DEFAULT) -> None:
        self.cfg = cfg
        self.reset()

    def reset(self) -> None:
        self._buf = np.zeros(self.cfg.win_length - self.cfg.hop_length, np.float32)
        self.frames_out = 0

    def push(self, samples: np.ndarray) -> np.ndarray:
        """Feed the next block of samples; returns the frames it completes, [k, n_mels]."""
        cfg = self.cfg
        buf = np.concatenate([self._buf, np.asarray(samples, dtype=np.float32).reshape(-1)])
        usable = len(buf) - (cfg.win_length - cfg.hop_length)
        k = max(0, usable // cfg.hop_length)
        if k == 0:
            self._buf = buf
            return np.zeros((0, cfg.n_mels), np.float32)
        frames = np.lib.stride_tricks.sliding_window_view(buf, cfg.win_length)[:: cfg.hop_length][
            :k
        ]
        out = _frames_logmel(frames, cfg)
        self._buf = buf[k * cfg.hop_length :]
        self.frames_out += k
        return out


def logmel_torch(samples, cfg: LogMelConfig = DEFAULT, filterbank=None):
    """Batched torch log-mel: [B, n] float → [B, n // hop, n_mels] (same framing as `logmel`).
    ``filterbank``: a tensor [n_fft // 2 + 1, n_mels] or one per example [B, …] instead of
    `mel_filterbank` (training augmentation: `vtlp_filterbank`)."""
    import torch

    x = samples if samples.ndim == 2 else samples[None]
    n_frames = x.shape[-1] // cfg.hop_length
    pad = cfg.win_length - cfg.hop_length
    xp = torch.nn.functional.pad(x[:, : n_frames * cfg.hop_length], (pad, 0))
    frames = xp.unfold(-1, cfg.win_length, cfg.hop_length)  # [B, T, win]
    win = torch.hann_window(cfg.win_length, periodic=True, device=x.device, dtype=x.dtype)
    spec = torch.fft.rfft(frames * win, n=cfg.n_fft, dim=-1)
    power = spec.real**2 + spec.imag**2
    fb = mel_filterbank(cfg) if filterbank is None else filterbank
    fb = torch.as_tensor(fb, device=x.device, dtype=x.dtype)
    out = torch.log(torch.clamp(power @ fb, min=cfg.floor))
    return out if samples.ndim == 2 else out[0]
