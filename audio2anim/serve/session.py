"""A session of the streaming service, whatever carries it (WebSocket, gRPC, another front end).

The transport decodes its own framing and hands the core plain values: the start message as
a `StartMessage` (`start_message` validates a JSON text or a dict, with the one-line errors
every transport reports), the audio as an async iterator of ``bytes`` chunks (in the start's
format) that yields ``None`` for the client's end message, and an async ``send(message)`` for
what goes back: plain dicts, the WebSocket protocol's JSON objects (docs/serve.md) —
``{"type": "header", …}``, frames ``{"t", "values", "visemes", "audio_end"}``, then
``{"type": "end", "frames", "dropped"}`` or ``{"type": "error", "error"}``. `Session.run`
does the rest: the graph run, the bounded inbox (backpressure: a session whose graph falls
behind stops pulling chunks from its transport), the outbound queue that drops its oldest frame
for a client that reads too slowly (never the end or error message), each frame's
``audio_end`` and the per-session metrics. Nothing here imports aiohttp or grpc.

Its host (`audio2anim.serve.server.Server`) gives the limits (``queue``, ``max_chunk``), the
``metrics`` (`ServeMetrics`) and ``stopping``; it admits, opens and closes sessions.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import dataclasses
import json
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from audio2anim.graph.metrics import GraphMetrics
from audio2anim.visemes import VISEMES

SINK = "client"  # the sink.session node
START_TIMEOUT_S = 10.0  # a client that sends no start message by then is told so and closed
END_GRACE_S = 5.0  # after the last frame: how long a client may take to read what is queued
INBOX_CHUNKS = 16  # chunks waiting for the graph before the session stops taking more

Send = Callable[[dict], Awaitable[None]]


class StartMessage(BaseModel):
    """The client's first message."""

    model_config = ConfigDict(extra="forbid")
    type: Literal["start"] = "start"
    rate: int = Field(ge=1000, le=384_000, description="sample rate of the audio chunks in Hz")
    format: Literal["s16le", "f32le"] = Field(description="sample format of the chunks (mono)")
    graph: str | None = Field(None, description="a shipped graph's name, e.g. viseme_mlp")


class SessionError(Exception):
    """A client error: its one-line message goes to the client, then the stream ends."""


class ServerFull(SessionError):
    """Every session slot is taken (``max_sessions``): the client may try again later."""


def start_message(data: str | bytes | dict) -> StartMessage:
    """A start message from JSON text or a dict → `StartMessage`; `SessionError` if bad."""
    try:
        if isinstance(data, dict):
            return StartMessage.model_validate(data)
        return StartMessage.model_validate_json(data)
    except ValidationError as e:
        first = e.errors()[0]
        where = ".".join(str(x) for x in first.get("loc", ())) or "message"
        msg = str(first.get("msg", e)).removeprefix("Value error, ")
        raise SessionError(
            f"bad start message: {where}: {msg}" if where != "message" else f"bad start message: {msg}"
        ) from None


def end_message(data: str | bytes) -> None:
    """A client's text message after the start: the end message, else `SessionError`."""
    try:
        kind = json.loads(data).get("type")
    except (ValueError, AttributeError):
        kind = None
    if kind != "end":
        raise SessionError('after start, send binary audio chunks then {"type": "end"}')


def decode_chunk(data: bytes, fmt: str) -> np.ndarray:
    """A binary chunk → float32 mono samples in [-1, 1]; `SessionError` when malformed."""
    width = 2 if fmt == "s16le" else 4
    if len(data) % width:
        raise SessionError(
            f"audio chunk of {len(data)} bytes is not a whole number of {fmt} samples"
        )
    if fmt == "s16le":
        return np.frombuffer(data, "<i2").astype(np.float32) / 32768.0
    x = np.frombuffer(data, "<f4").astype(np.float32)
    if not np.isfinite(x).all():
        raise SessionError("audio chunk holds non-finite f32le samples")
    return x


