"""`audio2anim serve` over gRPC (audio2anim.v1.AnimationService) with the shipped viseme CNN
graph over espeak-ng speech: a gRPC session's frames equal a WebSocket session's, concurrent
sessions each get their own frames, the token, a bad start or chunk and a full server are
refused with their status codes and one-line messages, a client that cancels mid-stream frees
its session, `audio2anim stream grpc://…` writes the animation, and the committed stubs are
what protoc makes of the .proto."""

from __future__ import annotations

import asyncio
import csv
import filecmp
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import grpc
import numpy as np
import pytest
import soundfile as sf
from tiny_models import speak

from audio2anim import arkit
from audio2anim.client import ServeError, stream
from audio2anim.formats.proto import ACCEPTED
from audio2anim.formats.proto import audio2anim_pb2 as pb
from audio2anim.formats.proto import audio2anim_pb2_grpc as pb_grpc
from audio2anim.serve.server import Server

ROOT = Path(__file__).resolve().parents[1]
PROTO = "audio2anim/formats/proto/audio2anim.proto"
TOKEN = "test-token-0123456789abcdef"
Req = pb.StreamRequest


@pytest.fixture(scope="module")
def voices():
    return {"mama bob": speak("mama bob"), "how are you": speak("how are you")}


async def _server(**kw) -> Server:
    server = Server(port=0, grpc_port=0, **kw)
    await server.start()
    return server


def _call(server: Server, token: str | None = None, key: str = "authorization"):
    """A raw ``Stream`` call → (channel, call)."""
    channel = grpc.aio.insecure_channel(server.grpc_url.removeprefix("grpc://"))
    token = server.token if token is None else token
    value = f"Bearer {token}" if key == "authorization" else token
    call = pb_grpc.AnimationServiceStub(channel).Stream(metadata=((key, value),))
    return channel, call


def _start(rate=16000, fmt="s16le", graph=""):
    return Req(start=Req.Start(rate=rate, format=fmt, graph=graph))


async def _rest(call) -> list[str]:
    """The kinds of the responses still to come."""
    kinds = []
    while (r := await call.read()) is not grpc.aio.EOF:
        kinds.append(r.WhichOneof("kind"))
    return kinds


async def _refusal(call, *requests) -> tuple[grpc.StatusCode, str, list[str]]:
    """Send ``requests`` if the server takes the call, read to the end → (status code,
    details, error responses)."""
    errors = []
    if ACCEPTED in tuple(await call.initial_metadata()):
        for r in requests:
            await call.write(r)
        with pytest.raises(grpc.aio.AioRpcError):
            while (r := await call.read()) is not grpc.aio.EOF:
                if r.WhichOneof("kind") == "error":
                    errors.append(r.error.message)
    return await call.code(), await call.details(), errors


def test_a_grpc_session_equals_a_websocket_session(voices):
    a, sr, _ = voices["mama bob"]

    async def main():
        server = await _server()
        ws_url = server.url.split("?")[0]
        try:
            g = await stream(server.grpc_url, server.token, a, sr, fmt="s16le", chunk_ms=20)
            w = await stream(ws_url, server.token, a, sr, fmt="s16le", chunk_ms=20)
            return g, w
        finally:
            await server.stop()

    g, w = asyncio.run(main())
    assert g.end == w.end == {"type": "end", "frames": len(w.values), "dropped": 0}
    assert abs(len(g.values) - len(a) / sr * 50) <= 2
    assert {**g.header, "session": ""} == {**w.header, "session": ""}
    assert g.header["session"] != w.header["session"]
    assert g.times == pytest.approx(w.times, abs=1e-9)
    np.testing.assert_allclose(g.values, w.values, atol=1e-4)
    np.testing.assert_allclose(g.visemes, w.visemes, atol=1e-4)
    # each frame names the newest chunk it used (which one depends on when the chunks came)
    ends = np.asarray(g.audio_end, np.float64)
    assert (np.diff(ends) >= 0).all() and (ends >= np.asarray(g.times)).all()
    assert np.ptp(np.asarray(g.values)[:, g.names.index("jawOpen")]) > 0.1  # the mouth moves


