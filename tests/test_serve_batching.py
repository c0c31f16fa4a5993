"""Cross-session model batching (`audio2anim.serve.batching`): stacked calls of the shipped
viseme models equal the calls made one by one; concurrent sessions of `audio2anim serve` with
batching on each get what their audio gives alone (the mouth closes on their own bilabials),
in batches of more than one; a session that disconnects frees its slot at once while the
others go on; live Whisper streams batched (from threads, or awaited) equal each alone; the
command refuses a bad window or a missing GPU in one line."""

from __future__ import annotations

import asyncio
import json
import threading

import aiohttp
import numpy as np
import pytest
from tiny_models import bilabials_closed, speak

from audio2anim.client import stream
from audio2anim.graph.metrics import ServeMetrics
from audio2anim.models.model_call import onnx_run
from audio2anim.models.predictor_stream import cached_onnx_model
from audio2anim.resources import require_checkpoint
from audio2anim.serve.batching import BatchingService, ModelBatcher
from audio2anim.serve.server import Server
from audio2anim.train.metrics import CLOSED, lip_gap
from audio2anim.visemes import phone_class


@pytest.fixture(scope="module")
def voices():
    return {
        "mama bob": speak("mama bob"),
        "how are you": speak("how are you"),
        "pop a bubble": speak("pop a bubble", voice="en-us+f3"),
    }


def _front_end():
    return cached_onnx_model(require_checkpoint("checkpoints/viseme-frontend", "test"))


def _front_feeds(rng, frames: int) -> dict[str, np.ndarray]:
    hp = _front_end().hp
    pad = hp["conv_layers"] * (hp["kernel"] - 1)
    return {
        "logmel": rng.standard_normal((1, frames, hp["n_mels"])).astype(np.float32),
        "history": rng.standard_normal((1, hp["n_mels"], pad)).astype(np.float32),
        "h0": rng.standard_normal((1, 1, hp["hidden"])).astype(np.float32),
    }


def test_run_batch_equals_the_calls_one_by_one_grouped_by_shape():
    rng = np.random.default_rng(0)
    run = onnx_run(_front_end())
    # chunks of 2 and 5 log-mel frames, each session with its own history and GRU state
    inputs = [_front_feeds(rng, n) for n in (2, 5, 2, 2, 5)]
    metrics = ServeMetrics()
    batcher = ModelBatcher("frontend", run, {"h0": 1, "h1": 1}, metrics=metrics)
    try:
        outs = batcher.run_batch(inputs)
    finally:
        batcher.close()
    for feeds, out in zip(inputs, outs, strict=True):
        alone = run(feeds)
        assert out.keys() == alone.keys()
        for name in alone:
            assert out[name].shape == alone[name].shape
            np.testing.assert_allclose(out[name], alone[name], atol=1e-5)
    # two groups: three calls of 2 frames, two of 5
    count = metrics.registry.get_sample_value("audio2anim_batch_size_count", {"model": "frontend"})
    total = metrics.registry.get_sample_value("audio2anim_batch_size_sum", {"model": "frontend"})
    assert (count, total) == (2, 5)


def test_a_model_in_another_process_gets_a_batch_of_several_shapes_in_one_call():
    # the model host's case: each of its calls is a round trip, so a batch's groups of
    # different shapes travel together
    rng = np.random.default_rng(1)
    run = onnx_run(_front_end())

    class Remote:
        def __init__(self):
            self.messages: list[int] = []

        def __call__(self, feeds):
            return self.many([feeds])[0]

        def many(self, calls):
            self.messages.append(len(calls))
            return [run(feeds) for feeds in calls]

    remote = Remote()
    inputs = [_front_feeds(rng, n) for n in (2, 5, 3, 2, 5)]
    batcher = ModelBatcher("frontend", remote, {"h0": 1, "h1": 1})
    try:
        outs = batcher.run_batch(inputs)
        batcher.run_batch(inputs[:1])
    finally:
        batcher.close()
    assert remote.messages == [3, 1]  # three shapes in one message; a lone call alone
    for feeds, out in zip(inputs, outs, strict=True):
        alone = run(feeds)
        for name in alone:
            np.testing.assert_allclose(out[name], alone[name], atol=1e-5)


