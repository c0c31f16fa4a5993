"""`audio2anim serve` with the shipped viseme CNN graph over espeak-ng speech: concurrent
sessions each animate their own audio (lips close on their own bilabials), a session equals
the Animator on the same audio, disconnects free the session, a client that never reads does
not hold up another, access and limits are refused with clear messages, and a bad start
message closes only its own session."""

from __future__ import annotations

import asyncio
import json
import socket

import aiohttp
import numpy as np
import pytest
import soxr
from tiny_models import bilabials_closed, speak

from audio2anim.client import ServeError, stream
from audio2anim.serve.server import Server
from audio2anim.train.metrics import CLOSED, lip_gap
from audio2anim.visemes import phone_class


@pytest.fixture(scope="module")
def voices():
    """Two espeak-ng sentences: one with bilabials, one without."""
    return {"mama bob": speak("mama bob"), "how are you": speak("how are you")}


def _run(coro):
    return asyncio.run(coro)


async def _server(**kw) -> tuple[Server, str]:
    server = Server(port=0, **kw)
    url = await server.start()
    return server, url.split("?")[0]


def _gap(result):
    anim = result.animation()
    from audio2anim import arkit

    return lip_gap(anim.values[:, [anim.names.index(n) for n in arkit.MOUTH + arkit.EYES]])


def test_two_concurrent_speakers_get_their_own_lips(voices):
    (a, sr_a, seg_a), (b, sr_b, seg_b) = voices["mama bob"], voices["how are you"]
    b44 = soxr.resample(b, sr_b, 44100).astype(np.float32)

    async def main():
        server, url = await _server()
        try:
            return await asyncio.gather(
                stream(url, server.token, a, sr_a, fmt="s16le"),  # paced in real time
                stream(url, server.token, b44, 44100, fmt="f32le"),
            )
        finally:
            await server.stop()

    ra, rb = _run(main())
    for r, x, sr in ((ra, a, sr_a), (rb, b, sr_b)):
        assert r.end == {"type": "end", "frames": len(r.values), "dropped": 0}
        assert abs(len(r.values) - len(x) / sr * 50) <= 2
        np.testing.assert_allclose(np.diff(r.times), 0.02, atol=1e-6)
    closed = bilabials_closed(_gap(ra), seg_a)
    assert len(closed) >= 3 and np.mean(closed) >= 0.75  # m, m, b, b of "mama bob"
    # "how are you" has no bilabial: its lips stay open while it speaks
    speech = [(s, e) for s, e, p in seg_b if phone_class(p, "espeak") not in ("sil", None)]
    lo, hi = int(speech[0][0] * 50) + 3, int(speech[-1][1] * 50) - 3
    assert _gap(rb)[lo:hi].min() > CLOSED
    # the visemes come with the frames
    assert len(ra.visemes[0]) == 15 and ra.header["visemes"][1] == "PP"


def test_a_session_equals_the_animator_on_the_same_audio(voices):
    from audio2anim import Animator

    a, sr, _ = voices["mama bob"]
    a = np.tile(a, 3)  # 10 ms chunks sent as fast as possible: the session's inbox fills up

    async def main():
        server, url = await _server()
        try:
            return await stream(url, server.token, a, sr, fmt="f32le", realtime=False, chunk_ms=10)
        finally:
            await server.stop()

    streamed = _run(main()).animation()
    alone = Animator("graphs/viseme_cnn.yaml").animate(a, rate=sr)  # the server's default graph
    assert streamed.frames == alone.frames and streamed.names == alone.names
    assert streamed.start == pytest.approx(alone.start)
    np.testing.assert_allclose(streamed.values, alone.values, atol=2e-3)
    np.testing.assert_allclose(streamed.visemes, alone.visemes, atol=2e-3)


