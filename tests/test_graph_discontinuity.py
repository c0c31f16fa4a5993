"""Media time across dropped packets: the packet after a drop is marked, stateful operators
restart there, and the animation's media times stay those of the audio it was made from.

Real operators on real signals: resample (soxr), log-mel, a tiny predictor built here whose
input is log-mel, and the smoothers. The reference for "which audio a frame came from" is the
same chain run over the whole signal without drops: away from the edges of a gap, a frame
stamped t must equal the reference frame at t.
"""

from __future__ import annotations

import asyncio

import numpy as np
import pytest
from pydantic import Field
from tiny_models import make_logmel_predictor

from audio2anim.graph.formats import Format
from audio2anim.graph.operator import Operator, OperatorParams, Port, Source
from audio2anim.graph.packets import Packet
from audio2anim.graph.registry import register
from audio2anim.graph.runner import Queue, Runner
from audio2anim.graph.spec import Edge, parse_graph
from audio2anim.graph.testing import audio_packets, dropping, params_packets, run_operator
from audio2anim.streams import Audio, Features

RATE_IN = 48000
BLOCK = 960  # 20 ms


def _signal(seconds: float, seed: int = 0) -> np.ndarray:
    """Speech-like test audio: noise bursts under a slow envelope, so frames differ."""
    rng = np.random.default_rng(seed)
    n = int(RATE_IN * seconds)
    t = np.arange(n) / RATE_IN
    env = 0.5 + 0.5 * np.sin(2 * np.pi * 3.1 * t) * np.sin(2 * np.pi * 0.7 * t)
    return (0.3 * env * rng.standard_normal(n)).astype(np.float32)


@pytest.fixture(scope="module")
def logmel_predictor(tmp_path_factory):
    return make_logmel_predictor(tmp_path_factory.mktemp("pred") / "w2v-cnn-logmel")


# -- queues mark the packet after a drop -------------------------------------------------------


def _queue(policy: str, size: int) -> Queue:
    class Counter:
        def inc(self):
            pass

    edge = Edge("a", "out", "b", "in", size, policy)
    return Queue(edge, asyncio.Event(), Counter())


@pytest.mark.parametrize("policy", ["drop_oldest", "drop_newest"])
def test_a_leaky_queue_marks_the_packet_after_each_gap(policy):
    async def main():
        q = _queue(policy, 2)
        for i in range(5):  # 0 1 fit; then 2, 3, 4 each force a drop
            await q.put(Packet(i, float(i)))
        first = [q.pop() for _ in range(len(q.items))]
        await q.put(Packet(5, 5.0))
        return first, q.pop()

    first, after = asyncio.run(main())
    if policy == "drop_oldest":  # 0, 1, 2 dropped: 3 follows the gap
        assert [(p.payload, p.discontinuity) for p in first] == [(3, True), (4, False)]
        assert not after.discontinuity
    else:  # 2, 3, 4 refused: 0 1 continue the stream, 5 follows the gap
        assert [(p.payload, p.discontinuity) for p in first] == [(0, False), (1, False)]
        assert after.payload == 5 and after.discontinuity


# -- stateful operators restart at a gap ---------------------------------------------------------


def _cases(predictor):
    x = _signal(1.2)
    audio48 = audio_packets(x, RATE_IN, BLOCK)
    audio16 = audio_packets(x[::3].copy(), 16000, 320)
    rng = np.random.default_rng(1)
    vals = rng.uniform(0, 1, (90, 3)).astype(np.float32)
    params = params_packets(vals, ["jawOpen", "mouthClose", "mouthFunnel"], 50.0, 6)
    feats = [
        Packet(
            Features(np.asarray(p.payload.samples[:640]).reshape(8, 80), 100.0, "logmel"),
            p.media_time,
        )
        for p in audio_packets(x[: 16000 * 1].copy(), 16000, 640)
    ]  # 8 frames of 80 values per 40 ms packet
    return {
        "resample": (audio48, {"rate": 16000}),
        "feature.logmel": (audio16, {}),
        "predictor.w2v_cnn": (feats, {"checkpoint": str(predictor), "backend": "onnx"}),
        "smoothing.ema": (params, {"tau_ms": 40}),
        "smoothing.one_euro": (params, {}),
        "smoothing.savgol": (params, {"window_ms": 120, "lookahead_ms": 40}),
        "params.loudness_jaw": (audio48, {"frame_rate": 60}),
    }


OPS = [
    "resample",
    "feature.logmel",
    "predictor.w2v_cnn",
    "smoothing.ema",
    "smoothing.one_euro",
    "smoothing.savgol",
    "params.loudness_jaw",
]


def _values(pkt: Packet) -> np.ndarray:
    p = pkt.payload
    for attr in ("samples", "data", "values"):
        if hasattr(p, attr):
            return np.asarray(getattr(p, attr))
    raise TypeError(type(p))


@pytest.mark.parametrize("op", OPS)
def test_after_a_gap_an_operator_starts_afresh(op, logmel_predictor):
    """A stream with packets dropped = the pieces between the gaps, each run on its own: the
    state before a gap never reaches the output after it (no spliced filter, window or model
    history), the media times are the pieces' own, and the first output after a gap is
    marked."""
    packets, params = _cases(logmel_predictor)[op]
    gaps = {0, 4, 9, 10}  # the first packet, one more, then two in a row
    pieces = [packets[1:4], packets[5:9], packets[11:]]
    got = run_operator(op, dropping(packets, gaps), params)["out"]
    want = [run_operator(op, piece, params)["out"] for piece in pieces]
    assert [p.media_time for p in got] == [p.media_time for w in want for p in w]
    np.testing.assert_allclose(
        np.concatenate([_values(p) for p in got]),
        np.concatenate([_values(p) for w in want for p in w]),
        atol=1e-5,
    )
    marked = [p.media_time for p in got if p.discontinuity]
    assert marked == [w[0].media_time for w in want]