def test_warming_runs_the_model_at_every_batch_size_on_its_first_calls_inputs():
    # what `serve --warm-batches N` does at start: the GPU meets each size before sessions do
    rng = np.random.default_rng(2)
    run = onnx_run(_front_end())
    seen: list[dict[str, np.ndarray]] = []

    def recording(feeds):
        seen.append(feeds)
        return run(feeds)

    service = BatchingService(1.0)
    batcher = service.batcher("frontend@test", lambda device: recording, {"h0": 1, "h1": 1})
    try:
        first = _front_feeds(rng, 3)
        batcher.call(first)
        seen.clear()
        service.warm(4)
    finally:
        service.close()
    assert [f["h0"].shape[1] for f in seen] == [1, 2, 3, 4]  # batch axis 1 for the GRU state
    assert [f["logmel"].shape for f in seen] == [
        (n, 3, first["logmel"].shape[2]) for n in (1, 2, 3, 4)
    ]
    for name, a in seen[-1].items():  # copies of the first call's inputs
        axis = 1 if name == "h0" else 0
        np.testing.assert_array_equal(np.take(a, [3], axis=axis), first[name])
    unused = ModelBatcher("unused", run)
    try:
        assert unused.warm(4) == 0  # a model never called has nothing to copy
    finally:
        unused.close()


def test_models_named_to_stay_on_the_cpu_are_built_there_whatever_the_device():
    # `serve --device cuda --cpu-models viseme-cnn`: the predictor on ONNX Runtime, the
    # encoder on the GPU
    built: dict[str, str] = {}

    def maker(label):
        def make_run(device):
            built[label] = device
            return lambda feeds: feeds

        return make_run

    service = BatchingService(1.0, "cuda", cpu_models=("viseme-cnn",))
    try:
        for label in ("viseme-cnn", "whisper-encoder"):
            service.batcher(f"{label}@model", maker(label), {})
    finally:
        service.close()
    assert built == {"viseme-cnn": "cpu", "whisper-encoder": "cuda"}


def test_with_two_in_flight_a_batch_runs_while_the_one_before_is_out():
    # the model host's case: a batch's run is mostly a wait on another process
    first_running, release = threading.Event(), threading.Event()

    def run(feeds):
        if not first_running.is_set():
            first_running.set()
            release.wait(30)
        return {"y": feeds["x"] * 2}

    batcher = ModelBatcher("model", run, window_ms=0, in_flight=2)
    got: dict[str, dict] = {}

    def call(name, value):
        got[name] = batcher.call({"x": np.full((1, 2), value, np.float32)})

    first = threading.Thread(target=call, args=("first", 1.0))
    second = threading.Thread(target=call, args=("second", 3.0))
    try:
        first.start()
        assert first_running.wait(30)
        second.start()
        second.join(30)
        assert not second.is_alive()  # answered while the first batch is still out
        assert "first" not in got
        release.set()
        first.join(30)
    finally:
        release.set()
        batcher.close()
    np.testing.assert_array_equal(got["first"]["y"], [[2.0, 2.0]])
    np.testing.assert_array_equal(got["second"]["y"], [[6.0, 6.0]])
    assert batcher.batches == 2


def test_the_queue_depth_of_a_model_counts_each_of_its_batchers():
    # two graphs of one server with the same kind of model: two batchers, one label
    metrics = ServeMetrics()
    service = BatchingService(window_ms=600_000, metrics=metrics)  # only the slots end a wait

    def run(feeds):
        return {"y": feeds["x"]}

    a, b = service.session(), service.session()
    calls = [a.caller(key, lambda device: run, {}) for key in ("model@one", "model@two")]
    for key in ("model@one", "model@two"):
        b.caller(key, lambda device: run, {})
    x = {"x": np.zeros((1, 2), np.float32)}
    threads = [threading.Thread(target=call, args=(x,)) for call in calls]

    def depth():
        return metrics.registry.get_sample_value("audio2anim_batch_queue_depth", {"model": "model"})

    try:
        for t in threads:
            t.start()
        for _ in range(200):
            if depth() == 2:
                break
            threading.Event().wait(0.01)
        assert depth() == 2  # a's call waits in each batcher for b, which has not called
        b.close()
        for t in threads:
            t.join(30)
        assert depth() == 0
    finally:
        b.close()
        a.close()
        service.close()


