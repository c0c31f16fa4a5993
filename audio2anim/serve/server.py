"""The streaming service: many concurrent sessions, each one instance of a method graph.

A session is one client's WebSocket (protocol: docs/serve.md). Its graph is the method graph
(default ``graphs/viseme_cnn.yaml``) as `audio2anim.animate.graph_edit.offline_graph` edits it
for an offline run — live sinks dropped, every queue ``block`` — with ``source.session`` in the
``src`` node and ``sink.session`` fed by ``smooth`` (and the viseme stream). The validated graph
is built once per graph file; a session swaps those two nodes for its own (as
`audio2anim.animate.api.Animator` swaps its source), so the operators are fresh per session —
their streaming state is the session's — while the models behind them are opened once per
process (the ONNX sessions are cached in `audio2anim.models.predictor_stream.cached_onnx_model`,
keyed by checkpoint; the first session of a graph, or `Server.start`'s warm-up for the default
one, pays for loading).

Flow control, per session:
- in: the socket reader decodes each binary chunk and puts it in a bounded inbox that the source
  reads. Nothing is dropped inside a session: when its graph falls behind, the reader waits, the
  socket is not read, and TCP slows the client down.
- out: the sink hands each frame to the session's outbound queue (``queue`` frames) without
  waiting; a writer task sends the queue to the socket. When the client reads slower than the
  frames come, the oldest queued frame is dropped and counted; the other sessions never wait for
  it. The end message is never dropped.

Access is the viewer's (`audio2anim.graph.netguard`): a random token per run (``?token=``), the
``Host`` header must name this server, a socket with an ``Origin`` must come from this server's
own origin; refusals are HTTP 403 before the upgrade. Binding beyond loopback prints a warning.
A full server (``max_sessions``) accepts the socket, sends one error message and closes it with
code 1013 (try again later), so the client learns why.

Batching (``batch_window_ms`` > 0): the operators with a ``batching`` param (the ONNX viseme
front end and predictors, the live Whisper encoder) get the session's
`audio2anim.serve.batching.SessionBatching`, so their model calls are stacked with the other
sessions' (``device``: where the batched torch models run). The session's slots are freed as
soon as its client disconnects, and in any case when its graph has ended.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import dataclasses
import itertools
import json
import re
import secrets
import socket
import sys
import time
from pathlib import Path
from typing import Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from audio2anim.graph.metrics import GraphMetrics, ServeMetrics
from audio2anim.graph.netguard import host_allowed, listen, origin_allowed, token_ok
from audio2anim.visemes import VISEMES

DEFAULT_GRAPH = "graphs/viseme_cnn.yaml"
SINK = "client"  # the sink.session node
START_TIMEOUT_S = 10.0  # a socket that sends no start message by then is closed
END_GRACE_S = 5.0  # after the last frame: how long a client may take to read what is queued
SEND_BUFFER = 65536  # bytes of kernel send buffer per socket (about 2 s of frames)
INBOX_CHUNKS = 16  # chunks waiting for the graph before the reader stops reading the socket
GRAPH_NAME = re.compile(r"^[a-z0-9_]{1,64}$")


class StartMessage(BaseModel):
    """The client's first message."""

    model_config = ConfigDict(extra="forbid")
    type: Literal["start"] = "start"
    rate: int = Field(ge=1000, le=384_000, description="sample rate of the audio chunks in Hz")
    format: Literal["s16le", "f32le"] = Field(description="sample format of the chunks (mono)")
    graph: str | None = Field(None, description="a shipped graph's name, e.g. viseme_mlp")


class SessionError(Exception):
    """A client error: its one-line message is sent to the client, then the socket closes."""


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


@dataclasses.dataclass
class MethodGraph:
    """A validated session graph and what its header says."""

    file: str
    graph: Any  # audio2anim.graph.spec.Graph
    names: tuple[str, ...] = ()
    fps: float = 50.0
    has_visemes: bool = False
    algorithmic_ms: float = 0.0