def test_concurrent_grpc_sessions_each_get_their_own_frames(voices):
    (a, sr_a, _), (b, sr_b, _) = voices["mama bob"], voices["how are you"]

    async def main():
        server = await _server()
        url, token = server.grpc_url, server.token
        try:
            alone = [
                await stream(url, token, a, sr_a, realtime=False),
                await stream(url, token, b, sr_b, fmt="f32le", realtime=False),
            ]
            together = await asyncio.gather(
                stream(url, token, a, sr_a),  # paced in real time
                stream(url, token, b, sr_b, fmt="f32le"),
            )
            return alone, together, dict(server.ended)
        finally:
            await server.stop()

    alone, together, ended = asyncio.run(main())
    assert ended == {"done": 4, "disconnected": 0, "error": 0, "stopped": 0}
    for solo, both in zip(alone, together, strict=True):
        assert len(both.values) == len(solo.values) == both.end["frames"]
        np.testing.assert_allclose(both.values, solo.values, atol=2e-3)
    n = min(len(together[0].values), len(together[1].values))
    assert np.abs(np.subtract(together[0].values[:n], together[1].values[:n])).max() > 0.1


def test_the_token_is_required_in_the_metadata(voices):
    a, sr, _ = voices["how are you"]

    async def main():
        server = await _server()
        codes = []
        try:
            for token in ("", "wrong-token-wrong-token"):
                channel, call = _call(server, token)
                async with channel:
                    codes.append((await _refusal(call, _start()))[:2])
            channel, call = _call(server, key="x-token")  # the other header is fine
            async with channel:
                await call.write(_start())
                header = await call.read()
                await call.write(Req(end=Req.End()))
                rest = await _rest(call)
            with pytest.raises(ServeError, match="refused .UNAUTHENTICATED"):
                await stream(server.grpc_url, "x" * 20, a, sr)
            return codes, header, rest, server.refused
        finally:
            await server.stop()

    codes, header, rest, refused = asyncio.run(main())
    assert codes == [(grpc.StatusCode.UNAUTHENTICATED, "missing or wrong token")] * 2
    assert header.WhichOneof("kind") == "header" and rest == ["end"]
    assert refused == 3


def test_bad_starts_and_chunks_are_invalid_arguments_and_a_full_server_is_exhausted(voices):
    a, sr, _ = voices["how are you"]
    bad_starts = {
        "rate": (_start(rate=10), "bad start message: rate"),
        "format": (_start(fmt="mp3"), "bad start message: format"),
        "path": (_start(graph="../etc"), "give a shipped graph's name"),
        "graph": (_start(graph="nope"), "graph 'nope'"),
        "audio first": (Req(audio=b"\0\0"), "the first request must be the start message"),
    }

    async def main():
        server = await _server(max_chunk=4096, max_sessions=1)
        out = {}
        try:
            for name, (request, _) in bad_starts.items():
                channel, call = _call(server)
                async with channel:
                    out[name] = await _refusal(call, request)
            # a chunk over the limit, an odd-sized s16le chunk, a second start
            for name, request in (
                ("big", Req(audio=b"\0" * 8192)),
                ("odd", Req(audio=b"\0" * 3)),
                ("restart", _start()),
            ):
                channel, call = _call(server)
                async with channel:
                    await call.write(_start())
                    assert (await call.read()).WhichOneof("kind") == "header"
                    out[name] = await _refusal(call, request)
            # the one slot is held: the next call is refused
            channel, call = _call(server)
            async with channel:
                await call.write(_start())
                assert (await call.read()).WhichOneof("kind") == "header"
                with pytest.raises(ServeError) as full:
                    await stream(server.grpc_url, server.token, a, sr)
                await call.write(Req(end=Req.End()))
                assert await _rest(call) == ["end"]
            good = await stream(server.grpc_url, server.token, a, sr, realtime=False)
            return out, str(full.value), good, dict(server.ended)
        finally:
            await server.stop()

    out, full, good, ended = asyncio.run(main())
    invalid = grpc.StatusCode.INVALID_ARGUMENT
    for name, (_, words) in bad_starts.items():
        code, details, errors = out[name]
        assert code == invalid and words in details and "\n" not in details, (name, details)
        assert errors == [details]  # the same line as an error response first
    assert out["big"][0] == invalid and "exceeds the limit of 4096 bytes" in out["big"][1]
    assert out["odd"][0] == invalid and "not a whole number of s16le samples" in out["odd"][1]
    assert out["restart"][0] == invalid and "after start, send audio" in out["restart"][1]
    assert "too many sessions: 1 of 1" in full
    assert good.end["frames"] > 0
    assert ended == {"done": 2, "disconnected": 0, "error": 3, "stopped": 0}, (ended, out)


