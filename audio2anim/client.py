"""A client of ``audio2anim serve``: stream audio, get the animation back (no torch, no models).

    from audio2anim.client import stream, stream_file

    result = stream_file("ws://127.0.0.1:8770/v1/stream", token, "line01.wav")
    result.animation()                     # an `audio2anim.formats.animation.Animation`

    result = await stream(url, token, samples, rate=44100, realtime=False)   # in an event loop

The protocol (docs/serve.md): a JSON start message, binary chunks of 16-bit PCM (``s16le``,
the default) or float32 (``f32le``), ``{"type": "end"}``; the server answers with a header
(parameter names, frame rate), one JSON frame per 1/fps seconds of audio as soon as it is
made, then an end message (or one error message). ``realtime`` paces the chunks like a live
microphone (the default); without it they go as fast as the connection takes them.

`StreamResult` keeps, per frame, its media time, weights and viseme posteriors, and the
monotonic clock when it arrived and the media end of the newest chunk it used (the frame's
``audio_end``); ``sent`` holds ``(media end of chunk, monotonic send time)`` per chunk, so
`StreamResult.latencies` measures each frame's latency from the send of that chunk. Errors from the server raise
`ServeError` with its one-line message. Needs aiohttp (the ``live`` extra).
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
    """Stream mono ``samples`` (float, [-1, 1]) at ``rate`` Hz to the server at ``url`` →
    `StreamResult`. ``on_frame(frame)`` is called for each frame as it arrives; ``read=False``
    never reads the frames (a stalled client, for tests and benches)."""
    import aiohttp

    samples = np.asarray(samples, np.float32)
    if samples.ndim == 2:
        samples = samples.mean(axis=1)
    block = max(1, round(rate * chunk_ms / 1000))
    sep = "&" if "?" in url else "?"
    start = {"type": "start", "rate": int(rate), "format": fmt}
    if graph is not None:
        start["graph"] = graph
    async with aiohttp.ClientSession() as http:
        try:
            ws = await http.ws_connect(f"{url}{sep}token={token}", max_msg_size=0)
        except aiohttp.WSServerHandshakeError as e:
            raise ServeError(f"{url}: refused ({e.status} {e.message})") from None
        except aiohttp.ClientError as e:
            raise ServeError(f"{url}: cannot connect ({e})") from None
        async with ws:
            await ws.send_str(json.dumps(start))
            first = await ws.receive()
            header = _message(first, url)
            if header.get("type") != "header":
                raise ServeError(f"{url}: expected the header, got {header.get('type')!r}")
            result = StreamResult(header)
            sender = asyncio.ensure_future(_send(ws, samples, rate, fmt, block, realtime, result))
            if not read:
                await sender
                return result
            try:
                async for msg in ws:
                    m = _message(msg, url)
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


async def _send(ws, samples, rate, fmt, block, realtime, result) -> None:
    t0 = time.monotonic()
    for end, data in _chunks(samples, fmt, block):
        if realtime:
            delay = t0 + end / rate - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
        await ws.send_bytes(data)
        result.sent.append((end / rate, time.monotonic()))
    await ws.send_str(json.dumps({"type": "end"}))


def _message(msg, url: str) -> dict:
    import aiohttp

    if msg.type != aiohttp.WSMsgType.TEXT:
        extra = f" ({msg.extra})" if getattr(msg, "extra", None) else ""
        raise ServeError(f"{url}: the connection closed{extra}")
    m = json.loads(msg.data)
    if m.get("type") == "error":
        raise ServeError(f"server: {m.get('error')}")
    return m


def stream_file(
    url: str, token: str, path: str | os.PathLike, *, realtime: bool = True, **kw
) -> StreamResult:
    """`stream` the audio file ``path`` (any libsndfile format, at its own rate)."""
    import soundfile as sf

    samples, rate = sf.read(str(path), dtype="float32", always_2d=True)
    return asyncio.run(stream(url, token, samples.mean(axis=1), rate, realtime=realtime, **kw))


__all__ = ["ServeError", "StreamResult", "stream", "stream_file"]
