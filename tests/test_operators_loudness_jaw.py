"""params.loudness_jaw: level -> jawOpen, exact frame grid, block-wise == one-shot."""

from __future__ import annotations

import numpy as np
import pytest

from audio2anim.graph.testing import audio_packets, run_operator
from audio2anim.operators.loudness_jaw import LoudnessJaw
from audio2anim.streams import Params


def run(samples: np.ndarray, rate: int, block: int, **params):
    outs = run_operator(LoudnessJaw, audio_packets(samples, rate, block), params)["out"]
    assert all(isinstance(p.payload, Params) for p in outs)
    values = np.concatenate([p.payload.values for p in outs])
    times = np.concatenate([p.media_time + np.arange(len(p.payload.values)) / 60 for p in outs])
    return values, times


def test_levels_map_to_jaw_and_frames_cover_the_audio_exactly():
    rate = 22050  # 367.5 samples per 60 Hz frame: boundaries must not drift
    t = np.arange(rate) / rate
    loud = 0.5 * np.sin(2 * np.pi * 300 * t)  # RMS -9 dBFS -> fully open
    quiet = 0.001 * np.sin(2 * np.pi * 300 * t)  # RMS -63 dBFS -> closed
    x = np.concatenate([quiet, loud]).astype(np.float32)
    values, times = run(x, rate, block=441)
    assert values.shape == (120, 2)
    np.testing.assert_allclose(times, np.arange(120) / 60, atol=1e-9)
    assert np.all(values[:59, 0] == 0.0) and np.all(values[61:, 0] == 1.0)
    np.testing.assert_allclose(values[:59, 1], 0.3)  # mouthClose = close_gain * (1 - jaw)
    mid = 0.02 * np.sin(2 * np.pi * 300 * t[:735])  # RMS about -37 dBFS: partly open
    v, _ = run(mid.astype(np.float32), rate, block=735)
    assert 0.2 < v[0, 0] < 0.5


@pytest.mark.parametrize("block", [1, 97, 320, 5000])
def test_blockwise_equals_one_shot(block):
    rng = np.random.default_rng(0)
    x = (rng.standard_normal(16000) * np.linspace(0, 0.3, 16000)).astype(np.float32)
    whole, _ = run(x, 16000, block=len(x))
    parts, _ = run(x, 16000, block=block)
    np.testing.assert_array_equal(parts, whole)
    assert len(whole) == 60  # 1 s at 60 frames/s


def test_bad_level_range_is_rejected():
    from pydantic import ValidationError

    with pytest.raises(ValidationError, match="ceil_db"):
        LoudnessJaw.Params(floor_db=-20, ceil_db=-30)