def test_a_grpc_client_that_cancels_mid_stream_frees_its_session(voices):
    a, sr, _ = voices["mama bob"]

    async def main():
        server = await _server()
        try:
            channel, call = _call(server)
            async with channel:
                await call.write(_start(sr, "f32le"))
                assert (await call.read()).WhichOneof("kind") == "header"
                await call.write(Req(audio=a[: sr // 2].astype("<f4").tobytes()))
                assert (await call.read()).WhichOneof("kind") == "frame"
                active = server.metrics.active.labels("viseme-cnn")._value.get()
                call.cancel()
            for _ in range(500):
                if not server.sessions and server.admitted == 0:
                    break
                await asyncio.sleep(0.02)
            return server, active
        finally:
            await server.stop()

    server, active = asyncio.run(main())
    assert active == 1
    assert server.sessions == {} and server.admitted == 0
    assert server.ended == {"done": 0, "disconnected": 1, "error": 0, "stopped": 0}
    assert server.metrics.active.labels("viseme-cnn")._value.get() == 0


def test_a_grpc_client_that_stops_reading_does_not_hold_up_another(voices):
    a, sr, _ = voices["mama bob"]
    long = np.tile(a, 20)  # about 16 s of speech, sent as fast as the server takes it
    # a small receive window that does not grow: the stall stops the server's writes after a
    # few frames (as the WebSocket test's small SO_RCVBUF does)
    small_window = [("grpc.http2.bdp_probe", 0), ("grpc.http2.lookahead_bytes", 1024)]

    async def stalled(server: Server, started: asyncio.Event, done: asyncio.Event):
        target = server.grpc_url.removeprefix("grpc://")
        async with grpc.aio.insecure_channel(target, options=small_window) as channel:
            call = pb_grpc.AnimationServiceStub(channel).Stream(
                metadata=(("authorization", f"Bearer {server.token}"),)
            )
            await call.write(_start(sr, "f32le"))
            block = sr // 5
            for i in range(0, len(long), block):
                await call.write(Req(audio=long[i : i + block].astype("<f4").tobytes()))
                if i == 0:
                    started.set()
            await call.write(Req(end=Req.End()))
            await done.wait()  # never reads a response, and holds the call open
            call.cancel()

    async def main():
        server = await _server(queue=10)
        try:
            started, done = asyncio.Event(), asyncio.Event()
            slow = asyncio.ensure_future(stalled(server, started, done))
            await started.wait()
            while not server.sessions:
                await asyncio.sleep(0.01)
            stalled_session = next(iter(server.sessions.values()))
            t0 = time.monotonic()
            result = await asyncio.wait_for(stream(server.grpc_url, server.token, a, sr), 60)
            took = time.monotonic() - t0
            # still streaming (its last frames wait for a reader): its drops are in the metrics
            counted = server.metrics.dropped.labels("viseme-cnn", "client", stalled_session.sid)
            drops = (stalled_session.dropped, counted._value.get())
            # its client never reads: the session ends END_GRACE_S after its last frame
            for _ in range(1500):
                if not server.sessions and server.admitted == 0:
                    break
                await asyncio.sleep(0.02)
            ended, admitted = dict(server.ended), server.admitted
            done.set()
            await slow
            return result, took, drops, stalled_session, ended, admitted
        finally:
            await server.stop()

    result, took, drops, stalled_session, ended, admitted = asyncio.run(main())
    assert result.end == {"type": "end", "frames": len(result.values), "dropped": 0}
    assert len(result.values) > 0
    # in real time, as if alone: no wait for the stalled session's writes
    assert took < len(a) / sr + 2.0, took
    assert np.percentile(result.latencies(), 90) < 0.5, result.latencies()
    assert drops[0] > 0 and drops[1] == drops[0]  # dropped by its own queue, and counted
    assert stalled_session.sent < 50  # a few frames filled its window; then it was skipped
    assert stalled_session.end == "done" and admitted == 0
    assert ended == {"done": 2, "disconnected": 0, "error": 0, "stopped": 0}


def test_a_call_without_a_start_message_is_ended(monkeypatch):
    monkeypatch.setattr("audio2anim.serve.grpc_service.START_TIMEOUT_S", 0.2)

    async def main():
        server = await _server()
        try:
            channel, call = _call(server)
            async with channel:
                refusal = await _refusal(call)  # sends nothing
            return refusal, server.admitted
        finally:
            await server.stop()

    (code, details, errors), admitted = asyncio.run(main())
    assert code == grpc.StatusCode.INVALID_ARGUMENT and details == "no start message within 0.2 s"
    assert errors == [details] and admitted == 0


def test_a_grpc_port_in_use_is_one_line_naming_it():
    async def main():
        with socket.socket() as taken:
            taken.bind(("127.0.0.1", 0))
            taken.listen()
            port = taken.getsockname()[1]
            server = Server(port=0, grpc_port=port)
            with pytest.raises(OSError) as e:
                await server.start()
        return str(e.value), port, server

    message, port, server = asyncio.run(main())
    assert message.startswith(f"audio2anim serve (gRPC): cannot listen on 127.0.0.1:{port}: ")
    assert "\n" not in message and server._runner is None  # the WebSocket listener closed too


def test_serve_grpc_port_and_stream_a_grpc_url(tmp_path, python):
    audio, sr, _ = speak("mama bob")
    wav = tmp_path / "mama.wav"
    sf.write(wav, audio, sr)
    server = subprocess.Popen(
        [python, "-m", "audio2anim", "serve", "--port", "0", "--grpc-port", "0", "--token", TOKEN],
        cwd=ROOT, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip

    def stream_cli(url: str, token: str, out: Path) -> subprocess.CompletedProcess:
        cmd = ["stream", str(wav), "--server", url, "--token", token, "-o", str(out), "--fast"]
        return subprocess.run(
            [python, "-m", "audio2anim", *cmd], cwd=ROOT, capture_output=True, text=True,
            timeout=120,
        )  # fmt: skip

    try:
        for line in server.stderr:
            if line.startswith("audio2anim serve (gRPC): "):
                url = line.split(": ", 1)[1].strip()
                break
        assert url.startswith("grpc://127.0.0.1:")
        r = stream_cli(url, TOKEN, tmp_path / "mama.csv")
        assert r.returncode == 0, r.stderr
        rows = list(csv.reader((tmp_path / "mama.csv").open()))
        assert rows[0] == ["time", *arkit.ALL] and abs(len(rows) - 1 - len(audio) / sr * 50) <= 2
        bad = stream_cli(url, "wrong-token-0123456789", tmp_path / "x.csv")
        assert bad.returncode == 1 and "refused (UNAUTHENTICATED" in bad.stderr
        assert not (tmp_path / "x.csv").exists()
    finally:
        server.send_signal(signal.SIGINT)
        rest = server.communicate(timeout=30)[1]
    assert "sessions: done 1, disconnected 0, error 0, stopped 0; refused 1" in rest


def test_the_committed_stubs_are_what_protoc_makes_of_the_proto(tmp_path):
    r = subprocess.run(
        [sys.executable, "-m", "grpc_tools.protoc", "-I", ".", f"--python_out={tmp_path}",
         f"--pyi_out={tmp_path}", f"--grpc_python_out={tmp_path}", PROTO],
        cwd=ROOT, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert r.returncode == 0, r.stderr
    here = ROOT / "audio2anim/formats/proto"
    made = tmp_path / "audio2anim/formats/proto"
    names = ["audio2anim_pb2.py", "audio2anim_pb2.pyi", "audio2anim_pb2_grpc.py"]
    _, differ, missing = filecmp.cmpfiles(here, made, names, shallow=False)
    assert not differ and not missing, f"regenerate the stubs (see {PROTO}): {differ + missing}"