def test_a_released_slot_lets_the_batch_run_without_the_session_that_left():
    rng = np.random.default_rng(1)
    service = BatchingService(window_ms=600_000)  # only the slots can end the wait
    run = onnx_run(_front_end())
    a, b = service.session(), service.session()
    call_a = a.caller("frontend@x", lambda device: run, {"h0": 1, "h1": 1})
    b.caller("frontend@x", lambda device: run, {"h0": 1, "h1": 1})
    feeds = _front_feeds(rng, 2)
    got = []
    t = threading.Thread(target=lambda: got.append(call_a(feeds)))
    try:
        t.start()
        t.join(0.5)
        assert t.is_alive()  # waits for session b, which holds a slot and has not called
        b.close()  # b disconnects: the batch goes on without it
        t.join(60)
        assert not t.is_alive() and len(got) == 1
        np.testing.assert_allclose(got[0]["probs"], run(feeds)["probs"], atol=1e-6)
        assert service.batchers["frontend@x"].slots == 1
        a.close()
        assert service.batchers["frontend@x"].slots == 0
    finally:
        b.close()
        a.close()
        service.close()


def _gap(result):
    from audio2anim import arkit

    anim = result.animation()
    return lip_gap(anim.values[:, [anim.names.index(n) for n in arkit.MOUTH + arkit.EYES]])


def test_concurrent_batched_sessions_equal_each_alone_and_close_on_their_own_bilabials(voices):
    from audio2anim import Animator

    names = ("mama bob", "how are you", "pop a bubble")

    async def main():
        server = Server(port=0, batch_window_ms=20.0)
        url = (await server.start()).split("?")[0]
        try:
            results = await asyncio.gather(
                *(
                    stream(url, server.token, voices[n][0], voices[n][1], fmt="f32le")
                    for n in names
                )  # fmt: skip
            )
        finally:
            await server.stop()
        return server, results

    server, results = asyncio.run(main())
    animator = Animator("graphs/viseme_cnn.yaml")
    for name, r in zip(names, results, strict=True):
        x, sr, segments = voices[name]
        assert r.end == {"type": "end", "frames": len(r.values), "dropped": 0}
        alone = animator.animate(x, rate=sr)
        streamed = r.animation()
        assert streamed.frames == alone.frames
        np.testing.assert_allclose(streamed.values, alone.values, atol=2e-3)
        np.testing.assert_allclose(streamed.visemes, alone.visemes, atol=2e-3)
        closed = bilabials_closed(_gap(r), segments)
        if name == "how are you":  # no bilabial: the lips stay open while it speaks
            speech = [
                (s, e) for s, e, p in segments if phone_class(p, "espeak") not in ("sil", None)
            ]
            lo, hi = int(speech[0][0] * 50) + 3, int(speech[-1][1] * 50) - 3
            assert _gap(r)[lo:hi].min() > CLOSED
        else:
            assert len(closed) >= 3 and np.mean(closed) >= 0.75
    registry = server.metrics.registry
    for model in ("viseme-frontend", "viseme-cnn"):
        count = registry.get_sample_value("audio2anim_batch_size_count", {"model": model})
        total = registry.get_sample_value("audio2anim_batch_size_sum", {"model": model})
        assert count and total / count > 1.0, model  # calls were stacked
        waited = registry.get_sample_value("audio2anim_batch_queue_wait_seconds_count",
                                           {"model": model})  # fmt: skip
        assert waited == total


