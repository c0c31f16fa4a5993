"""Seeded audio augmentations for the synthetic corpus; phone timings follow the audio.

Each augmentation is drawn per utterance from a ``numpy.random.Generator`` (so a corpus is
reproducible from its seed) and recorded in the manifest's ``augment`` dict:

==========  ===========================================  ========================================
name        what                                         effect on phone timings
==========  ===========================================  ========================================
speed       resample, like tape speed (0.9–1.1×)          every time divided by the factor
pitch       ``sox pitch`` (±3 semitones), tempo kept      none (length kept to the sample)
reverb      exponentially decaying noise room response    none (the tail past the end is cut)
            (RT60 0.2–0.7 s, 10–40 % wet)
phone       telephone line: 300–3400 Hz band-pass and     none
            an 8 kHz round trip
noise       white/pink noise at 5–30 dB SNR (over the     none
            speech frames)
gain        −12…+6 dB, then peak-limited to 0.99          none
==========  ===========================================  ========================================

Applied in that order. `apply` is the entry point.
"""

from __future__ import annotations

import subprocess
import tempfile
from pathlib import Path

import numpy as np

from .corpus import PhoneSegment

NAMES = ("speed", "pitch", "reverb", "phone", "noise", "gain")


def speed(audio, sr, segments, factor: float):
    """Tape-speed change: faster (factor > 1) is shorter and higher."""
    import soxr

    out = soxr.resample(audio, sr * factor, sr).astype(np.float32)
    duration = len(out) / sr
    segs = [PhoneSegment(s.start / factor, s.end / factor, s.phone) for s in segments]
    segs[-1] = PhoneSegment(segs[-1].start, duration, segs[-1].phone)
    if segs[-1].end <= segs[-1].start:  # rounding left the last phone empty: merge it
        segs.pop()
        segs[-1] = PhoneSegment(segs[-1].start, duration, segs[-1].phone)
    return out, segs


def pitch(audio, sr, semitones: float) -> np.ndarray:
    """Pitch shift by ``semitones`` keeping the tempo (sox's WSOLA ``pitch`` effect)."""
    import soundfile as sf

    from audio2anim.audio import read_audio

    with tempfile.TemporaryDirectory(prefix="a2a-pitch-") as tmp:
        src, dst = Path(tmp) / "in.wav", Path(tmp) / "out.wav"
        sf.write(src, audio, sr, subtype="FLOAT")
        cmd = ["sox", str(src), str(dst), "pitch", f"{semitones * 100:.0f}", "rate", str(sr)]
        proc = subprocess.run(cmd, capture_output=True, text=True)
        if proc.returncode != 0:
            raise RuntimeError(f"sox pitch failed: {proc.stderr.strip()}")
        out, _ = read_audio(dst)
    out = out[: len(audio)]
    return np.pad(out, (0, len(audio) - len(out))).astype(np.float32)


def reverb(audio, sr, rt60: float, wet: float, rng: np.random.Generator) -> np.ndarray:
    """Convolve with a synthetic room response: noise decaying 60 dB over ``rt60`` seconds."""
    from scipy.signal import fftconvolve

    n = int(rt60 * sr)
    t = np.arange(n) / sr
    ir = rng.standard_normal(n) * 10 ** (-3 * t / rt60)
    ir /= np.sqrt(np.sum(ir**2))
    tail = fftconvolve(audio, ir)[: len(audio)]
    return ((1 - wet) * audio + wet * tail).astype(np.float32)


def phone_line(audio, sr) -> np.ndarray:
    """Telephone band: 300–3400 Hz band-pass (4th-order Butterworth) via an 8 kHz round trip."""
    import soxr
    from scipy.signal import butter, sosfilt

    narrow = soxr.resample(audio, sr, 8000)
    sos = butter(4, [300, 3400], btype="bandpass", fs=8000, output="sos")
    narrow = sosfilt(sos, narrow)
    out = soxr.resample(narrow, 8000, sr)[: len(audio)]
    return np.pad(out, (0, len(audio) - len(out))).astype(np.float32)