def method_graph(graph_file: str | Path, overrides: tuple[str, ...] = ()) -> MethodGraph:
    """``graph_file`` edited for sessions (see the module docstring); `GraphError` if unfit."""
    from audio2anim.animate.graph_edit import offline_graph
    from audio2anim.sources.file import SHIPPED_SPEECH
    from audio2anim.streams import Visemes

    inputs = [("smooth", "in"), (Visemes, "visemes")]
    graph = offline_graph(
        graph_file, SHIPPED_SPEECH, {SINK: ("sink.session", {}, inputs)}, overrides=overrides
    )
    has_visemes = any(e.dst_port == "visemes" for e in graph.in_edges(SINK))
    return MethodGraph(str(graph_file), graph, has_visemes=has_visemes)


class Session:
    """One client's stream: its graph run, inbox, outbound queue and writer."""

    def __init__(self, server: Server, ws, sid: str, method: MethodGraph, start: StartMessage):
        self.server, self.ws, self.sid, self.method, self.start = server, ws, sid, method, start
        self.inbox: asyncio.Queue = asyncio.Queue(INBOX_CHUNKS)
        self.out: list = []  # frames (and finally the end message) waiting for the socket
        self.ready = asyncio.Event()
        self.sent = self.dropped = 0
        self.graph_runner = None
        self.batching = None  # its SessionBatching, when the server batches
        self.samples = 0  # received so far
        # (arrival time, media end in s) per chunk not yet behind the frames sent
        self.chunks: collections.deque[tuple[float, float]] = collections.deque()
        self.graph_label = method.graph.name
        m = server.metrics
        self._frames = m.frames.labels(self.graph_label, sid)
        self._drops = m.dropped.labels(self.graph_label, "client", sid)
        self._e2e = m.e2e.labels(self.graph_label, "client", sid)

    def runner(self):
        from audio2anim.graph.runner import Runner
        from audio2anim.graph.spec import Node
        from audio2anim.sinks.session import SessionSink, SessionSinkParams
        from audio2anim.sources.session import SessionSource, SessionSourceParams

        g = self.method.graph
        nodes = dict(g.nodes)
        nodes["src"] = Node(
            "src", SessionSource, SessionSourceParams(inbox=self.inbox, rate=self.start.rate)
        )
        nodes[SINK] = Node(SINK, SessionSink, SessionSinkParams(deliver=self.frame))
        self.batching = self.server.batched(nodes)
        graph = dataclasses.replace(g, nodes=nodes, name=f"{g.name}/{self.sid}")
        # a private metrics registry per run: the session's series go with it (no growth
        # with every session served); the service's own series are in `ServeMetrics`
        return Runner(graph, GraphMetrics())

    def release(self) -> None:
        """Free the session's batch slots (no batch waits for it any more)."""
        if self.batching is not None:
            self.batching.close()

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

    async def write(self) -> None:
        """Send the outbound queue until the end (or error) message has gone."""
        ws = self.ws
        while True:
            while not self.out:
                self.ready.clear()
                await self.ready.wait()
            item = self.out.pop(0)
            if isinstance(item, dict):
                if item.get("type") == "end":
                    item["frames"], item["dropped"] = self.sent, self.dropped
                await ws.send_str(json.dumps(item))
                return
            msg = {"t": round(item.t, 6), "values": np.round(item.values, 5).tolist()}
            msg["visemes"] = [] if item.visemes is None else np.round(item.visemes, 5).tolist()
            msg["audio_end"] = self._audio_end(item.capture)
            await ws.send_str(json.dumps(msg))
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

    async def read(self) -> bool:
        """Feed the socket's chunks to the graph → True after the client's end message, False
        when the socket went away first. A malformed message raises `SessionError`."""
        from aiohttp import WSMsgType

        limit = self.server.max_chunk
        async for msg in self.ws:
            if msg.type == WSMsgType.BINARY:
                if len(msg.data) > limit:
                    raise SessionError(
                        f"audio chunk of {len(msg.data)} bytes exceeds the limit of {limit} bytes"
                    )
                x = decode_chunk(msg.data, self.start.format)
                if len(x):
                    now = time.monotonic()
                    self.samples += len(x)
                    self.chunks.append((now, self.samples / self.start.rate))
                    await self.inbox.put((x, now))
            elif msg.type == WSMsgType.TEXT:
                try:
                    kind = json.loads(msg.data).get("type")
                except (ValueError, AttributeError):
                    kind = None
                if kind != "end":
                    raise SessionError('after start, send binary audio chunks then {"type": "end"}')
                return True
            else:  # close or error
                return False
        return False