def test_a_client_that_disconnects_mid_stream_frees_its_session(voices):
    a, sr, _ = voices["mama bob"]

    async def main():
        server, url = await _server()
        try:
            async with aiohttp.ClientSession() as http:
                ws = await http.ws_connect(f"{url}?token={server.token}")
                await ws.send_str(json.dumps({"rate": sr, "format": "f32le"}))
                assert json.loads((await ws.receive()).data)["type"] == "header"
                await ws.send_bytes(a[: sr // 2].astype("<f4").tobytes())
                while not server.sessions:
                    await asyncio.sleep(0.01)
                await ws.close()
            for _ in range(500):
                if not server.sessions and server.admitted == 0:
                    break
                await asyncio.sleep(0.02)
            return server
        finally:
            await server.stop()

    server = _run(main())
    assert server.sessions == {} and server.admitted == 0
    assert server.ended == {"done": 0, "disconnected": 1, "error": 0, "stopped": 0}
    assert server.metrics.active.labels("viseme-cnn")._value.get() == 0


def test_a_client_that_never_reads_does_not_hold_up_another(voices):
    a, sr, _ = voices["mama bob"]
    long = np.tile(a, 20)  # about 20 s of speech, sent as fast as the server takes it

    async def stalled(url, token, started: asyncio.Event, done: asyncio.Event):
        async with aiohttp.ClientSession() as http:
            ws = await http.ws_connect(f"{url}?token={token}")
            sock = ws._response.connection.transport.get_extra_info("socket")
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            await ws.send_str(json.dumps({"rate": sr, "format": "f32le"}))
            block = sr // 5
            for i in range(0, len(long), block):
                await ws.send_bytes(long[i : i + block].astype("<f4").tobytes())
                if i == 0:
                    started.set()
            await ws.send_str('{"type": "end"}')
            await done.wait()  # never reads a frame
            # then goes away without the closing handshake (it would read the backlog first)

    async def main():
        server, url = await _server(queue=10)
        try:
            started, done = asyncio.Event(), asyncio.Event()
            slow = asyncio.ensure_future(stalled(url, server.token, started, done))
            await started.wait()
            result = await stream(url, server.token, a, sr)  # paced in real time
            stalled_session = next(s for s in server.sessions.values() if s.dropped)
            drops = stalled_session.dropped
            done.set()
            await slow
            return result, drops
        finally:
            await server.stop()

    result, drops = _run(main())
    assert result.end["dropped"] == 0 and len(result.values) == result.end["frames"] > 0
    assert drops > 0  # the stalled session's frames were dropped by its own queue


def test_access_without_the_token_or_from_another_origin_is_refused():
    async def main():
        server, url = await _server()
        codes = []
        try:
            async with aiohttp.ClientSession() as http:
                for query, headers in (
                    ("", {}),
                    ("?token=wrong-token-wrong-token", {}),
                    (f"?token={server.token}", {"Origin": "http://evil.example"}),
                ):
                    with pytest.raises(aiohttp.WSServerHandshakeError) as e:
                        await http.ws_connect(url + query, headers=headers)
                    codes.append(e.value.status)
                # the server's own origin is fine
                own = {"Origin": f"http://127.0.0.1:{server.port}"}
                ws = await http.ws_connect(f"{url}?token={server.token}", headers=own)
                await ws.close()
            with pytest.raises(ServeError, match="refused"):
                await stream(url, "x" * 20, np.zeros(1600, np.float32), 16000)
        finally:
            await server.stop()
        return codes, server.refused

    codes, refused = _run(main())
    assert codes == [403, 403, 403] and refused == 4


def test_too_many_sessions_are_refused_with_a_clear_message():
    async def main():
        server, url = await _server(max_sessions=1)
        try:
            async with aiohttp.ClientSession() as http:
                ws = await http.ws_connect(f"{url}?token={server.token}")
                await ws.send_str(json.dumps({"rate": 16000, "format": "s16le"}))
                await ws.receive()  # header: this one holds the only slot
                with pytest.raises(ServeError) as e:
                    await stream(url, server.token, np.zeros(1600, np.float32), 16000)
                await ws.send_str('{"type": "end"}')
                await ws.close()
            return str(e.value)
        finally:
            await server.stop()

    message = _run(main())
    assert "too many sessions: 1 of 1" in message and "\n" not in message


def test_a_bad_start_message_closes_that_session_only(voices):
    a, sr, _ = voices["how are you"]
    bad = {
        '{"rate": "fast", "format": "s16le"}': "bad start message: rate",
        '{"rate": 16000, "format": "mp3"}': "bad start message: format",
        '{"rate": 16000, "format": "s16le", "graph": "../etc"}': "give a shipped graph's name",
        '{"rate": 16000, "format": "s16le", "graph": "nope"}': "graph 'nope'",
        "not json": "bad start message",
    }

    async def main():
        server, url = await _server(max_chunk=4096)
        errors = {}
        try:
            async with aiohttp.ClientSession() as http:
                for text in bad:
                    ws = await http.ws_connect(f"{url}?token={server.token}")
                    await ws.send_str(text)
                    msg = json.loads((await ws.receive()).data)
                    assert msg["type"] == "error"
                    errors[text] = msg["error"]
                    assert (await ws.receive()).type == aiohttp.WSMsgType.CLOSE
                # a chunk over the limit, and an odd-sized s16le chunk
                for data in (b"\0" * 8192, b"\0" * 3):
                    ws = await http.ws_connect(f"{url}?token={server.token}")
                    await ws.send_str(json.dumps({"rate": 16000, "format": "s16le"}))
                    await ws.receive()
                    await ws.send_bytes(data)
                    errors[len(data)] = json.loads((await ws.receive()).data)["error"]
                    await ws.close()
            good = await stream(url, server.token, a, sr, realtime=False, chunk_ms=50)
            return errors, good, server.ended
        finally:
            await server.stop()

    errors, good, ended = _run(main())
    for text, words in bad.items():
        assert words in errors[text] and "\n" not in errors[text], errors[text]
    assert "exceeds the limit of 4096 bytes" in errors[8192]
    assert "not a whole number of s16le samples" in errors[3]
    assert good.end["frames"] > 0 and ended["done"] == 1 and ended["error"] == 2


def test_stopping_the_server_ends_a_session_with_what_it_made(voices):
    a, sr, _ = voices["mama bob"]
    long = np.tile(a, 10)

    async def main():
        server, url = await _server()
        client = asyncio.ensure_future(stream(url, server.token, long, sr))
        while not server.sessions or not next(iter(server.sessions.values())).sent:
            await asyncio.sleep(0.02)
        await server.stop()
        return await client, server

    result, server = _run(main())
    assert 0 < len(result.values) < len(long) / sr * 50 - 10
    assert result.end["frames"] == len(result.values)
    assert server.ended["stopped"] == 1 and not server.sessions


def test_source_session_joins_the_chunks_that_waited():
    from audio2anim.sources.session import SessionSource, SessionSourceParams

    async def main():
        inbox: asyncio.Queue = asyncio.Queue()
        source = SessionSource(SessionSourceParams(inbox=inbox, rate=16000, max_block_ms=50))
        packets = source.packets()
        inbox.put_nowait((np.full(320, 0.1, np.float32), 1.0))
        first = await packets.__anext__()  # alone: it did not wait
        for i in range(4):  # 4 chunks waiting: joined up to 50 ms (800 samples)
            inbox.put_nowait((np.full(320, i, np.float32), 2.0 + i))
        inbox.put_nowait(None)
        rest = [p async for p in packets]
        return first, rest

    first, rest = _run(main())
    assert len(first.payload.samples) == 320 and first.capture_time == 1.0
    assert [len(p.payload.samples) for p in rest] == [960, 320]
    assert [p.media_time for p in rest] == [0.02, 0.08]
    assert [p.capture_time for p in rest] == [4.0, 5.0]  # the newest chunk joined
    np.testing.assert_array_equal(rest[0].payload.samples[320:640], 1.0)


def test_new_tokens_can_follow_token_on_a_command_line():
    from audio2anim.graph.netguard import new_token

    tokens = {new_token() for _ in range(2000)}
    assert len(tokens) == 2000  # random
    assert all(len(t) == 32 and not t.startswith("-") for t in tokens)


def test_queue_depths_are_scraped_per_session_and_go_with_it():
    from audio2anim.serve.session import start_message

    async def main():
        server = Server(port=0, batch_window_ms=5)  # not listening: the session core only
        get = server.metrics.registry.get_sample_value
        try:
            async with server.open_session(start_message({"rate": 16000, "format": "f32le"})) as s:
                label = {"graph": "viseme-cnn", "session": s.sid}
                for _ in range(3):
                    s.frame(object())  # frames its client has not taken yet
                await s.inbox.put((np.zeros(320, np.float32), 0.0))  # a chunk not yet read
                during = (
                    get("audio2anim_queue_depth", {**label, "edge": "client"}),
                    get("audio2anim_queue_depth", {**label, "edge": "inbox"}),
                    get("audio2anim_batch_queue_depth", {"model": "viseme-frontend"}),
                )
            after = get("audio2anim_queue_depth", {**label, "edge": "client"})
        finally:
            await server.stop()
        return during, after

    during, after = _run(main())
    assert during == (3.0, 1.0, 0.0)
    assert after is None
