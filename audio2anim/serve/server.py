"""The streaming service: many concurrent sessions, each one instance of a method graph.

A session is one client's stream (protocol: docs/serve.md) over a WebSocket or, with
``grpc_port``, a gRPC bidirectional stream (`audio2anim.serve.grpc_service`); what a session
does is the same for both and lives in `audio2anim.serve.session`. Its graph is the method graph
(default ``graphs/viseme_cnn.yaml``) as `audio2anim.animate.graph_edit.offline_graph` edits it
for an offline run — live sinks dropped, every queue ``block`` — with ``source.session`` in the
``src`` node and ``sink.session`` fed by ``smooth`` (and the viseme stream). The validated graph
is built once per graph file; a session swaps those two nodes for its own (as
`audio2anim.animate.api.Animator` swaps its source), so the operators are fresh per session —
their streaming state is the session's — while the models behind them are opened once per
process (the ONNX sessions are cached in `audio2anim.models.predictor_stream.cached_onnx_model`,
keyed by checkpoint; the first session of a graph, or `Server.start`'s warm-up for the default
one, pays for loading).

`Server` holds what sessions share — the graphs, the slots (`slot`, ``max_sessions``), the
metrics, the counts of how sessions ended — and opens a session for any transport
(`open_session` with a `StartMessage`; then `Session.run` with an async iterator of audio
chunks and an async ``send``); it needs no aiohttp or grpc for that. `start` opens the
transports.

Flow control, per session (`audio2anim.serve.session`):
- in: the transport's reader decodes each chunk and puts it in a bounded inbox that the source
  reads. Nothing is dropped inside a session: when its graph falls behind, the reader waits, the
  socket is not read, and TCP (HTTP/2 flow control, for gRPC) slows the client down.
- out: the sink hands each frame to the session's outbound queue (``queue`` frames) without
  waiting; a writer task sends the queue to the client. When the client reads slower than the
  frames come, the oldest queued frame is dropped and counted; the other sessions never wait for
  it. The end message is never dropped.

WebSocket access is the viewer's (`audio2anim.graph.netguard`): a random token per run
(``?token=``), the ``Host`` header must name this server, a socket with an ``Origin`` must come
from this server's own origin; refusals are HTTP 403 before the upgrade. gRPC takes the same
token in its metadata. Binding beyond loopback prints a warning. A full server
(``max_sessions``) accepts the socket, sends one error message and closes it with code 1013
(try again later), so the client learns why; over gRPC, the error message and
RESOURCE_EXHAUSTED.

Batching (``batch_window_ms`` > 0): the operators with a ``batching`` param (the ONNX viseme
front end and predictors, the live Whisper encoder) get the session's
`audio2anim.serve.batching.SessionBatching` (`batched`), so their model calls are stacked with
the other sessions' (``device``: where the batched torch models run). A session's slots are
freed as soon as its client disconnects, and in any case when its graph has ended.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import itertools
import json
import re
import socket
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import numpy as np

from audio2anim.graph.metrics import GraphMetrics, ServeMetrics
from audio2anim.graph.netguard import host_allowed, listen, new_token, origin_allowed, token_ok

from .session import (
    SINK,
    START_TIMEOUT_S,
    ServerFull,
    Session,
    SessionError,
    StartMessage,
    end_message,
    session_graph,
    start_message,
)

DEFAULT_GRAPH = "graphs/viseme_cnn.yaml"
SEND_BUFFER = 65536  # bytes of kernel send buffer per socket (about 2 s of frames)
GRAPH_NAME = re.compile(r"^[a-z0-9_]{1,64}$")


@dataclasses.dataclass
class MethodGraph:
    """A validated session graph and what its header says."""

    file: str
    graph: Any  # audio2anim.graph.spec.Graph
    names: tuple[str, ...] = ()
    fps: float = 50.0
    has_visemes: bool = False
    algorithmic_ms: float = 0.0


def settle_heap() -> None:
    """Collect, then move every object alive now out of the garbage collector's sight
    (`gc.freeze`): call once a serving process has loaded its models. A full collection walks
    every tracked object, and the loaded models (torch, transformers) make hundreds of
    thousands that never become garbage: 0.2 s per collection on the 2-core CPU, a stall of
    every session of the process (of every worker's, in the model host)."""
    import gc

    gc.collect()
    gc.freeze()


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
        metrics: ServeMetrics | None = None,
        log=None,
        grpc_port: int | None = None,
        batch_window_ms: float = 0.0,
        device: str = "cpu",
        reuse_port: bool = False,
        remote=None,
        warm_batches: int = 0,
        cpu_models: tuple[str, ...] = (),
    ) -> None:
        self.host, self.port, self.grpc_port = host, port, grpc_port
        self.reuse_port = reuse_port  # SO_REUSEPORT: the ports shared by `serve --workers`
        self.graph_file, self.overrides = str(graph), tuple(overrides)
        self.token = token or new_token()
        self.hosts = tuple(hosts)
        self.max_sessions, self.max_chunk, self.queue = max_sessions, max_chunk, queue
        self.metrics = metrics or ServeMetrics()
        self.batching = None
        self.warm_batches = warm_batches  # batch sizes 1 … this run at warm-up (GPU models)
        if batch_window_ms > 0 or remote is not None:
            from .batching import BatchingService

            # ``remote``: the models run elsewhere (`serve --workers`' model host)
            self.batching = BatchingService(
                batch_window_ms, device, self.metrics, remote=remote, cpu_models=cpu_models
            )
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
        self._grpc = None
        self._tasks: set[asyncio.Task] = set()
        self.url = self.grpc_url = ""

    # -- life cycle -------------------------------------------------------------------------

    async def start(self) -> str:
        """Load and warm up the default graph, listen (WebSocket, and gRPC with ``grpc_port``);
        returns ``ws://…/v1/stream?token=…`` (and sets ``grpc_url``, ``grpc://HOST:PORT``)."""
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
            app, "audio2anim serve", self.host, self.port, self.reuse_port, handle_signals=False
        )
        if warning:
            self.log(warning)
        self.url = f"ws://{self.host}:{self.port}/v1/stream?token={self.token}"
        if self.grpc_port is not None:
            try:
                from .grpc_service import listen_grpc
            except ImportError as e:
                await self._runner.cleanup()
                self._runner = None
                raise RuntimeError(
                    f"gRPC needs grpcio and protobuf: pip install 'audio2anim[serve]' ({e})"
                ) from None
            try:
                self._grpc, self.grpc_port, warning = await listen_grpc(
                    self, self.host, self.grpc_port, self.reuse_port
                )
            except OSError:
                await self._runner.cleanup()
                self._runner = None
                raise
            if warning:
                self.log(warning)
            self.grpc_url = f"grpc://{self.host}:{self.grpc_port}"
        return self.url

    async def stop(self, grace: float = 5.0) -> None:
        """Stop every session (their graphs drain and close), then the listener."""
        self.stopping = True
        for s in list(self.sessions.values()):
            if s.graph_runner is not None:
                s.graph_runner.stop("stop")
        if self._tasks:
            await asyncio.wait(self._tasks, timeout=grace)
        if self._grpc is not None:
            await self._grpc.stop(grace)
            self._grpc = None
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
        if self.batching is not None:
            self.batching.close()

    def graph_name(self, m: MethodGraph) -> str | None:
        """How a session names its method graph: None for the server's own, else the shipped
        graph's name (what `method` takes)."""
        return None if m.file == self.graph_file else Path(m.file).stem

    def batched(self, graph, m: MethodGraph):
        """``graph`` (a session graph of method ``m``) with the session's ``batching`` handed to
        the nodes that take it → ``(graph, its SessionBatching)``; ``(graph, None)`` when the
        server does not batch."""
        if self.batching is None:
            return graph, None
        access = self.batching.session(self.graph_name(m))
        nodes = dict(graph.nodes)
        for name, node in nodes.items():
            if "batching" in node.op_class.Params.model_fields:
                params = node.params.model_copy(update={"batching": access})
                nodes[name] = dataclasses.replace(node, params=params)
        return dataclasses.replace(graph, nodes=nodes), access

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
        cache and learns the header (parameter names, frame rate, algorithmic latency); with
        ``warm_batches``, then runs the models it batches here at each batch size up to it."""
        from audio2anim.graph.runner import Runner

        inbox: asyncio.Queue = asyncio.Queue()
        inbox.put_nowait((np.zeros(8000, np.float32), time.monotonic()))
        inbox.put_nowait(None)
        frames = []
        graph, access = self.batched(session_graph(m.graph, inbox, 16000, frames.append), m)
        try:  # batched: also opens the model batchers
            report = await Runner(graph, GraphMetrics()).run()
        finally:
            if access is not None:
                access.close()
        if self.batching is not None and self.warm_batches > 0:
            await asyncio.to_thread(self.batching.warm, self.warm_batches)
        if not frames:
            raise RuntimeError(f"{m.file}: the graph produced no frames from 0.5 s of silence")
        m.names, m.fps = frames[0].names, frames[0].fps
        m.algorithmic_ms = float(report.sinks[SINK]["algorithmic_latency_ms"])

    # -- sessions, whatever their transport ----------------------------------------------------

    def refuse(self, reason: str) -> None:
        """Count a refused connection (``token``, ``origin``, ``host``, ``full``)."""
        self.refused += 1
        self.metrics.refused.labels(reason).inc()

    @contextlib.contextmanager
    def slot(self):
        """Hold one of the ``max_sessions`` slots while the block runs (the client's start
        message pending, then its session); `ServerFull` when none is free. `stop` waits for
        the task that holds it."""
        if self.admitted >= self.max_sessions:
            self.refuse("full")
            raise ServerFull(
                f"too many sessions: {self.max_sessions} of {self.max_sessions} are active; "
                "try again later"
            )
        self.admitted += 1
        task = asyncio.current_task()
        self._tasks.add(task)
        try:
            yield
        finally:
            self.admitted -= 1
            self._tasks.discard(task)

    @contextlib.asynccontextmanager
    async def open_session(self, start: StartMessage):
        """A new session for ``start``, listed in ``sessions`` and the metrics while the block
        runs (the transport runs it: `Session.run`, then closes its stream); raises
        `SessionError`, with nothing sent, for a graph that is not a shipped one's name or
        cannot be built."""
        from audio2anim.graph.errors import GraphError, OperatorError

        if start.graph is not None and not GRAPH_NAME.match(start.graph):
            raise SessionError(f"graph {start.graph!r}: give a shipped graph's name")
        try:
            method = await self.method(start.graph)
        except (GraphError, OperatorError, RuntimeError, OSError) as e:
            # a graph that cannot be built or warmed up (a missing model, an optional
            # dependency): this session's error, not the server's
            raise SessionError(f"graph {start.graph!r}: {str(e).splitlines()[0]}") from None
        sid = f"s{next(self._ids)}"
        session = Session(self, sid, method, start)
        self.sessions[sid] = session
        label = session.graph_label
        self.metrics.active.labels(label).inc()
        try:
            yield session
        finally:
            del self.sessions[sid]
            self.ended[session.end] += 1
            self.metrics.active.labels(label).dec()
            self.metrics.sessions.labels(label, session.end).inc()
            self.metrics.forget(label, sid)

    # -- the WebSocket transport --------------------------------------------------------------

    def _refuse(self, reason: str, why: str):
        from aiohttp import web

        self.refuse(reason)
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
        try:
            with self.slot():
                await self._session(ws)
        except ServerFull as e:
            await _error(ws, str(e), code=1013)  # try again later
        return ws

    async def _session(self, ws) -> None:
        from aiohttp import WSMsgType

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

        async def send(message: dict) -> None:
            await ws.send_str(json.dumps(message))

        try:
            async with self.open_session(start_message(msg.data)) as session:
                await session.run(_chunks(ws), send)
                with contextlib.suppress(Exception):
                    await ws.close(code=1000 if session.error is None else 1008)
        except SessionError as e:  # before the session: nothing sent yet
            await _error(ws, str(e))


async def _chunks(ws) -> AsyncIterator[bytes | None]:
    """A socket's audio for `Session.run`: binary messages, then None for the end message."""
    from aiohttp import WSMsgType

    async for msg in ws:
        if msg.type == WSMsgType.BINARY:
            yield msg.data
        elif msg.type == WSMsgType.TEXT:
            end_message(msg.data)
            yield None
            return
        else:  # close or error
            return


async def _error(ws, message: str, code: int = 1008) -> None:
    """Send one error line and close the socket."""
    with contextlib.suppress(Exception):
        await ws.send_str(json.dumps({"type": "error", "error": message}))
        await ws.close(code=code, message=message[:120].encode())
