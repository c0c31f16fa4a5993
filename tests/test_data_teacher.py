"""The procedural teacher on real espeak-ng speech and on made-up phone sequences."""

import numpy as np
import pytest

from audio2anim import arkit
from audio2anim.data.corpus import PhoneSegment
from audio2anim.data.teacher import animate, lip_aperture, pitch_accents
from audio2anim.visemes import phone_class

FPS = 50.0
M = {n: i for i, n in enumerate(arkit.MOUTH)}
E = {n: i for i, n in enumerate(arkit.EYES)}


def harmonic(f0: np.ndarray, sr: int = 16000) -> np.ndarray:
    """A voiced-like harmonic complex following the per-sample F0 contour ``f0``."""
    phase = 2 * np.pi * np.cumsum(f0) / sr
    return (0.3 * sum(np.sin(k * phase) / k for k in range(1, 8))).astype(np.float32)


@pytest.fixture(scope="module")
def speech():
    from audio2anim.data.espeak_ng import ESpeak

    text = (
        "Bob mapped a lovely blue boat by the pool. Who knew? "
        "Father had a black cat, and Mom baked apple pie for Ruth."
    )
    audio, sr, segments = ESpeak().synth(text, "en-us")
    return audio, sr, segments


def frames_of(seg: PhoneSegment, n: int) -> np.ndarray:
    times = (np.arange(n) + 0.5) / FPS
    inside = np.flatnonzero((times >= seg.start) & (times < seg.end))
    if len(inside) == 0:
        inside = np.array([min(n - 1, int((seg.start + seg.end) / 2 * FPS))])
    return inside


def test_shapes_ranges_and_determinism(speech):
    audio, sr, segments = speech
    a = animate(segments, "espeak", audio, sr, FPS, seed=3)
    n = int(len(audio) / sr * FPS)
    assert a["mouth"].shape == (n, len(arkit.MOUTH)) and a["eyes"].shape == (n, len(arkit.EYES))
    for v in a.values():
        assert v.dtype == np.float32 and v.min() >= 0.0 and v.max() <= 1.0
    b = animate(segments, "espeak", audio, sr, FPS, seed=3)
    c = animate(segments, "espeak", audio, sr, FPS, seed=4)
    assert np.array_equal(a["mouth"], b["mouth"]) and np.array_equal(a["eyes"], b["eyes"])
    assert not np.array_equal(a["mouth"], c["mouth"])
    assert a["mouth"][:, M["jawOpen"]].std() > 0.05  # it actually moves


def test_every_bilabial_closes_the_lips(speech):
    audio, sr, segments = speech
    mouth = animate(segments, "espeak", audio, sr, FPS)["mouth"]
    aperture = lip_aperture(mouth)
    bilabials = [s for s in segments if phone_class(s.phone, "espeak") == "bilabial"]
    assert len(bilabials) >= 10
    for seg in bilabials:
        assert aperture[frames_of(seg, len(mouth))].min() < 0.01, seg
    vowels = [s for s in segments if phone_class(s.phone, "espeak") == "open"]
    assert np.mean([aperture[frames_of(s, len(mouth))].max() for s in vowels]) > 0.3


def test_short_bilabial_between_open_vowels_still_closes():
    segs = [PhoneSegment(0, 0.2, "SIL"), PhoneSegment(0.2, 0.4, "AA1"), PhoneSegment(0.4, 0.42, "B"),
            PhoneSegment(0.42, 0.6, "AE1"), PhoneSegment(0.6, 0.8, "SIL")]  # fmt: skip
    audio = harmonic(np.full(int(0.8 * 16000), 120.0))
    mouth = animate(segs, "arpabet", audio, 16000, FPS)["mouth"]
    assert lip_aperture(mouth)[frames_of(segs[2], len(mouth))].min() < 0.01


