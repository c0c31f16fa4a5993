"""A client of ``audio2anim serve``: stream audio, get the animation back (no torch, no models).

    from audio2anim.client import stream, stream_file

    result = stream_file("ws://127.0.0.1:8770/v1/stream", token, "line01.wav")
    result.animation()                     # an `audio2anim.formats.animation.Animation`

    result = await stream(url, token, samples, rate=44100, realtime=False)   # in an event loop
    result = stream_file("grpc://127.0.0.1:8771", token, "line01.wav")  # over gRPC

The URL's scheme picks the transport: ``ws://`` (WebSocket) or ``grpc://`` (gRPC, the
``audio2anim.v1.AnimationService`` of audio2anim/formats/proto/audio2anim.proto, the token in
the metadata); both give the same `StreamResult`. The protocol (docs/serve.md): a start
message, chunks of 16-bit PCM (``s16le``, the default) or float32 (``f32le``), an end
message; the server answers with a header (parameter names, frame rate), one frame per
1/fps seconds of audio as soon as it is made, then an end message (or one error message). ``realtime`` paces the chunks like a live
microphone (the default); without it they go as fast as the connection takes them.

`StreamResult` keeps, per frame, its media time, weights and viseme posteriors, and the
monotonic clock when it arrived and the media end of the newest chunk it used (the frame's
``audio_end``); ``sent`` holds ``(media end of chunk, monotonic send time)`` per chunk, so
`StreamResult.latencies` measures each frame's latency from the send of that chunk. Errors from the server raise
`ServeError` with its one-line message. Needs aiohttp and grpcio (the ``serve`` extra).
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import os
import time
from collections.abc import Callable

import numpy as np

from audio2anim import arkit
from audio2anim.formats.animation import Animation


class ServeError(RuntimeError):
    """The server refused the stream or reported an error (one line)."""


@dataclasses.dataclass
class StreamResult:
    header: dict
    times: list[float] = dataclasses.field(default_factory=list)
    values: list[list[float]] = dataclasses.field(default_factory=list)
    visemes: list[list[float]] = dataclasses.field(default_factory=list)
    received: list[float] = dataclasses.field(default_factory=list)  # monotonic, per frame
    audio_end: list[float | None] = dataclasses.field(default_factory=list)  # per frame
    sent: list[tuple[float, float]] = dataclasses.field(default_factory=list)
    end: dict = dataclasses.field(default_factory=dict)

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(self.header.get("names", ()))

    @property
    def fps(self) -> float:
        return float(self.header.get("fps", 50.0))

    def latencies(self) -> np.ndarray:
        """Seconds from sending the newest chunk a frame used to receiving the frame, per frame
        (those whose chunk is known); the model's algorithmic latency is not in it."""
        send = {round(end, 6): t for end, t in self.sent}
        out = [
            r - send[round(e, 6)]
            for r, e in zip(self.received, self.audio_end, strict=True)
            if e is not None and round(e, 6) in send
        ]
        return np.asarray(out, np.float64)

    def animation(self, source: str = "<stream>") -> Animation:
        """The frames as an `Animation` holding all 52 ARKit names in `arkit.ALL` order (those
        the model does not predict are 0) and then any other name, as ``animate`` writes."""
        raw = np.asarray(self.values, np.float32).reshape(len(self.values), len(self.names))
        extras = tuple(n for n in self.names if n not in arkit.ALL)
        names = tuple(arkit.ALL) + extras
        values = np.zeros((len(raw), len(names)), np.float32)
        index = {n: i for i, n in enumerate(names)}
        values[:, [index[n] for n in self.names]] = raw
        visemes = None
        if self.visemes and all(len(v) for v in self.visemes):
            visemes = np.clip(np.asarray(self.visemes, np.float32), 0.0, None)
        return Animation(
            fps=self.fps,
            names=names,
            values=values,
            visemes=visemes,
            start=self.times[0] if self.times else 0.0,
            metadata={"source": source, "graph": self.header.get("graph", "")},
        )


