"""`audio2anim.Animator` with the default graph (the Whisper front end + the shipped viseme
CNN) over espeak-ng speech: the lips close on the bilabials, the viseme posteriors come along,
repeated calls give the same animation, numpy audio at any rate equals the file, and the bad
inputs are one-line errors."""

from __future__ import annotations

import numpy as np
import pytest
import soundfile as sf
from tiny_models import speak

from audio2anim import arkit
from audio2anim.animate.api import AnimateError
from audio2anim.train.metrics import CLOSED, lip_gap
from audio2anim.visemes import VISEMES, phone_class

SENTENCE = "Bob made a map of the moon."


@pytest.fixture(scope="module")
def animator():
    from audio2anim import Animator

    return Animator()


@pytest.fixture(scope="module")
def sentence(tmp_path_factory):
    """espeak-ng speech resampled to 16 kHz in a WAV, the 44.1 kHz samples, and the phones."""
    import soxr

    audio, sr, segments = speak(SENTENCE)
    path = tmp_path_factory.mktemp("speech") / "bob.wav"
    sf.write(path, soxr.resample(audio, sr, 16000).astype(np.float32), 16000, subtype="FLOAT")
    return path, soxr.resample(audio, sr, 44100).astype(np.float32), segments


def test_animate_a_file_closes_the_lips_on_the_bilabials(animator, sentence):
    path, _, segments = sentence
    anim = animator.animate(path)
    assert anim.fps == 50.0 and anim.names[: len(arkit.ALL)] == tuple(arkit.ALL)
    assert abs(anim.frames - int(sf.info(str(path)).duration * 50)) <= 1
    assert anim.metadata["source"] == str(path)
    assert "whisper-w2v-attention" in anim.metadata["model"]  # the default graph's predictor
    assert anim.metadata["graph"].endswith(".yaml")
    gap = lip_gap(anim.values[:, [anim.names.index(n) for n in arkit.MOUTH + arkit.EYES]])
    closed = []
    for start, end, phone in segments:
        if phone_class(phone, "espeak") == "bilabial":
            lo, hi = max(0, int((start - 0.06) * 50)), int((end + 0.06) * 50) + 1
            closed.append(gap[lo:hi].min() <= CLOSED)
    assert len(closed) >= 4 and np.mean(closed) >= 0.75
    # the viseme posteriors come along: PP leads on the lip closures
    assert anim.visemes is not None and anim.visemes.shape == (anim.frames, 15)
    np.testing.assert_allclose(anim.visemes.sum(axis=1), 1.0, atol=1e-3)
    assert anim.visemes[:, VISEMES.index("PP")].max() > 0.5


def test_two_calls_give_the_same_animation(animator, sentence):
    path = sentence[0]
    a, b = animator.animate(path), animator.animate(path)
    np.testing.assert_array_equal(a.values, b.values)
    np.testing.assert_array_equal(a.visemes, b.visemes)


def test_numpy_audio_at_44k_equals_the_file_at_16k(animator, sentence):
    path, x44, _ = sentence
    from_file = animator.animate(path)
    from_array = animator.animate(x44, rate=44100)
    assert from_array.metadata["source"] == "<array>"
    n = min(from_file.frames, from_array.frames)
    assert abs(from_file.frames - from_array.frames) <= 1
    assert np.abs(from_file.values[:n] - from_array.values[:n]).mean() < 0.01
    stereo = animator.animate(np.stack([x44, x44], axis=1), rate=44100)  # channels averaged
    np.testing.assert_allclose(stereo.values, from_array.values, atol=1e-5)


def test_bad_audio_is_a_one_line_error_naming_it(animator, tmp_path):
    cases = {}
    (tmp_path / "junk.wav").write_bytes(b"not audio")
    cases["junk.wav"] = "not a readable audio file"
    sf.write(tmp_path / "empty.wav", np.zeros(0, np.float32), 16000)
    cases["empty.wav"] = "empty"
    sf.write(tmp_path / "short.wav", np.zeros(400, np.float32), 16000)
    cases["short.wav"] = "too short"
    nan = np.zeros(16000, np.float32)
    nan[8000] = np.nan
    sf.write(tmp_path / "nan.wav", nan, 16000, subtype="FLOAT")
    cases["nan.wav"] = "non-finite"
    cases["missing.wav"] = "no such file"
    for name, words in cases.items():
        with pytest.raises(AnimateError) as e:
            animator.animate(tmp_path / name)
        assert str(tmp_path / name) in str(e.value) and words in str(e.value)
        assert "\n" not in str(e.value)
    with pytest.raises(AnimateError, match="rate"):
        animator.animate(np.zeros(16000, np.float32))
    with pytest.raises(AnimateError, match="<array>: .*non-finite"):
        animator.animate(nan, rate=16000)
