"""The procedural animation teacher: phone timings + audio → per-frame ARKit parameters.

This makes the training targets of both methods when no captured animation exists.
``animate(segments, phoneset, audio, sample_rate, frame_rate, seed)`` returns
``{"mouth": [T, len(arkit.MOUTH)], "eyes": [T, len(arkit.EYES)]}`` in [0, 1], columns in
`audio2anim.arkit` order, ``T = int(len(audio) / sample_rate * frame_rate)``; frame ``i``
describes time ``(i + 0.5) / frame_rate`` (the same convention as
`audio2anim.visemes.viseme_ids`).

Mouth
-----
1. Each phone's viseme (`visemes.viseme_of`) picks a target pose from ``POSES`` (below; values
   not listed are 0; L/R pairs are set together):

   ======  ================================================================================
   sil     neutral (all 0)
   PP      jawOpen .06, mouthClose .06, mouthPress .45, mouthRollLower .2, mouthRollUpper .15
   FF      jawOpen .10, mouthClose .04, mouthRollLower .5, mouthUpperUp .25, mouthShrugUpper .1
   TH      jawOpen .18, mouthLowerDown .15, mouthUpperUp .1
   DD      jawOpen .16, mouthLowerDown .1, mouthStretch .12, mouthSmile .05
   kk      jawOpen .24, mouthLowerDown .1, mouthStretch .1
   CH      jawOpen .12, mouthFunnel .45, mouthPucker .2, mouthUpperUp .2, mouthLowerDown .2,
           mouthShrugUpper .15
   SS      jawOpen .06, mouthStretch .3, mouthSmile .2, mouthUpperUp .15, mouthLowerDown .1
   nn      jawOpen .14, mouthLowerDown .05, mouthStretch .05
   RR      jawOpen .18, mouthFunnel .3, mouthPucker .2, mouthShrugUpper .1
   aa      jawOpen .62, mouthLowerDown .3, mouthUpperUp .1, mouthStretch .1
   E       jawOpen .38, mouthStretch .3, mouthSmile .2, mouthLowerDown .2, mouthUpperUp .1
   ih      jawOpen .22, mouthSmile .35, mouthStretch .3, mouthUpperUp .1
   oh      jawOpen .36, mouthFunnel .55, mouthPucker .3, mouthLowerDown .1
   ou      jawOpen .14, mouthFunnel .45, mouthPucker .7, mouthShrugLower .1
   ======  ================================================================================

   Within the aa viseme jawOpen is scaled per vowel (``_JAW_SCALE``): AA/AE 1.0, AO/AW/AY
   0.9, stressed AH 0.8, schwa (AH0, AX, espeak ``@``) 0.5, so AA/AE open the jaw most.
   jawOpen is also scaled by loudness: ``0.85 + 0.3 * e`` with ``e`` the frame's RMS energy
   relative to the utterance (0..1), so stressed, loud syllables open wider.
2. Coarticulation by dominance functions (Cohen & Massaro 1993): phone ``n`` exerts
   ``D_n(t) = alpha_n * exp(-d(t) / tau)`` where ``d`` is the distance from the phone's core
   (its middle half) and ``tau`` depends on the side: rounding (funnel/pucker) of rounded
   visemes (ou, oh, CH, RR) reaches 180 ms ahead (**anticipatory rounding**) versus 60 ms
   behind; other parameters use 70 ms both ways. Each parameter is the dominance-weighted
   mean of the targets. ``alpha`` is 1 for vowels, 0.7 for most consonants, 3 for the lip
   parameters of bilabials and labiodentals (they dominate their neighbours), 0.3 for silence
   (pauses relax slowly to neutral).
3. **Bilabials always reach closure**: in every P/B/M (viseme PP) the frames inside the phone
   (or the frame nearest its centre if none falls inside) are set to the closure pose
   (jawOpen ≤ .06, mouthClose = jawOpen, mouthLowerDown/UpperUp = 0, mouthPress ≥ .3), so
   `lip_aperture` is 0 there whatever the neighbours; the frame just before and just after
   move halfway to that pose, so the lips close fast but do not snap.

Eyes
----
- **Blinks** (eyeBlink L/R, with a little eyeSquint) at the start, at every pause of at least
  120 ms and at phrase boundaries (pauses followed by speech), and spontaneously when no blink
  happened for a seeded 2.5–5 s. A blink closes in 80 ms, holds 40 ms, opens in 150 ms; its
  onset jitters by up to 60 ms (seeded).
- **Brow raises on pitch accents**: F0 (autocorrelation, 70–400 Hz, 10 ms hop) and RMS energy
  are measured on the audio; an accent is a local F0 maximum at least 1.5 semitones above the
  utterance's voiced median with energy above its median, accents at least 400 ms apart.
  browInnerUp and browOuterUp L/R rise (80 ms attack, 350 ms decay) in proportion to the
  accent's prominence, eyeWide follows at a third of it. Phrase-final falls (last voiced
  stretch well below the median) lower the brows a little (browDown).

Everything random (pose jitter of ±8 %, blink timing) comes from ``numpy.random.default_rng(seed)``,
so the output is a deterministic function of the inputs and the seed.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from audio2anim import arkit
from audio2anim.visemes import VISEMES, normalize_phone, phone_class, viseme_of

_POSE_SPEC: dict[str, dict[str, float]] = {
    "sil": {},
    "PP": {"jawOpen": 0.06, "mouthClose": 0.06, "mouthPress": 0.45, "mouthRollLower": 0.2,
           "mouthRollUpper": 0.15},
    "FF": {"jawOpen": 0.10, "mouthClose": 0.04, "mouthRollLower": 0.5, "mouthUpperUp": 0.25,
           "mouthShrugUpper": 0.1},
    "TH": {"jawOpen": 0.18, "mouthLowerDown": 0.15, "mouthUpperUp": 0.1},
    "DD": {"jawOpen": 0.16, "mouthLowerDown": 0.1, "mouthStretch": 0.12, "mouthSmile": 0.05},
    "kk": {"jawOpen": 0.24, "mouthLowerDown": 0.1, "mouthStretch": 0.1},
    "CH": {"jawOpen": 0.12, "mouthFunnel": 0.45, "mouthPucker": 0.2, "mouthUpperUp": 0.2,
           "mouthLowerDown": 0.2, "mouthShrugUpper": 0.15},
    "SS": {"jawOpen": 0.06, "mouthStretch": 0.3, "mouthSmile": 0.2, "mouthUpperUp": 0.15,
           "mouthLowerDown": 0.1},
    "nn": {"jawOpen": 0.14, "mouthLowerDown": 0.05, "mouthStretch": 0.05},
    "RR": {"jawOpen": 0.18, "mouthFunnel": 0.3, "mouthPucker": 0.2, "mouthShrugUpper": 0.1},
    "aa": {"jawOpen": 0.62, "mouthLowerDown": 0.3, "mouthUpperUp": 0.1, "mouthStretch": 0.1},
    "E": {"jawOpen": 0.38, "mouthStretch": 0.3, "mouthSmile": 0.2, "mouthLowerDown": 0.2,
          "mouthUpperUp": 0.1},
    "ih": {"jawOpen": 0.22, "mouthSmile": 0.35, "mouthStretch": 0.3, "mouthUpperUp": 0.1},
    "oh": {"jawOpen": 0.36, "mouthFunnel": 0.55, "mouthPucker": 0.3, "mouthLowerDown": 0.1},
    "ou": {"jawOpen": 0.14, "mouthFunnel": 0.45, "mouthPucker": 0.7, "mouthShrugLower": 0.1},
}  # fmt: skip
_PAIRED = ("mouthSmile", "mouthStretch", "mouthPress", "mouthLowerDown", "mouthUpperUp")


def _pose_table() -> np.ndarray:
    table = np.zeros((len(VISEMES), len(arkit.MOUTH)), dtype=np.float64)
    col = {name: j for j, name in enumerate(arkit.MOUTH)}
    for vis, spec in _POSE_SPEC.items():
        for key, value in spec.items():
            names = [key + "Left", key + "Right"] if key in _PAIRED else [key]
            for name in names:
                table[VISEMES.index(vis), col[name]] = value
    return table


POSES: np.ndarray = _pose_table()  # [15 visemes, len(MOUTH)]
_M = {name: j for j, name in enumerate(arkit.MOUTH)}
_E = {name: j for j, name in enumerate(arkit.EYES)}
_ROUNDING_COLS = [_M["mouthFunnel"], _M["mouthPucker"]]
_LIP_COLS = [_M[n] for n in ("mouthClose", "mouthPressLeft", "mouthPressRight",
                             "mouthRollLower", "mouthRollUpper")]  # fmt: skip
_ROUNDED_VISEMES = {VISEMES.index(v) for v in ("ou", "oh", "CH", "RR")}
_VOWEL_VISEMES = {VISEMES.index(v) for v in ("aa", "E", "ih", "oh", "ou")}
_LABIAL_VISEMES = {VISEMES.index(v) for v in ("PP", "FF")}
_PP = VISEMES.index("PP")

# jawOpen scale within the aa viseme (ARPAbet stress digit kept: AH0 is schwa).
_JAW_SCALE_ARPABET = {"AA": 1.0, "AE": 1.0, "AO": 0.9, "AW": 0.9, "AY": 0.9, "AH": 0.8,
                      "AH0": 0.5, "AX": 0.5}  # fmt: skip
_JAW_SCALE_ESPEAK = {"A:": 1.0, "aa": 1.0, "a": 1.0, "a2": 1.0, "a/": 1.0, "0": 1.0,
                     "A@": 0.95, "aU": 0.9, "aU@": 0.9, "aI": 0.9, "aI2": 0.9, "aI3": 0.9,
                     "aI@": 0.9, "V": 0.8, "@": 0.5, "@-": 0.5, "@2": 0.5, "@5": 0.5, "@#": 0.5,
                     "a#": 0.6, "A#": 0.8}  # fmt: skip


def _jaw_scale(phone: str, phoneset: str) -> float:
    if phoneset == "arpabet":
        p = phone.upper()
        if p in _JAW_SCALE_ARPABET:
            return _JAW_SCALE_ARPABET[p]
        return _JAW_SCALE_ARPABET.get(normalize_phone(phone, phoneset), 1.0)
    return _JAW_SCALE_ESPEAK.get(phone, 1.0)


def lip_aperture(mouth: np.ndarray) -> np.ndarray:
    """Vertical lip opening implied by a mouth-group array [T, len(MOUTH)] → [T], ≥ 0.

    ARKit's mouthClose brings the lips together *against* jawOpen (lips shut when they are
    equal); lowerDown/upperUp pull the lips apart on top of that.
    """
    gap = mouth[:, _M["jawOpen"]] - mouth[:, _M["mouthClose"]]
    pull = 0.25 * (
        mouth[:, _M["mouthLowerDownLeft"]] + mouth[:, _M["mouthLowerDownRight"]]
        + mouth[:, _M["mouthUpperUpLeft"]] + mouth[:, _M["mouthUpperUpRight"]]
    )  # fmt: skip
    return np.maximum(gap, 0.0) + pull


# ---------------------------------------------------------------------------- prosody


def frame_energy(audio: np.ndarray, sample_rate: int, hop_s: float = 0.01, win_s: float = 0.03):
    """RMS energy per ``hop_s`` frame (centred windows) → [F] float64."""
    hop = max(1, int(round(hop_s * sample_rate)))
    win = max(hop, int(round(win_s * sample_rate)))
    n = int(np.ceil(len(audio) / hop))
    padded = np.pad(audio.astype(np.float64), (win // 2, win))
    idx = np.arange(n)[:, None] * hop + np.arange(win)[None, :]
    return np.sqrt(np.mean(padded[idx] ** 2, axis=1))


def pitch_track(audio: np.ndarray, sample_rate: int, hop_s: float = 0.01) -> np.ndarray:
    """F0 in Hz per ``hop_s`` frame (0 = unvoiced) by normalized autocorrelation, 70–400 Hz."""
    hop = max(1, int(round(hop_s * sample_rate)))
    win = int(0.04 * sample_rate)
    n = int(np.ceil(len(audio) / hop))
    if n == 0:
        return np.zeros(0)
    padded = np.pad(audio.astype(np.float64), (win // 2, win))
    frames = padded[np.arange(n)[:, None] * hop + np.arange(win)[None, :]]
    frames = frames - frames.mean(axis=1, keepdims=True)
    nfft = 1 << (2 * win - 1).bit_length()
    spec = np.fft.rfft(frames, nfft, axis=1)
    ac = np.fft.irfft(np.abs(spec) ** 2, nfft, axis=1)[:, :win]
    energy = ac[:, 0]
    lag_min, lag_max = int(sample_rate / 400), min(win - 1, int(sample_rate / 70))
    norm = ac[:, lag_min : lag_max + 1] / np.maximum(energy[:, None], 1e-12)
    best = np.argmax(norm, axis=1)
    peak = norm[np.arange(n), best]
    lag = best + lag_min
    f0 = sample_rate / lag
    loud = energy > 0.05 * np.median(energy[energy > 0]) if np.any(energy > 0) else energy > 0
    voiced = (peak > 0.45) & loud & (energy > 1e-8)
    return np.where(voiced, f0, 0.0)


def _resample_track(track: np.ndarray, hop_s: float, times: np.ndarray) -> np.ndarray:
    if len(track) == 0:
        return np.zeros(len(times))
    src_t = np.arange(len(track)) * hop_s
    return np.interp(times, src_t, track)


def pitch_accents(audio: np.ndarray, sample_rate: int) -> list[tuple[float, float]]:
    """(time s, prominence 0..1) of pitch accents: F0 peaks ≥ 1.5 semitones over the median."""
    hop = 0.01
    f0 = pitch_track(audio, sample_rate, hop)
    energy = frame_energy(audio, sample_rate, hop)[: len(f0)]
    voiced = f0 > 0
    if voiced.sum() < 5:
        return []
    semis = np.zeros_like(f0)
    median = np.median(f0[voiced])
    semis[voiced] = 12 * np.log2(f0[voiced] / median)
    # smooth over 50 ms so one glottal jitter is no accent
    kernel = np.ones(5) / 5
    smooth = np.convolve(np.where(voiced, semis, 0), kernel, "same") / np.maximum(
        np.convolve(voiced.astype(float), kernel, "same"), 1e-6
    )
    smooth[~voiced] = -np.inf
    e_med = np.median(energy[voiced])
    candidates = []
    for i in range(2, len(smooth) - 2):
        window = smooth[max(0, i - 15) : i + 16]  # ±150 ms local maximum
        if smooth[i] >= 1.5 and smooth[i] == window.max() and energy[i] >= e_med:
            candidates.append((smooth[i], i))
    accents: list[tuple[float, float]] = []
    for height, i in sorted(candidates, reverse=True):
        t = i * hop
        if all(abs(t - a) >= 0.4 for a, _ in accents):
            accents.append((t, float(min(1.0, (height - 1.0) / 5.0))))
    return sorted(accents)


# ---------------------------------------------------------------------------- animate


def _dominance(starts, ends, times, tau_before, tau_after) -> np.ndarray:
    """[N, T] exp(-distance to the segment core / tau), tau depending on the side."""
    dur = ends - starts
    core_a = (starts + 0.25 * dur)[:, None]
    core_b = (ends - 0.25 * dur)[:, None]
    t = times[None, :]
    before = np.maximum(core_a - t, 0.0)  # frame is before the phone: anticipation
    after = np.maximum(t - core_b, 0.0)  # frame is after the phone: carry-over
    return np.exp(-before / tau_before[:, None] - after / tau_after[:, None])


def _mouth(segments, phoneset, times, energy_rel, rng) -> np.ndarray:
    vis = np.array([viseme_of(s[2], phoneset) for s in segments])
    starts = np.array([s[0] for s in segments], dtype=np.float64)
    ends = np.array([max(s[1], s[0] + 1e-3) for s in segments], dtype=np.float64)
    targets = POSES[vis].copy()
    targets[:, _M["jawOpen"]] *= [_jaw_scale(s[2], phoneset) for s in segments]
    targets *= rng.uniform(0.92, 1.08, size=targets.shape)  # seeded per-phone variation
    n = len(segments)
    alpha = np.where(np.isin(vis, list(_VOWEL_VISEMES)), 1.0, 0.7)
    alpha = np.where(vis == 0, 0.3, alpha)
    tau = np.full(n, 0.07)
    dom = _dominance(starts, ends, times, tau, tau) * alpha[:, None]  # [N, T]
    rounded = np.isin(vis, list(_ROUNDED_VISEMES))
    dom_round = (
        _dominance(
            starts, ends, times, np.where(rounded, 0.18, 0.07), np.where(rounded, 0.06, 0.07)
        )
        * np.where(rounded, 1.3, alpha)[:, None]
    )
    labial = np.isin(vis, list(_LABIAL_VISEMES))
    dom_lip = dom * np.where(labial, 3.0 / 0.7, 1.0)[:, None]

    def blend(d: np.ndarray, cols) -> np.ndarray:
        return (d.T @ targets[:, cols]) / np.maximum(d.sum(axis=0), 1e-9)[:, None]

    out = blend(dom, slice(None))
    out[:, _ROUNDING_COLS] = blend(dom_round, _ROUNDING_COLS)
    out[:, _LIP_COLS] = blend(dom_lip, _LIP_COLS)
    out[:, _M["jawOpen"]] *= 0.85 + 0.3 * energy_rel
    # Bilabials always reach closure, whatever coarticulation did: frames inside the phone get
    # the closure pose, the frame on either side half of it (so the lips do not snap shut).
    fr_dt = times[1] - times[0] if len(times) > 1 else 1.0
    weight = np.zeros(len(times))
    for i in np.flatnonzero(vis == _PP):
        inside = np.flatnonzero((times >= starts[i]) & (times < ends[i]))
        if len(inside) == 0 and len(times):
            centre = 0.5 * (starts[i] + ends[i])
            inside = np.array([int(np.clip(round(centre / fr_dt - 0.5), 0, len(times) - 1))])
        if len(inside):
            weight[inside] = 1.0
            for f in (inside[0] - 1, inside[-1] + 1):
                if 0 <= f < len(times):
                    weight[f] = max(weight[f], 0.5)
    for f in np.flatnonzero(weight):
        w = weight[f]
        closed = out[f].copy()
        jaw = min(closed[_M["jawOpen"]], 0.06)
        closed[_M["jawOpen"]] = jaw
        closed[_M["mouthClose"]] = jaw
        for name in ("mouthLowerDownLeft", "mouthLowerDownRight", "mouthUpperUpLeft",
                     "mouthUpperUpRight"):  # fmt: skip
            closed[_M[name]] = 0.0
        for name in ("mouthPressLeft", "mouthPressRight"):
            closed[_M[name]] = max(closed[_M[name]], 0.3)
        out[f] = (1 - w) * out[f] + w * closed
    return out


def _blink_shape(t: np.ndarray, onset: float) -> np.ndarray:
    close, hold, open_ = 0.08, 0.04, 0.15
    x = t - onset
    y = np.zeros_like(t)
    m = (x >= 0) & (x < close)
    y[m] = x[m] / close
    m = (x >= close) & (x < close + hold)
    y[m] = 1.0
    m = (x >= close + hold) & (x < close + hold + open_)
    y[m] = 1.0 - (x[m] - close - hold) / open_
    return y


def _eyes(segments, times, duration, audio, sample_rate, rng) -> np.ndarray:
    out = np.zeros((len(times), len(arkit.EYES)))
    # --- blinks: utterance start, pauses ≥ 120 ms, phrase boundaries; spontaneous otherwise
    onsets = [0.05 + rng.uniform(0, 0.06)]
    for k, (start, end, phone) in enumerate(segments):
        is_sil = phone.lower() in ("sil", "sp", "pau") or phone.startswith("_")
        if is_sil and 0 < k < len(segments) - 1 and end - start >= 0.12:
            onsets.append(start + rng.uniform(0.0, 0.06))
    onsets.sort()
    filled: list[float] = []
    last = onsets[0]
    gap = rng.uniform(2.5, 5.0)
    for onset in [*onsets, duration]:
        while onset - last > gap:  # no blink for too long: insert a spontaneous one
            last += gap
            gap = rng.uniform(2.5, 5.0)
            if last < duration - 0.3:
                filled.append(last)
        if onset < duration:
            filled.append(onset)
            last = onset
    blink = np.zeros(len(times))
    for onset in filled:
        blink = np.maximum(blink, _blink_shape(times, onset))
    asym = rng.uniform(0.95, 1.0)
    out[:, _E["eyeBlinkLeft"]] = blink
    out[:, _E["eyeBlinkRight"]] = blink * asym
    out[:, _E["eyeSquintLeft"]] = 0.15 * blink
    out[:, _E["eyeSquintRight"]] = 0.15 * blink * asym
    # --- brow raises on pitch accents
    raise_ = np.zeros(len(times))
    for t0, prominence in pitch_accents(audio, sample_rate):
        x = times - (t0 - 0.08)
        shape = np.where(x < 0, 0.0, np.where(x < 0.08, x / 0.08, np.exp(-(x - 0.08) / 0.35)))
        raise_ = np.maximum(raise_, (0.35 + 0.5 * prominence) * shape)
    out[:, _E["browInnerUp"]] = raise_
    out[:, _E["browOuterUpLeft"]] = 0.8 * raise_
    out[:, _E["browOuterUpRight"]] = 0.8 * raise_
    out[:, _E["eyeWideLeft"]] = raise_ / 3
    out[:, _E["eyeWideRight"]] = raise_ / 3
    # --- phrase-final falls lower the brows a little
    f0 = pitch_track(audio, sample_rate)
    voiced = f0 > 0
    if voiced.sum() >= 10:
        semis = np.where(voiced, 12 * np.log2(np.maximum(f0, 1) / np.median(f0[voiced])), 0.0)
        low = _resample_track(np.where(voiced & (semis < -3.0), 1.0, 0.0), 0.01, times)
        low = np.convolve(low, np.ones(9) / 9, "same")
        out[:, _E["browDownLeft"]] = 0.25 * low
        out[:, _E["browDownRight"]] = 0.25 * low
    return out


def animate(
    segments: Sequence[tuple[float, float, str]],
    phoneset: str,
    audio: np.ndarray,
    sample_rate: int,
    frame_rate: float,
    seed: int = 0,
) -> dict[str, np.ndarray]:
    """Phone segments + audio → {"mouth": [T, len(MOUTH)], "eyes": [T, len(EYES)]} float32.

    ``T = int(len(audio) / sample_rate * frame_rate)``; values in [0, 1]; deterministic in
    the inputs and ``seed``. Raises ``ValueError`` on a phone the viseme table lacks.
    """
    audio = np.asarray(audio, dtype=np.float32)
    duration = len(audio) / sample_rate
    n = int(duration * frame_rate)
    times = (np.arange(n) + 0.5) / frame_rate
    rng = np.random.default_rng(seed)
    segs = [(float(s[0]), float(s[1]), str(s[2])) for s in segments]
    if not segs:
        segs = [(0.0, duration, "sil" if phoneset == "espeak" else "SIL")]
    energy = frame_energy(audio, sample_rate)
    e = _resample_track(energy, 0.01, times)
    speech = e[e > 0]
    ref = np.percentile(speech, 95) if len(speech) else 1.0
    energy_rel = np.clip(e / max(ref, 1e-9), 0.0, 1.0)
    mouth = _mouth(segs, phoneset, times, energy_rel, rng) if n else np.zeros((0, len(arkit.MOUTH)))
    eyes = _eyes(segs, times, duration, audio, sample_rate, rng)
    return {
        "mouth": np.clip(mouth, 0.0, 1.0).astype(np.float32),
        "eyes": np.clip(eyes, 0.0, 1.0).astype(np.float32),
    }


__all__ = ["POSES", "animate", "lip_aperture", "phone_class", "pitch_accents", "pitch_track"]