def test_without_a_gap_nothing_is_marked_and_the_stream_is_one_piece():
    x = _signal(0.5)
    got = run_operator("resample", audio_packets(x, RATE_IN, BLOCK), {"rate": 16000})["out"]
    assert not any(p.discontinuity for p in got)
    t = np.array([p.media_time for p in got])
    n = np.array([len(p.payload.samples) for p in got])
    np.testing.assert_allclose(t[1:], t[:-1] + n[:-1] / 16000)


# -- a live graph that drops: the animation stays on the audio's clock --------------------------


class BurstParams(OperatorParams):
    seconds: float = Field(3.0, gt=0)
    every: int = Field(25, ge=1, description="blocks between bursts")
    burst: int = Field(6, ge=1, description="blocks handed over at once")


@register("test.bursty_source")
class BurstySource(Source):
    """`_signal` at 48 kHz in 20 ms blocks, one at a time (the chain keeps up) except every
    ``every`` blocks, when ``burst`` blocks come at once without yielding: a leaky queue of 2
    after it then drops ``burst`` - 2 of them, like a source that stalled and caught up."""

    Params = BurstParams
    outputs = {"out": Port(Audio)}

    def output_format(self, port, inputs):
        return Format(rate=RATE_IN, channels=1)

    async def packets(self):
        p = self.params
        x = _signal(p.seconds)
        for i, pkt in enumerate(audio_packets(x, RATE_IN, BLOCK)):
            yield pkt
            if i % p.every >= p.every - p.burst:
                continue  # within a burst: no yield to the consumer
            for _ in range(3):  # let the chain take this block
                await asyncio.sleep(0.002)


@register("test.keep")
class Keep(Operator):
    """A sink that keeps every packet."""

    inputs = {"in": Port(object)}
    outputs = {}

    def setup(self):
        self.got: list[Packet] = []

    def process(self, port, packet):
        self.got.append(packet)


def _chain(predictor, policy: str, size: int, burst: int) -> str:
    return f"""
name: gaps
nodes:
  src:    {{op: test.bursty_source, params: {{seconds: 4.0, burst: {burst}}}}}
  rs:     {{op: resample, params: {{rate: 16000}}}}
  feat:   {{op: feature.logmel}}
  pred:   {{op: predictor.w2v_cnn, params: {{checkpoint: {predictor}, backend: onnx}}}}
  smooth: {{op: smoothing.ema, params: {{tau_ms: 30}}}}
  out:    {{op: test.keep}}
edges:
  - {{from: src, to: rs, size: {size}, policy: {policy}}}
  - rs -> feat -> pred -> smooth -> out
queues: {{size: 64, policy: block}}
"""


def _run(text: str):
    async def main():
        runner = Runner(parse_graph(text))
        report = await runner.run()
        return report, runner.operator("out").got

    return asyncio.run(main())


def _frames(got: list[Packet]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per output frame: its media time, its values, and the index of its segment."""
    times, values, segment = [], [], []
    seg = 0
    for p in got:
        seg += p.discontinuity
        n = len(p.payload.values)
        times.extend(p.media_time + np.arange(n) / p.payload.frame_rate)
        values.append(p.payload.values)
        segment.extend([seg] * n)
    return np.array(times), np.concatenate(values), np.array(segment)


@pytest.mark.parametrize("policy", ["drop_oldest", "drop_newest"])
def test_dropped_blocks_do_not_shift_the_animation(logmel_predictor, policy):
    _, ref = _run(_chain(logmel_predictor, "block", 64, 1))
    ref_t, ref_v, _ = _frames(ref)
    report, got = _run(_chain(logmel_predictor, policy, 2, 6))
    dropped = report.edges["src.out->rs.in"]["dropped"]
    assert dropped >= 16  # 6 blocks at once into a queue of 2, 8 times: at least 4 each
    assert report.nodes["rs"]["restarts"] > 0 and report.nodes["pred"]["restarts"] > 0

    t, v, seg = _frames(got)
    assert np.all(np.diff(t) > 0)
    # within a segment the frames are contiguous; across a mark there is a real gap
    rate = 100.0
    step = np.diff(t)
    same = seg[1:] == seg[:-1]
    np.testing.assert_allclose(step[same], 1 / rate, atol=1e-9)
    assert np.all(step[~same] > 1.5 / rate)
    assert seg[-1] >= 4

    # frames away from a gap's edges (the filters and the model's window need context on both
    # sides) equal the undropped run's frame at the same media time: the clock is the audio's
    ref_index = np.round(ref_t * rate).astype(int)
    lookup = dict(zip(ref_index, range(len(ref_t)), strict=True))
    margin = 0.15  # s: soxr and log-mel windows, the predictor's receptive field, the EMA
    compared = 0
    for s in np.unique(seg):
        ts = t[seg == s]
        inner = (t >= ts[0] + margin) & (t <= ts[-1] - margin) & (seg == s)
        for i in np.flatnonzero(inner):
            j = lookup[round(t[i] * rate)]
            assert np.abs(v[i] - ref_v[j]).max() < 0.02, (s, t[i])
            compared += 1
    assert compared > 40
    # a clock that counted its own frames would be off by every block dropped before
    last = np.flatnonzero(seg == seg[-1])
    assert t[last[0]] - (len(t) - len(last)) / rate > 0.1