def _chunks(samples: np.ndarray, fmt: str, block: int):
    if fmt == "s16le":
        data = (np.clip(samples, -1.0, 1.0) * 32767.0).round().astype("<i2")
    else:
        data = samples.astype("<f4")
    for i in range(0, len(data), block):
        yield i + len(data[i : i + block]), data[i : i + block].tobytes()


async def stream(
    url: str,
    token: str,
    samples: np.ndarray,
    rate: int,
    *,
    fmt: str = "s16le",
    graph: str | None = None,
    realtime: bool = True,
    chunk_ms: float = 20.0,
    on_frame: Callable[[dict], None] | None = None,
    read: bool = True,
) -> StreamResult:
    """Stream mono ``samples`` (float, [-1, 1]) at ``rate`` Hz to the server at ``url``
    (``ws://…/v1/stream`` or ``grpc://HOST:PORT``) → `StreamResult`. ``on_frame(frame)`` is
    called for each frame as it arrives (a dict: ``t``, ``values``, ``visemes``,
    ``audio_end``); ``read=False`` never reads the frames (a stalled client, for tests and
    benches)."""
    samples = np.asarray(samples, np.float32)
    if samples.ndim == 2:
        samples = samples.mean(axis=1)
    start = {"type": "start", "rate": int(rate), "format": fmt}
    if graph is not None:
        start["graph"] = graph
    audio = _Audio(samples, int(rate), fmt, max(1, round(rate * chunk_ms / 1000)), realtime)
    transport = _grpc if url.startswith("grpc://") else _websocket
    return await transport(url, token, start, audio, on_frame, read)


@dataclasses.dataclass
class _Audio:
    samples: np.ndarray
    rate: int
    fmt: str
    block: int
    realtime: bool

    async def send(self, write, end, result: StreamResult) -> None:
        """``write(chunk)`` each chunk, paced in real time or not, then ``end()``."""
        t0 = time.monotonic()
        for stop, data in _chunks(self.samples, self.fmt, self.block):
            if self.realtime:
                delay = t0 + stop / self.rate - time.monotonic()
                if delay > 0:
                    await asyncio.sleep(delay)
            await write(data)
            result.sent.append((stop / self.rate, time.monotonic()))
        await end()


async def _session(url, messages, audio: _Audio, write, end, on_frame, read) -> StreamResult:
    """The protocol over any transport: ``messages`` (the server's, as dicts), the audio
    sent with ``write``/``end`` while the frames are read."""
    header = await anext(messages, None)
    if header is None or header.get("type") != "header":
        got = None if header is None else header.get("type")
        raise ServeError(f"{url}: expected the header, got {got!r}")
    result = StreamResult(header)
    sender = asyncio.ensure_future(audio.send(write, end, result))
    if not read:
        await sender
        return result
    try:
        async for m in messages:
            kind = m.get("type")
            if kind is None:
                result.received.append(time.monotonic())
                result.times.append(m["t"])
                result.values.append(m["values"])
                result.visemes.append(m.get("visemes") or [])
                result.audio_end.append(m.get("audio_end"))
                if on_frame is not None:
                    on_frame(m)
            elif kind == "end":
                result.end = m
                break
        else:
            raise ServeError(f"{url}: the server closed the stream before its end")
    finally:
        if not sender.done():
            sender.cancel()
    await asyncio.gather(sender, return_exceptions=True)
    return result


async def _websocket(url, token, start, audio, on_frame, read) -> StreamResult:
    import aiohttp

    sep = "&" if "?" in url else "?"
    async with aiohttp.ClientSession() as http:
        try:
            ws = await http.ws_connect(f"{url}{sep}token={token}", max_msg_size=0)
        except aiohttp.WSServerHandshakeError as e:
            raise ServeError(f"{url}: refused ({e.status} {e.message})") from None
        except aiohttp.ClientError as e:
            raise ServeError(f"{url}: cannot connect ({e})") from None
        async with ws:
            await ws.send_str(json.dumps(start))

            async def messages():
                yield _message(await ws.receive(), url)
                async for msg in ws:
                    yield _message(msg, url)

            async def end():
                await ws.send_str(json.dumps({"type": "end"}))

            return await _session(url, messages(), audio, ws.send_bytes, end, on_frame, read)