class Server:
    """The aiohttp application; ``await start()`` listens, ``await stop()`` ends every session."""

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 8770,
        *,
        graph: str | Path = DEFAULT_GRAPH,
        overrides: tuple[str, ...] = (),
        token: str | None = None,
        hosts: tuple[str, ...] = (),
        max_sessions: int = 32,
        max_chunk: int = 65536,
        queue: int = 50,
        batch_window_ms: float = 0.0,
        device: str = "cpu",
        metrics: ServeMetrics | None = None,
        log=None,
    ) -> None:
        self.host, self.port = host, port
        self.graph_file, self.overrides = str(graph), tuple(overrides)
        self.token = token or secrets.token_urlsafe(24)
        self.hosts = tuple(hosts)
        self.max_sessions, self.max_chunk, self.queue = max_sessions, max_chunk, queue
        self.metrics = metrics or ServeMetrics()
        self.batching = None
        if batch_window_ms > 0:
            from .batching import BatchingService

            self.batching = BatchingService(batch_window_ms, device, self.metrics)
        self.log = log or (lambda line: print(line, file=sys.stderr, flush=True))
        self.graphs: dict[str, MethodGraph] = {}
        self._graph_locks: dict[str, asyncio.Lock] = {}
        self.sessions: dict[str, Session] = {}
        self.admitted = 0  # sockets holding a slot (start message pending, or streaming)
        self.ended = {"done": 0, "disconnected": 0, "error": 0, "stopped": 0}
        self.stopping = False
        self.refused = 0
        self._ids = itertools.count(1)
        self._runner = None
        self._tasks: set[asyncio.Task] = set()
        self.url = ""

    # -- life cycle -------------------------------------------------------------------------

    async def start(self) -> str:
        """Load and warm up the default graph, listen; returns ``ws://…/v1/stream?token=…``."""
        from aiohttp import web

        await self.method(None)

        @web.middleware
        async def check_host(request, handler):
            if not host_allowed(request.headers.get("Host"), self.host, self.port, self.hosts):
                return self._refuse("host", "the Host header does not name this server")
            return await handler(request)

        app = web.Application(middlewares=[check_host])
        app.router.add_get("/v1/stream", self._socket)
        self._runner, self.port, warning = await listen(
            app, "audio2anim serve", self.host, self.port, handle_signals=False
        )
        if warning:
            self.log(warning)
        self.url = f"ws://{self.host}:{self.port}/v1/stream?token={self.token}"
        return self.url

    async def stop(self, grace: float = 5.0) -> None:
        """Stop every session (their graphs drain and close), then the listener."""
        self.stopping = True
        for s in list(self.sessions.values()):
            if s.graph_runner is not None:
                s.graph_runner.stop("stop")
        if self._tasks:
            await asyncio.wait(self._tasks, timeout=grace)
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
        if self.batching is not None:
            self.batching.close()

    def batched(self, nodes: dict) -> Any:
        """Hand a session's ``batching`` to the nodes that take it (in place) → the session's
        `SessionBatching`, or None when the server does not batch."""
        if self.batching is None:
            return None
        access = self.batching.session()
        for name, node in nodes.items():
            if "batching" in node.op_class.Params.model_fields:
                params = node.params.model_copy(update={"batching": access})
                nodes[name] = dataclasses.replace(node, params=params)
        return access

    async def method(self, name: str | None) -> MethodGraph:
        """The session graph of a shipped graph ``name`` (None: the server's), built and warmed
        up on first use."""
        key = self.graph_file if name is None else f"graphs/{name}.yaml"
        if key in self.graphs:
            return self.graphs[key]
        lock = self._graph_locks.setdefault(key, asyncio.Lock())
        async with lock:
            if key not in self.graphs:
                m = method_graph(key, self.overrides if name is None else ())
                await self._warm_up(m)
                self.graphs[key] = m
        return self.graphs[key]

    async def _warm_up(self, m: MethodGraph) -> None:
        """Run the graph once on half a second of silence: loads the models into the process
        cache and learns the header (parameter names, frame rate, algorithmic latency)."""
        from audio2anim.graph.runner import Runner
        from audio2anim.graph.spec import Node
        from audio2anim.sinks.session import SessionSink, SessionSinkParams
        from audio2anim.sources.session import SessionSource, SessionSourceParams

        inbox: asyncio.Queue = asyncio.Queue()
        inbox.put_nowait((np.zeros(8000, np.float32), time.monotonic()))
        inbox.put_nowait(None)
        frames = []
        nodes = dict(m.graph.nodes)
        nodes["src"] = Node("src", SessionSource, SessionSourceParams(inbox=inbox, rate=16000))
        nodes[SINK] = Node(SINK, SessionSink, SessionSinkParams(deliver=frames.append))
        access = self.batched(nodes)  # also opens the model batchers
        try:
            report = await Runner(dataclasses.replace(m.graph, nodes=nodes), GraphMetrics()).run()
        finally:
            if access is not None:
                access.close()
        if not frames:
            raise RuntimeError(f"{m.file}: the graph produced no frames from 0.5 s of silence")
        m.names, m.fps = frames[0].names, frames[0].fps
        m.algorithmic_ms = float(report.sinks[SINK]["algorithmic_latency_ms"])

    # -- requests ---------------------------------------------------------------------------

    def _refuse(self, reason: str, why: str):
        from aiohttp import web

        self.refused += 1
        self.metrics.refused.labels(reason).inc()
        return web.Response(status=403, text=f"forbidden: {why}\n")

    async def _socket(self, request):
        from aiohttp import web

        if not token_ok(request.query.get("token"), self.token):
            return self._refuse("token", "missing or wrong token")
        if not origin_allowed(request.headers.get("Origin"), request.host):
            return self._refuse("origin", "the Origin is not this server's")
        # aiohttp's own size check closes without a reason: leave room for ours
        ws = web.WebSocketResponse(
            heartbeat=20, max_msg_size=2 * self.max_chunk + 65536, compress=False, timeout=2.0
        )
        await ws.prepare(request)
        sock = request.transport.get_extra_info("socket") if request.transport else None
        if sock is not None:
            # a small kernel buffer: a client that stops reading fills the session's own
            # queue (frames dropped and counted) instead of megabytes of kernel memory
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, SEND_BUFFER)
        if self.admitted >= self.max_sessions:
            self.refused += 1
            self.metrics.refused.labels("full").inc()
            await _error(ws, f"too many sessions: {self.max_sessions} of {self.max_sessions} "
                             "are active; try again later", code=1013)  # fmt: skip
            return ws
        self.admitted += 1
        task = asyncio.current_task()
        self._tasks.add(task)
        try:
            await self._session(ws)
        finally:
            self.admitted -= 1
            self._tasks.discard(task)
        return ws

    async def _session(self, ws) -> None:
        from aiohttp import WSMsgType

        from audio2anim.graph.errors import GraphError, OperatorError

        try:
            msg = await asyncio.wait_for(ws.receive(), START_TIMEOUT_S)
        except TimeoutError:
            await _error(ws, f"no start message within {START_TIMEOUT_S:g} s")
            return
        if msg.type != WSMsgType.TEXT:
            if msg.type in (WSMsgType.BINARY,):
                await _error(ws, 'the first message must be the JSON start message, e.g. '
                                 '{"rate": 16000, "format": "s16le"}')  # fmt: skip
            return
        try:
            start = StartMessage.model_validate_json(msg.data)
            if start.graph is not None and not GRAPH_NAME.match(start.graph):
                raise SessionError(f"graph {start.graph!r}: give a shipped graph's name")
            method = await self.method(start.graph)
        except ValidationError as e:
            await _error(ws, f"bad start message: {_first_error(e)}")
            return
        except SessionError as e:
            await _error(ws, str(e))
            return
        except (GraphError, OperatorError, RuntimeError, OSError) as e:
            # a graph that cannot be built or warmed up (a missing model, an optional
            # dependency): this session's error, not the server's
            await _error(ws, f"graph {start.graph!r}: {str(e).splitlines()[0]}")
            return

        sid = f"s{next(self._ids)}"
        session = Session(self, ws, sid, method, start)
        self.sessions[sid] = session
        label = method.graph.name
        self.metrics.active.labels(label).inc()
        runner = session.runner()
        header = {
            "type": "header", "session": sid, "graph": method.file, "names": list(method.names),
            "fps": method.fps, "visemes": list(VISEMES) if method.has_visemes else [],
            "algorithmic_latency_ms": round(method.algorithmic_ms, 3),
        }  # fmt: skip
        await ws.send_str(json.dumps(header))
        session.graph_runner = runner
        run = asyncio.ensure_future(runner.run())
        writer = asyncio.ensure_future(session.write())
        reader = asyncio.ensure_future(session.read())
        end, error = "disconnected", None
        # the graph ends before the reader only when it failed or the server stops
        await asyncio.wait({reader, run}, return_when=asyncio.FIRST_COMPLETED)
        if not reader.done():
            reader.cancel()
            with contextlib.suppress(BaseException):
                await reader
            if self.stopping:
                end = "stopped"
        else:
            try:
                if reader.result():
                    end = "done"
            except SessionError as e:
                end, error = "error", str(e)
            except (ConnectionError, RuntimeError, asyncio.CancelledError):
                pass
        if end == "done":
            # the end of the stream, after every chunk: waits while the graph catches up,
            # unless the graph ends first (it failed)
            last = asyncio.ensure_future(session.inbox.put(None))
            await asyncio.wait({last, run}, return_when=asyncio.FIRST_COMPLETED)
            last.cancel()
        elif end != "stopped":
            session.release()  # at once: no batch waits for this session
            runner.stop(end)  # the source is cancelled: the inbox may stay full
        try:
            await run
        except OperatorError as e:
            end, error = "error", str(e).splitlines()[0]
        session.release()
        if error is not None:
            session.out.clear()
            session.finish({"type": "error", "error": error})
        else:
            session.finish({"type": "end"})
        try:
            if end == "disconnected":
                writer.cancel()
            await asyncio.wait_for(writer, END_GRACE_S)
        except (TimeoutError, asyncio.CancelledError, ConnectionError, RuntimeError):
            writer.cancel()
        with contextlib.suppress(Exception):
            await ws.close(code=1000 if error is None else 1008)
        del self.sessions[sid]
        self.ended[end] += 1
        self.metrics.active.labels(label).dec()
        self.metrics.sessions.labels(label, end).inc()
        self.metrics.forget(label, sid)


async def _error(ws, message: str, code: int = 1008) -> None:
    """Send one error line and close the socket."""
    with contextlib.suppress(Exception):
        await ws.send_str(json.dumps({"type": "error", "error": message}))
        await ws.close(code=code, message=message[:120].encode())


def _first_error(e: ValidationError) -> str:
    first = e.errors()[0]
    where = ".".join(str(x) for x in first.get("loc", ())) or "message"
    msg = str(first.get("msg", e)).removeprefix("Value error, ")
    return f"{where}: {msg}" if where != "message" else msg
