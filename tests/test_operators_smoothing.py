"""Smoothing operators: lower jitter, bounded timing shift, block-wise == one-shot."""

from __future__ import annotations

import numpy as np
import pytest

from audio2anim.graph.packets import Packet
from audio2anim.graph.registry import get
from audio2anim.graph.testing import params_packets, run_operator
from audio2anim.streams import Params

RATE = 60.0
STEP_FRAME = 90  # the step edge, 1.5 s in
NAMES = ("jawOpen", "mouthFunnel", "eyeBlinkLeft")

CONFIGS = [
    ("smoothing.ema", {"tau_ms": 30}),
    ("smoothing.one_euro", {"min_cutoff": 1.5, "beta": 2.0, "d_cutoff": 1.0}),
    ("smoothing.savgol", {"window_ms": 150, "lookahead_ms": 50, "polyorder": 2}),
    ("smoothing.savgol", {"window_ms": 200, "lookahead_ms": 0, "polyorder": 1}),
]


def make_signal(noise: float, seed: int = 0, frames: int = 240) -> np.ndarray:
    """[frames, 3]: a step 0.1 -> 0.8, a 1 Hz sine, a constant; plus Gaussian noise."""
    t = np.arange(frames) / RATE
    step = np.where(np.arange(frames) >= STEP_FRAME, 0.8, 0.1)
    sine = 0.5 + 0.3 * np.sin(2 * np.pi * 1.0 * t)
    const = np.full(frames, 0.4)
    clean = np.stack([step, sine, const], axis=1)
    rng = np.random.default_rng(seed)
    return (clean + noise * rng.standard_normal(clean.shape)).astype(np.float32)


def run(op_name: str, params: dict, values: np.ndarray, blocks: list[int] | None = None):
    """Feed ``values`` through the operator in blocks; return (operator, output, media times)."""
    cls = get(op_name)
    op = cls(cls.Params(**params))
    packets = params_packets(values, NAMES, RATE, blocks, start=10.0)
    outs, times = [], []
    for r in run_operator(op, packets)["out"]:
        assert isinstance(r, Packet) and isinstance(r.payload, Params)
        assert r.payload.names == NAMES and r.payload.frame_rate == RATE
        outs.append(r.payload.values)
        times.append(r.media_time + np.arange(len(r.payload.values)) / RATE)
    return op, np.concatenate(outs), np.concatenate(times)


def jitter(x: np.ndarray) -> float:
    """Mean absolute second difference: large for frame-to-frame noise, small for smooth motion."""
    return float(np.mean(np.abs(np.diff(x, n=2, axis=0))))


@pytest.mark.parametrize(("op_name", "params"), CONFIGS)
def test_smoothing_lowers_jitter(op_name, params):
    noisy = make_signal(noise=0.03)
    _, out, times = run(op_name, params, noisy)
    assert out.shape == noisy.shape
    # media times line up with the input frames (no shift in media time, only in arrival)
    np.testing.assert_allclose(times, 10.0 + np.arange(len(noisy)) / RATE, atol=1e-9)
    for ch in (1, 2):  # the sine and the constant: noise jitter must fall a lot
        assert jitter(out[:, ch]) < 0.5 * jitter(noisy[:, ch]), (op_name, ch)
    # it still follows the signal: the constant stays near 0.4 and the sine near its course
    assert abs(float(np.mean(out[60:, 2])) - 0.4) < 0.02
    clean = make_signal(noise=0.0)
    assert float(np.mean(np.abs(out[30:-30, 1] - clean[30:-30, 1]))) < 0.05


@pytest.mark.parametrize(("op_name", "params"), CONFIGS)
def test_step_edge_shift_within_declared_timing(op_name, params):
    clean = make_signal(noise=0.0)
    op, out, _ = run(op_name, params, clean)
    half = (0.1 + 0.8) / 2
    crossing = int(np.argmax(out[:, 0] >= half))
    shift_s = (crossing - STEP_FRAME) / RATE
    bound = op.latency() + op.step_delay() + 1.0 / RATE
    assert -1.0 / RATE <= shift_s <= bound, (op_name, shift_s, op.latency(), op.step_delay())
    assert abs(float(out[-1, 0]) - 0.8) < 0.01  # settles on the new level


def test_declared_latency_values():
    clean = make_signal(noise=0.0)
    ema, _, _ = run("smoothing.ema", {"tau_ms": 30}, clean)
    euro, _, _ = run("smoothing.one_euro", {}, clean)
    sg, _, _ = run("smoothing.savgol", {"window_ms": 150, "lookahead_ms": 50}, clean)
    assert ema.latency() == 0.0 and euro.latency() == 0.0
    assert ema.step_delay() == pytest.approx(0.030 * np.log(2))
    assert sg.latency() == pytest.approx(3 / RATE)  # 50 ms at 60 Hz = 3 whole frames
    cls = get("smoothing.savgol")
    assert cls(cls.Params(lookahead_ms=40)).latency() == pytest.approx(0.040)  # before the stream


def test_savgol_emits_a_frame_only_after_its_lookahead_arrived():
    cls = get("smoothing.savgol")
    op = cls(cls.Params(window_ms=150, lookahead_ms=50, polyorder=2))  # W=9, L=3 at 60 Hz
    values = make_signal(noise=0.03)
    emitted = 0
    for i in range(20):
        outs = op.process("in", Packet(Params(values[i : i + 1], NAMES, RATE), i / RATE)) or []
        emitted += sum(len(p.payload.values) for p in outs)
        assert emitted == max(0, i + 1 - 3)
    tail = op.flush() or []
    assert sum(len(p.payload.values) for p in tail) == 3


@pytest.mark.parametrize(("op_name", "params"), CONFIGS)
def test_blockwise_equals_one_shot(op_name, params):
    noisy = make_signal(noise=0.03, seed=3)
    _, whole, whole_t = run(op_name, params, noisy)
    rng = np.random.default_rng(7)
    sizes, left = [], len(noisy)
    while left:
        n = int(min(left, rng.integers(1, 17)))
        sizes.append(n)
        left -= n
    _, parts, parts_t = run(op_name, params, noisy, blocks=sizes)
    np.testing.assert_allclose(parts, whole, rtol=0, atol=1e-6)
    np.testing.assert_allclose(parts_t, whole_t, atol=1e-9)


def test_stream_change_is_an_error():
    cls = get("smoothing.ema")
    op = cls(cls.Params())
    op.process("in", Packet(Params(np.zeros((2, 3), np.float32), NAMES, RATE), 0.0))
    with pytest.raises(ValueError, match="changed mid-stream"):
        op.process("in", Packet(Params(np.zeros((2, 3), np.float32), NAMES, 30.0), 0.1))


def test_bad_params_are_rejected():
    from pydantic import ValidationError

    cls = get("smoothing.savgol")
    with pytest.raises(ValidationError, match="lookahead_ms"):
        cls.Params(window_ms=50, lookahead_ms=60)
    with pytest.raises(ValidationError):
        get("smoothing.ema").Params(tau_ms=0)


@pytest.mark.parametrize(("op_name", "params"), CONFIGS)
def test_streams_shorter_than_the_window_keep_every_frame(op_name, params):
    short = make_signal(noise=0.0, frames=2)
    _, out, times = run(op_name, params, short)
    assert out.shape == short.shape
    np.testing.assert_allclose(out[:, 2], 0.4, atol=1e-6)  # a constant stays constant
    np.testing.assert_allclose(times, 10.0 + np.arange(2) / RATE)