def test_rounded_phones_round_the_lips(speech):
    audio, sr, segments = speech
    mouth = animate(segments, "espeak", audio, sr, FPS)["mouth"]
    rounding = mouth[:, M["mouthFunnel"]] + mouth[:, M["mouthPucker"]]
    rounded = [s for s in segments if phone_class(s.phone, "espeak") == "rounded"]
    others = [s for s in segments if phone_class(s.phone, "espeak") in ("open", "bilabial")]
    assert len(rounded) >= 4
    at = [rounding[frames_of(s, len(mouth))].max() for s in rounded]
    assert min(at) > 0.4, at
    other = [
        rounding[frames_of(s, len(mouth))].mean()
        for s in others
        if s.phone not in ("O:", "o@", "O@", "O2", "O")
    ]
    assert np.mean(at) > 2 * np.mean(other)


def test_aa_ae_open_the_jaw_most():
    vowels = ["AA1", "AE1", "IY1", "UW1", "AH0", "EH1", "OW1", "IH1", "ER1", "AO1", "EY1"]
    segs, t = [PhoneSegment(0, 0.2, "SIL")], 0.2
    for v in vowels * 2:
        for phone, dur in (("K", 0.06), (v, 0.16), ("T", 0.06)):
            segs.append(PhoneSegment(t, t + dur, phone))
            t += dur
    segs.append(PhoneSegment(t, t + 0.2, "SIL"))
    audio = harmonic(np.full(int((t + 0.2) * 16000), 130.0))
    mouth = animate(segs, "arpabet", audio, 16000, FPS)["mouth"]
    jaw: dict[str, list[float]] = {}
    for s in segs:
        if s.phone in vowels:
            f = int((s.start + s.end) / 2 * FPS)
            jaw.setdefault(s.phone, []).append(mouth[f, M["jawOpen"]])
    means = {v: float(np.mean(x)) for v, x in jaw.items()}
    lowest_open = min(means["AA1"], means["AE1"])
    assert all(lowest_open > m for v, m in means.items() if v not in ("AA1", "AE1")), means


def test_blinks_at_pauses():
    sr = 16000
    segs = [PhoneSegment(0, 0.1, "SIL"), PhoneSegment(0.1, 1.5, "AA1"),
            PhoneSegment(1.5, 2.0, "SIL"), PhoneSegment(2.0, 3.0, "IY1"), PhoneSegment(3.0, 3.2, "SIL")]  # fmt: skip
    audio = harmonic(np.full(int(3.2 * sr), 120.0))
    for seed in range(5):
        eyes = animate(segs, "arpabet", audio, sr, FPS, seed=seed)["eyes"]
        times = (np.arange(len(eyes)) + 0.5) / FPS
        blink = eyes[:, E["eyeBlinkLeft"]]
        in_pause = (times >= 1.5) & (times < 1.9)
        assert blink[in_pause].max() > 0.9
        assert blink[(times > 0.6) & (times < 1.3)].max() < 0.1  # none in mid-vowel


def test_brow_raise_on_pitch_accent_only():
    sr = 16000
    t = np.arange(int(3.0 * sr)) / sr
    accent = 120.0 * 2 ** (7 / 12 * np.exp(-0.5 * ((t - 1.5) / 0.12) ** 2))  # +7 semitones
    segs = [
        PhoneSegment(0, 0.1, "SIL"),
        PhoneSegment(0.1, 2.9, "AA1"),
        PhoneSegment(2.9, 3.0, "SIL"),
    ]
    brow = animate(segs, "arpabet", harmonic(accent), sr, FPS)["eyes"][:, E["browInnerUp"]]
    times = (np.arange(len(brow)) + 0.5) / FPS
    assert abs(times[np.argmax(brow)] - 1.5) < 0.25 and brow.max() > 0.3
    assert brow[times < 1.0].max() < 0.05
    accents = pitch_accents(harmonic(accent), sr)
    assert len(accents) == 1 and abs(accents[0][0] - 1.5) < 0.1
    flat = animate(segs, "arpabet", harmonic(np.full(len(t), 120.0)), sr, FPS)["eyes"]
    assert flat[:, E["browInnerUp"]].max() < 0.05
