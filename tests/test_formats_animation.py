"""The Animation container: validation, timing, and resampling to other frame rates."""

import numpy as np
import pytest

from audio2anim.formats.animation import Animation
from audio2anim.visemes import N_VISEMES, VISEME_ID


def step_animation(fps: float = 50.0, step_at: float = 0.5, seconds: float = 1.0, start=0.0):
    """jawOpen 0 then 1 from ``step_at``; visemes sil then aa at the same time."""
    n = round(seconds * fps)
    t = np.arange(n) / fps
    jaw = (t >= step_at - 1e-9).astype(np.float32)
    vis = np.zeros((n, N_VISEMES), np.float32)
    vis[:, VISEME_ID["sil"]] = 1 - jaw
    vis[:, VISEME_ID["aa"]] = jaw
    return Animation(fps, ("jawOpen", "mouthClose"), np.c_[jaw, 1 - jaw], vis, start=start)


def test_times_duration_and_end():
    a = step_animation(start=1.25)
    assert a.frames == 50
    assert a.duration == pytest.approx(1.0)
    assert a.end == pytest.approx(2.25)
    np.testing.assert_allclose(a.times[:3], [1.25, 1.27, 1.29])
    assert a.values.dtype == np.float32 and a.visemes.dtype == np.float32
    np.testing.assert_array_equal(a.column("JawOpen"), a.values[:, 0])
    assert a.column("tongueOut") is None


@pytest.mark.parametrize("fps", [24, 25, 30, 60, 37.5])
def test_resample_keeps_a_step_within_one_output_frame(fps):
    a = step_animation(start=0.3)
    b = a.resample(fps)
    assert b.fps == fps and b.start == 0.3
    # same span: the output frames cover the input's duration, never more than one frame over
    assert a.duration <= b.duration < a.duration + 1 / fps + 1e-9
    np.testing.assert_allclose(b.times, 0.3 + np.arange(b.frames) / fps)
    jaw = b.column("jawOpen")
    first_open = b.times[np.argmax(jaw >= 0.5)]
    assert abs(first_open - (0.3 + 0.5)) <= 1 / fps + 1e-9
    # linear: all weights stay within the input's range, the ramp is monotonic
    assert jaw.min() >= 0 and jaw.max() <= 1 and (np.diff(jaw) >= -1e-7).all()
    # posteriors renormalised, and the viseme step follows the weights
    np.testing.assert_allclose(b.visemes.sum(axis=1), 1, atol=1e-6)
    aa = b.visemes[:, VISEME_ID["aa"]]
    assert abs(b.times[np.argmax(aa >= 0.5)] - first_open) < 1e-9


def test_resample_to_a_divisor_rate_picks_the_input_frames():
    a = step_animation()
    rng = np.random.default_rng(0)
    a = Animation(50, a.names, rng.random((50, 2)), start=0.1)
    b = a.resample(25)
    np.testing.assert_allclose(b.values, a.values[::2], atol=1e-6)
    # and up: the midpoints are the means of their neighbours
    c = a.resample(100)
    np.testing.assert_allclose(c.values[1:-1:2], (a.values[:-1] + a.values[1:]) / 2, atol=1e-6)
    assert c.frames == 100


def test_resample_renormalises_posteriors():
    vis = np.zeros((4, N_VISEMES), np.float32)
    vis[:, 0] = [0.5, 0.5, 2.0, 2.0]
    vis[:, 1] = [0.5, 0.5, 2.0, 2.0]
    a = Animation(10, ("jawOpen",), np.zeros((4, 1)), vis)
    b = a.resample(30)
    np.testing.assert_allclose(b.visemes.sum(axis=1), 1, atol=1e-6)
    np.testing.assert_allclose(b.visemes[:, 0], 0.5, atol=1e-6)


def test_values_are_clipped_into_the_arkit_range_and_metadata_copied():
    meta = {"source": "a.wav"}
    a = Animation(50, ("jawOpen",), [[-0.2], [1.3], [0.5]], metadata=meta)
    np.testing.assert_allclose(a.values[:, 0], [0, 1, 0.5])
    a.metadata["model"] = "m"
    assert meta == {"source": "a.wav"}
    assert a.resample(25).metadata == {"source": "a.wav", "model": "m"}


def test_empty_animation_resamples_to_empty():
    a = Animation(50, ("jawOpen",), np.zeros((0, 1)))
    assert a.duration == 0 and a.resample(24).frames == 0


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"values": np.zeros((5, 3))}, "values must be [frames, 2]"),
        ({"values": np.zeros(5)}, "values must be [frames, 2]"),
        ({"visemes": np.zeros((4, N_VISEMES))}, "visemes must be [5, 15]"),
        ({"visemes": np.zeros((5, 14))}, "visemes must be [5, 15]"),
        ({"values": np.full((5, 2), np.nan)}, "values has 10 non-finite numbers"),
        ({"visemes": np.full((5, N_VISEMES), np.inf)}, "visemes has 75 non-finite"),
        ({"visemes": -np.ones((5, N_VISEMES))}, "non-negative"),
        ({"fps": 0}, "fps must be a positive number"),
        ({"fps": float("nan")}, "fps must be a positive number"),
        ({"start": float("inf")}, "start must be finite"),
        ({"names": ("jawOpen", "jawOpen")}, "repeated parameter names ['jawOpen']"),
    ],
)
def test_bad_input_gives_one_line_errors(kwargs, message):
    args = {"fps": 50, "names": ("jawOpen", "mouthClose"), "values": np.zeros((5, 2))}
    args.update(kwargs)
    with pytest.raises(ValueError) as e:
        Animation(**args)
    assert message in str(e.value) and "\n" not in str(e.value)


@pytest.mark.parametrize("fps", [0, -24, float("inf"), "fast"])
def test_resample_refuses_bad_rates(fps):
    with pytest.raises(ValueError, match="fps must be a positive number") as e:
        step_animation().resample(fps)
    assert "\n" not in str(e.value)