def speech_power(audio: np.ndarray, sr: int) -> float:
    """Mean power over 20 ms frames within 40 dB of the loudest one (the speech, not pauses)."""
    hop = int(0.02 * sr)
    n = len(audio) // hop
    if n == 0:
        return float(np.mean(audio**2) + 1e-12)
    power = np.mean(audio[: n * hop].reshape(n, hop).astype(np.float64) ** 2, axis=1)
    active = power[power > power.max() * 1e-4]
    return float(active.mean()) if len(active) else 1e-12


def noise(audio, sr, snr_db: float, colour: str, rng: np.random.Generator) -> np.ndarray:
    """Add white or pink noise at ``snr_db`` relative to the speech power."""
    white = rng.standard_normal(len(audio))
    if colour == "pink":  # 1/f spectrum shaping in the frequency domain
        spec = np.fft.rfft(white)
        f = np.fft.rfftfreq(len(white), 1 / sr)
        spec /= np.sqrt(np.maximum(f, 20.0))
        white = np.fft.irfft(spec, len(white))
    white /= np.sqrt(np.mean(white**2) + 1e-12)
    scale = np.sqrt(speech_power(audio, sr) / 10 ** (snr_db / 10))
    return (audio + scale * white).astype(np.float32)


def gain(audio, db: float) -> np.ndarray:
    out = audio * 10 ** (db / 20)
    peak = np.max(np.abs(out)) if len(out) else 0.0
    if peak > 0.99:
        out = out * (0.99 / peak)
    return out.astype(np.float32)


def apply(
    audio: np.ndarray,
    sr: int,
    segments: list[PhoneSegment],
    enabled: tuple[str, ...],
    probability: float,
    rng: np.random.Generator,
) -> tuple[np.ndarray, list[PhoneSegment], dict]:
    """Apply each augmentation in ``enabled`` with ``probability``; returns what was done."""
    unknown = set(enabled) - set(NAMES)
    if unknown:
        raise ValueError(f"unknown augmentation(s) {sorted(unknown)} (known: {', '.join(NAMES)})")
    done: dict = {}
    # Draw every decision up front so one augmentation's presence never shifts another's draws.
    draws = {name: (rng.random() < probability, rng.random(), rng.random()) for name in NAMES}
    sub_rng = np.random.default_rng(rng.integers(2**63))

    def on(name: str) -> bool:
        return name in enabled and draws[name][0]

    if on("speed"):
        factor = round(0.9 + 0.2 * draws["speed"][1], 3)
        audio, segments = speed(audio, sr, segments, factor)
        done["speed"] = factor
    if on("pitch"):
        semis = round(-3 + 6 * draws["pitch"][1], 2)
        audio = pitch(audio, sr, semis)
        done["pitch_semitones"] = semis
    if on("reverb"):
        rt60, wet = (
            round(0.2 + 0.5 * draws["reverb"][1], 3),
            round(0.1 + 0.3 * draws["reverb"][2], 3),
        )
        audio = reverb(audio, sr, rt60, wet, sub_rng)
        done["reverb"] = {"rt60": rt60, "wet": wet}
    if on("phone"):
        audio = phone_line(audio, sr)
        done["phone_line"] = True
    if on("noise"):
        snr = round(5 + 25 * draws["noise"][1], 1)
        colour = "pink" if draws["noise"][2] < 0.5 else "white"
        audio = noise(audio, sr, snr, colour, sub_rng)
        done["noise"] = {"snr_db": snr, "colour": colour}
    if on("gain"):
        db = round(-12 + 18 * draws["gain"][1], 1)
        audio = gain(audio, db)
        done["gain_db"] = db
    else:
        audio = gain(audio, 0.0)  # peak-limit whatever the other steps did
    return audio, segments, done