def session_graph(graph, inbox: asyncio.Queue, rate: int, deliver, name: str | None = None):
    """``graph`` (a session graph) with ``source.session`` reading ``inbox`` in node ``src`` and
    ``sink.session`` calling ``deliver`` per frame in node `SINK`."""
    from audio2anim.graph.spec import Node
    from audio2anim.sinks.session import SessionSink, SessionSinkParams
    from audio2anim.sources.session import SessionSource, SessionSourceParams

    nodes = dict(graph.nodes)
    nodes["src"] = Node("src", SessionSource, SessionSourceParams(inbox=inbox, rate=rate))
    nodes[SINK] = Node(SINK, SessionSink, SessionSinkParams(deliver=deliver))
    return dataclasses.replace(graph, nodes=nodes, name=name or graph.name)


class Session:
    """One client's stream: its graph run, inbox, outbound queue and writer (`run`)."""

    def __init__(self, server: Any, sid: str, method: Any, start: StartMessage):
        self.server, self.sid, self.method, self.start = server, sid, method, start
        self.inbox: asyncio.Queue = asyncio.Queue(INBOX_CHUNKS)
        self.out: list = []  # frames (and finally the end message) waiting for the client
        self.ready = asyncio.Event()
        self.sent = self.dropped = 0
        self.graph_runner = None
        self.batching = None  # its SessionBatching, when the server batches
        self.samples = 0  # received so far
        # (arrival time, media end in s) per chunk not yet behind the frames sent
        self.chunks: collections.deque[tuple[float, float]] = collections.deque()
        # how it ended: done, disconnected, error (``error``: the line; ``fault``: whose,
        # "client" or "graph"), stopped
        self.end, self.error, self.fault = "disconnected", None, None
        self.graph_label = method.graph.name
        m = server.metrics
        self._frames = m.frames.labels(self.graph_label, sid)
        self._drops = m.dropped.labels(self.graph_label, "client", sid)
        self._e2e = m.e2e.labels(self.graph_label, "client", sid)
        m.queue_depth.labels(self.graph_label, "inbox", sid).set_function(self.inbox.qsize)
        m.queue_depth.labels(self.graph_label, "client", sid).set_function(self.out.__len__)

    def runner(self):
        from audio2anim.graph.runner import Runner

        g = self.method.graph
        graph = session_graph(g, self.inbox, self.start.rate, self.frame, f"{g.name}/{self.sid}")
        graph, self.batching = self.server.batched(graph, self.method)
        # a private metrics registry per run: the session's series go with it (no growth
        # with every session served); the service's own series are in `ServeMetrics`
        return Runner(graph, GraphMetrics())

    def release(self) -> None:
        """Free the session's batch slots (no batch waits for it any more)."""
        if self.batching is not None:
            self.batching.close()

    def header(self) -> dict:
        m = self.method
        return {
            "type": "header", "session": self.sid, "graph": m.file, "names": list(m.names),
            "fps": m.fps, "visemes": list(VISEMES) if m.has_visemes else [],
            "algorithmic_latency_ms": round(m.algorithmic_ms, 3),
        }  # fmt: skip

    # -- outbound ---------------------------------------------------------------------------

    def frame(self, f) -> None:
        """`sink.session`'s ``deliver``: queue a frame without waiting (drop the oldest)."""
        if len(self.out) >= self.server.queue:
            self.out.pop(0)
            self.dropped += 1
            self._drops.inc()
        self.out.append(f)
        self.ready.set()

    def finish(self, message: dict) -> None:
        self.out.append(message)  # never dropped
        self.ready.set()

    async def write(self, send: Send) -> None:
        """Send the outbound queue until the end (or error) message has gone."""
        while True:
            while not self.out:
                self.ready.clear()
                await self.ready.wait()
            item = self.out.pop(0)
            if isinstance(item, dict):
                if item.get("type") == "end":
                    item["frames"], item["dropped"] = self.sent, self.dropped
                await send(item)
                return
            msg = {"t": round(item.t, 6), "values": np.round(item.values, 5).tolist()}
            msg["visemes"] = [] if item.visemes is None else np.round(item.visemes, 5).tolist()
            msg["audio_end"] = self._audio_end(item.capture)
            await send(msg)
            self.sent += 1
            self._frames.inc()
            if item.capture == item.capture:
                self._e2e.observe(time.monotonic() - item.capture)

    def _audio_end(self, capture: float) -> float | None:
        """The media end of the chunk that arrived at ``capture`` (the newest the frame used)."""
        chunks = self.chunks
        while len(chunks) > 1 and chunks[1][0] <= capture:
            chunks.popleft()
        if chunks and chunks[0][0] == capture:
            return round(chunks[0][1], 6)
        return None

    # -- inbound ----------------------------------------------------------------------------

    async def feed(self, data: bytes) -> None:
        """One audio chunk from the client: checked, decoded and queued for the graph (waits
        while the inbox is full). A malformed chunk raises `SessionError`."""
        limit = self.server.max_chunk
        if len(data) > limit:
            raise SessionError(
                f"audio chunk of {len(data)} bytes exceeds the limit of {limit} bytes"
            )
        x = decode_chunk(data, self.start.format)
        if len(x):
            now = time.monotonic()
            self.samples += len(x)
            self.chunks.append((now, self.samples / self.start.rate))
            await self.inbox.put((x, now))

    async def read(self, incoming: AsyncIterator[bytes | None]) -> bool:
        """Feed ``incoming``'s chunks to the graph → True after the client's end (``None``),
        False when the client went away first."""
        async for data in incoming:
            if data is None:
                return True
            await self.feed(data)
        return False

    # -- the whole stream -------------------------------------------------------------------

    async def run(self, incoming: AsyncIterator[bytes | None], send: Send) -> None:
        """Send the header, run the graph on ``incoming``'s audio and ``send`` its frames, then
        the end or error message; sets ``end``, ``error`` and ``fault``. A cancelled task (the
        transport's client went away) stops the graph and ends ``disconnected``."""
        from audio2anim.graph.errors import OperatorError

        runner = self.graph_runner = self.runner()
        run = writer = reader = None
        settled = False  # the graph has ended and ``end`` says how
        try:
            run = asyncio.ensure_future(runner.run())
            # the header once the graph is set up: a client streams from then on, so its first
            # chunks do not wait in the inbox behind the set-up (this one's, or, when many
            # sessions start at once, the others')
            ready = asyncio.ensure_future(runner.ready.wait())
            await asyncio.wait({ready, run}, return_when=asyncio.FIRST_COMPLETED)
            ready.cancel()
            await send(self.header())
            writer = asyncio.ensure_future(self.write(send))
            reader = asyncio.ensure_future(self.read(incoming))
            end, error = "disconnected", None
            # the graph ends before the reader only when it failed or the server stops
            await asyncio.wait({reader, run}, return_when=asyncio.FIRST_COMPLETED)
            if not reader.done():
                reader.cancel()
                with contextlib.suppress(BaseException):
                    await reader
                if self.server.stopping:
                    end = "stopped"
            else:
                try:
                    if reader.result():
                        end = "done"
                except SessionError as e:
                    end, error, self.fault = "error", str(e), "client"
                except (ConnectionError, RuntimeError, asyncio.CancelledError):
                    pass
            if end == "done":
                # the end of the stream, after every chunk: waits while the graph catches up,
                # unless the graph ends first (it failed)
                last = asyncio.ensure_future(self.inbox.put(None))
                await asyncio.wait({last, run}, return_when=asyncio.FIRST_COMPLETED)
                last.cancel()
            elif end != "stopped":
                self.release()  # at once: no batch waits for this session
                runner.stop(end)  # the source is cancelled: the inbox may stay full
            try:
                await run
            except OperatorError as e:
                end, error, self.fault = "error", str(e).splitlines()[0], "graph"
            self.release()
            self.end, self.error, settled = end, error, True
            if error is not None:
                self.out.clear()
                self.finish({"type": "error", "error": error})
            else:
                self.finish({"type": "end"})
            try:
                if end == "disconnected":
                    writer.cancel()
                await asyncio.wait_for(writer, END_GRACE_S)
            except (TimeoutError, asyncio.CancelledError, ConnectionError, RuntimeError):
                writer.cancel()
        except asyncio.CancelledError:
            if not settled:
                self.end, self.error = "disconnected", None
            raise
        except (ConnectionError, RuntimeError):  # the transport failed under ``send``
            if not settled:
                self.end, self.error = "disconnected", None
        finally:
            for task in (reader, writer):
                if task is not None and not task.done():
                    task.cancel()
            if run is not None and not run.done():
                self.release()
                runner.stop("disconnected")
                with contextlib.suppress(BaseException):
                    await run
            self.release()