def _message(msg, url: str) -> dict:
    import aiohttp

    if msg.type != aiohttp.WSMsgType.TEXT:
        extra = f" ({msg.extra})" if getattr(msg, "extra", None) else ""
        raise ServeError(f"{url}: the connection closed{extra}")
    m = json.loads(msg.data)
    if m.get("type") == "error":
        raise ServeError(f"server: {m.get('error')}")
    return m


async def _grpc(url, token, start, audio, on_frame, read) -> StreamResult:
    """The same protocol over gRPC (audio2anim/formats/proto/audio2anim.proto)."""
    try:
        import grpc

        from audio2anim.formats.proto import ACCEPTED
        from audio2anim.formats.proto import audio2anim_pb2 as pb
        from audio2anim.formats.proto import audio2anim_pb2_grpc as pb_grpc
    except ImportError as e:
        raise ServeError(f"{url}: gRPC needs grpcio: pip install 'audio2anim[serve]' ({e})") from None

    target = url.removeprefix("grpc://").split("/", 1)[0]
    request = pb.StreamRequest
    async with grpc.aio.insecure_channel(target) as channel:
        call = pb_grpc.AnimationServiceStub(channel).Stream(
            metadata=(("authorization", f"Bearer {token}"),)
        )
        try:
            # a refused call (token, full) ends before it is taken: learn its status without
            # writing (a write to an ended call fails with a status of its own)
            if ACCEPTED not in tuple(await call.initial_metadata() or ()):
                raise await _grpc_error(call, url)
            opening = {k: v for k, v in start.items() if k != "type"}
            await call.write(request(start=request.Start(**opening)))

            async def messages():
                async for r in call:
                    yield _grpc_message(r)

            async def write(data: bytes) -> None:
                await call.write(request(audio=data))

            async def end() -> None:
                await call.write(request(end=request.End()))
                await call.done_writing()

            result = await _session(url, messages(), audio, write, end, on_frame, read)
            if read:
                await call.code()  # the server has closed the session
            return result
        except grpc.aio.AioRpcError:
            raise await _grpc_error(call, url) from None
        finally:
            call.cancel()


async def _grpc_error(call, url: str) -> ServeError:
    """The `ServeError` of a call that ended with a status other than OK."""
    import grpc

    code, details = await call.code(), await call.details()
    if code == grpc.StatusCode.UNAUTHENTICATED:
        return ServeError(f"{url}: refused ({code.name}: {details})")
    if code == grpc.StatusCode.UNAVAILABLE:
        return ServeError(f"{url}: cannot connect ({details})")
    return ServeError(f"server: {details}")


def _grpc_message(r) -> dict:
    """A ``StreamResponse`` → the WebSocket protocol's dict (field for field)."""
    kind = r.WhichOneof("kind")
    body = getattr(r, kind)
    m = {}
    for f in body.DESCRIPTOR.fields:
        if f.has_presence and not body.HasField(f.name):
            m[f.name] = None
        else:
            value = getattr(body, f.name)
            m[f.name] = list(value) if f.is_repeated else value
    if kind == "error":
        raise ServeError(f"server: {m['message']}")
    return m if kind == "frame" else {"type": kind, **m}


def stream_file(
    url: str, token: str, path: str | os.PathLike, *, realtime: bool = True, **kw
) -> StreamResult:
    """`stream` the audio file ``path`` (any libsndfile format, at its own rate)."""
    import soundfile as sf

    samples, rate = sf.read(str(path), dtype="float32", always_2d=True)
    return asyncio.run(stream(url, token, samples.mean(axis=1), rate, realtime=realtime, **kw))


__all__ = ["ServeError", "StreamResult", "stream", "stream_file"]