def test_a_session_that_disconnects_frees_its_slots_and_the_others_go_on(voices):
    a, sr_a, _ = voices["mama bob"]
    b, sr_b, _ = voices["how are you"]

    async def main():
        server = Server(port=0, batch_window_ms=20.0)
        url = (await server.start()).split("?")[0]
        try:
            other = asyncio.ensure_future(stream(url, server.token, b, sr_b, fmt="f32le"))
            async with aiohttp.ClientSession() as http:
                ws = await http.ws_connect(f"{url}?token={server.token}")
                await ws.send_str(json.dumps({"rate": sr_a, "format": "f32le"}))
                assert json.loads((await ws.receive()).data)["type"] == "header"
                await ws.send_bytes(a[: sr_a // 2].astype("<f4").tobytes())
                slots = server.batching.batchers.values()
                while len(server.sessions) < 2 or min(b.slots for b in slots) < 2:
                    await asyncio.sleep(0.01)  # both sessions' models are set up
                await ws.close()  # mid-stream, while the other session streams
            while len(server.sessions) > 1:
                await asyncio.sleep(0.01)
            slots_left = {k: v.slots for k, v in server.batching.batchers.items()}
            result = await other
            after = {k: v.slots for k, v in server.batching.batchers.items()}
        finally:
            await server.stop()
        return server, slots_left, after, result

    server, slots_left, after, result = asyncio.run(main())
    assert server.ended["disconnected"] == 1 and server.ended["done"] == 1
    assert len(slots_left) == 2 and set(slots_left.values()) == {1}  # only the other's slot
    assert set(after.values()) == {0}
    assert result.end == {"type": "end", "frames": len(result.values), "dropped": 0}
    assert abs(len(result.values) - len(b) / sr_b * 50) <= 2


@pytest.mark.parametrize("awaited", [False, True], ids=["threads", "awaited"])
def test_live_whisper_streams_batched_together_equal_each_alone(tmp_path, awaited):
    """Two live Whisper streams (the tiny random encoder) pushing different audio in blocks of
    different sizes, from two threads or two tasks awaiting the batcher, their encoder calls
    stacked: each equals its stream alone."""
    from test_whisper_live import live_head
    from tiny_models import save_tiny_whisper

    from audio2anim.models.whisper_head import WhisperVisemes

    whisper_dir = save_tiny_whisper(tmp_path / "whisper", 16)
    front = WhisperVisemes(live_head(tmp_path / "live", whisper_dir), whisper_dir)
    rng = np.random.default_rng(0)
    t = np.arange(2 * 16000) / 16000
    audios = [
        (0.3 * np.sin(2 * np.pi * f * t) + 0.02 * rng.standard_normal(len(t))).astype(np.float32)
        for f in (220, 330)
    ]
    alone = [np.concatenate([(s := front.stream()).push(x), s.flush()]) for x in audios]
    metrics = ServeMetrics()
    service = BatchingService(window_ms=50.0, metrics=metrics)
    sessions = [service.session() for _ in audios]
    streams = [front.stream(batching=sb) for sb in sessions]
    outs: list = [None, None]

    def speak_(i, block):
        s, x = streams[i], audios[i]
        parts = [s.push(x[j : j + block]) for j in range(0, len(x), block)]
        outs[i] = np.concatenate([*parts, s.flush()])
        sessions[i].close()

    async def aspeak(i, block):
        s, x = streams[i], audios[i]
        parts = [await s.apush(x[j : j + block]) for j in range(0, len(x), block)]
        outs[i] = np.concatenate([*parts, await s.aflush()])
        sessions[i].close()

    async def both():
        await asyncio.gather(aspeak(0, 640), aspeak(1, 960))

    threads = [threading.Thread(target=speak_, args=(i, b)) for i, b in enumerate((640, 960))]
    try:
        if awaited:
            asyncio.run(both())
        else:
            for th in threads:
                th.start()
            for th in threads:
                th.join(120)
    finally:
        service.close()
    for got, want in zip(outs, alone, strict=True):
        np.testing.assert_allclose(got, want, atol=1e-5)
    label = {"model": "whisper-encoder"}
    count = metrics.registry.get_sample_value("audio2anim_batch_size_count", label)
    total = metrics.registry.get_sample_value("audio2anim_batch_size_sum", label)
    assert count < total  # some windows of the two streams ran in one call


def test_serve_refuses_a_bad_batch_window_or_a_missing_gpu_in_one_line(python):
    import subprocess
    from pathlib import Path

    import torch

    root = Path(__file__).resolve().parents[1]
    cases = [
        (["--batch-window-ms", "-1"], "error: --batch-window-ms: between 0 and 1000"),
        (["--warm-batches", "-1"], "error: --warm-batches: between 0 and 4096"),
        (
            ["--cpu-models", "viseme-cnn,encoder"],
            "error: --cpu-models: unknown model "
            "'encoder' (one of viseme-mlp, viseme-cnn, w2v-cnn, w2v-attention, whisper-encoder)",
        ),
    ]
    if not torch.cuda.is_available():
        cases.append((["--device", "cuda"], "error: --device cuda: no CUDA device is available"))
    for extra, message in cases:
        r = subprocess.run(
            [python, "-m", "audio2anim", "serve", "--port", "0", *extra],
            cwd=root, capture_output=True, text=True, timeout=120,
        )  # fmt: skip
        assert r.returncode == 2 and r.stderr.strip() == message, r.stderr
