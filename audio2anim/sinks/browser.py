"""``sink.browser``: a live 3D face in any browser - parameters, audio, latency and visemes.

The end of a live graph::

    pred -> smooth -> view             (view: sink.browser)
    {from: rs, to: view.audio}         (optional: the page plays it in sync)
    {from: vis, to: view.visemes}      (optional: the page shows the current viseme)

Serves, on ``host:port`` (127.0.0.1 by default; port 0 picks a free one), a page that loads
the rig GLB in three.js (from ``audio2anim/sinks/viewer/node_modules``, installed by
``npm ci`` at setup, never a CDN) and a WebSocket ``/ws`` that streams to every connected
browser: ``params`` (JSON: media time, names, frame rate, rows, end-to-end latency), audio
(binary: float64 media time, uint32 rate, 4 pad bytes, float32 samples) and ``visemes``. The
page plays frames and audio on one media-time timeline a short playout delay behind arrival.

Access: every run makes a random token (`audio2anim.graph.netguard.new_token`; the ``token`` param pins
one for scripts) and prints ``http://127.0.0.1:8765/?token=…``. The page reads the token from
its own URL and passes it on ``/ws?token=…`` and ``/face.glb?token=…``: the socket carries the
audio (on a live run, the microphone) and the GLB may be the user's own avatar. The page,
``viewer.js`` and three.js are served without the token: they are the package's own files,
the same on every install, and hold no run data. Every request is refused (403) unless its
``Host`` names this server (`audio2anim.graph.netguard.host_allowed`: DNS rebinding), and a
socket is refused unless it carries the token and, when it has an ``Origin`` (browsers always
send one), that origin is the server's own. A socket without ``Origin`` comes from a program,
not a web page, and is accepted with the token alone. Refusals are counted (``refused``).
Binding anything but loopback (``host: 0.0.0.0``) prints one warning line.

Each viewer has its own queue of ``queue`` messages, filled without waiting; a writer task per
viewer empties it onto the socket. A viewer whose queue is full (it stopped reading, or reads
slower than the stream) is dropped at once — its connection aborted, a line printed, counted
in ``dropped_viewers`` — so it never delays the graph or the other viewers. The page
reconnects by itself and rejoins the live stream.

Ports: ``in`` `Params`; ``audio`` `Audio` (optional); ``visemes`` `Visemes` (optional).
Params: ``host``, ``port``, ``glb`` (rig to show; default: the packaged face), ``audio``
(send audio to the page), ``token``, ``hosts`` (more names the Host check accepts),
``queue``. Runs on the event loop: sending never waits for a viewer.
Counters (run summary): ``viewers`` (sockets accepted), ``refused``, ``dropped_viewers``.

Example node::

    view: {op: sink.browser, params: {port: 8765}}
"""

from __future__ import annotations

import asyncio
import json
import math
import struct
import sys
from pathlib import Path
from typing import Annotated, ClassVar

import numpy as np
from pydantic import Field

from .. import streams
from ..graph.netguard import host_allowed, listen, new_token, origin_allowed, token_ok
from ..graph.operator import Operator, OperatorParams, Port, existing_file
from ..graph.packets import Packet
from ..graph.registry import register
from ..streams import Audio, Visemes

VIEWER_DIR = Path(__file__).with_name("viewer")
THREE_DIR = VIEWER_DIR / "node_modules" / "three"


class BrowserParams(OperatorParams):
    host: str = Field("127.0.0.1", description="address to serve on (not loopback: a warning)")
    port: int = Field(8765, ge=0, le=65535, description="HTTP/WebSocket port (0 = any free)")
    glb: Annotated[str | None, existing_file("glb")] = Field(
        None, description="rig GLB to show; default: ours"
    )
    audio: bool = Field(True, description="send the audio for the page to play")
    token: str | None = Field(
        None, min_length=16, max_length=128, pattern=r"^[A-Za-z0-9_-]+$",
        description="access token in the URL; default: a new random one per run",
    )  # fmt: skip
    hosts: list[str] = Field(
        default_factory=list,
        description="more host names the Host check accepts (e.g. the machine's LAN name)",
    )
    queue: int = Field(64, ge=2, le=100_000, description="messages queued per viewer")


class _Viewer:
    """One connected socket: its queue and the task that writes the queue to it."""

    def __init__(self, ws, request, size: int) -> None:
        self.ws, self.request = ws, request
        self.queue: asyncio.Queue = asyncio.Queue(size)
        self.task: asyncio.Task | None = None

    def abort(self) -> None:
        if self.task is not None:
            self.task.cancel()
        transport = self.request.transport
        if transport is not None:
            transport.abort()


class ViewerServer:
    """The aiohttp server behind `BrowserSink`; usable on its own (``await start()``)."""

    def __init__(
        self, host: str, port: int, glb: Path, token: str | None = None,
        hosts: tuple[str, ...] = (), queue: int = 64,
    ) -> None:  # fmt: skip
        self.host, self.port, self.glb = host, port, glb
        self.token = token or new_token()
        self.hosts, self.queue_size = tuple(hosts), queue
        self.clients: set[_Viewer] = set()
        self.accepted = self.refused = self.dropped = 0
        self._runner = None
        self.base = self.url = ""

    async def start(self) -> str:
        """Listen; returns the URL to open (with the token)."""
        from aiohttp import web

        if not (THREE_DIR / "build" / "three.module.js").exists():
            raise RuntimeError(
                f"sink.browser: three.js is not installed in {VIEWER_DIR}/node_modules; "
                f"run `npm ci` there (setup.sh does)"
            )
        if not self.glb.exists():
            raise FileNotFoundError(f"sink.browser: glb {self.glb} does not exist")

        def file(path: Path, token: bool = False):
            async def handler(request):
                if token and not self._token_ok(request):
                    return self._refuse("missing or wrong token")
                return web.FileResponse(path)

            return handler

        @web.middleware
        async def check_host(request, handler):
            if not host_allowed(request.headers.get("Host"), self.host, self.port, self.hosts):
                return self._refuse("the Host header does not name this server")
            response = await handler(request)
            response.headers["Referrer-Policy"] = "no-referrer"
            return response

        app = web.Application(middlewares=[check_host])
        app.router.add_get("/", file(VIEWER_DIR / "index.html"))
        app.router.add_get("/viewer.js", file(VIEWER_DIR / "viewer.js"))
        app.router.add_get("/face.glb", file(self.glb, token=True))
        app.router.add_get("/ws", self._socket)
        app.router.add_static("/three/", THREE_DIR)
        self._runner, self.port, warning = await listen(app, "sink.browser", self.host, self.port)
        if warning:
            print(warning, file=sys.stderr, flush=True)
        self.base = f"http://{self.host}:{self.port}/"
        self.url = f"{self.base}?token={self.token}"
        return self.url

    def _token_ok(self, request) -> bool:
        return token_ok(request.query.get("token"), self.token)

    def _refuse(self, why: str):
        from aiohttp import web

        self.refused += 1
        return web.Response(status=403, text=f"forbidden: {why}\n")

    async def _socket(self, request):
        from aiohttp import web

        if not self._token_ok(request):
            return self._refuse("missing or wrong token")
        if not origin_allowed(request.headers.get("Origin"), request.host):
            return self._refuse("the Origin is not this server's page")
        ws = web.WebSocketResponse(heartbeat=20)
        await ws.prepare(request)
        viewer = _Viewer(ws, request, self.queue_size)
        viewer.task = asyncio.create_task(self._write(viewer))
        self.clients.add(viewer)
        self.accepted += 1
        try:
            async for _ in ws:  # the page sends nothing; wait for it to go away
                pass
        finally:
            self.clients.discard(viewer)
            if not viewer.task.done():
                viewer.task.cancel()
        return ws

    async def _write(self, viewer: _Viewer) -> None:
        ws = viewer.ws
        try:
            while True:
                message = await viewer.queue.get()
                if message is None:  # the server stops
                    await ws.close()
                    return
                if isinstance(message, bytes):
                    await ws.send_bytes(message)
                else:
                    await ws.send_str(message)
        except (ConnectionError, RuntimeError):
            self.clients.discard(viewer)

    def _drop(self, viewer: _Viewer) -> None:
        self.clients.discard(viewer)
        viewer.abort()
        self.dropped += 1
        print(
            f"sink.browser: dropped a viewer that is not reading ({self.dropped} so far)",
            file=sys.stderr,
            flush=True,
        )

    async def broadcast(self, message: str | bytes) -> None:
        """Queue ``message`` for every viewer without waiting for any; a viewer whose queue is
        full is dropped. Yields to the loop once so the viewers' writers get to run."""
        for viewer in list(self.clients):
            try:
                viewer.queue.put_nowait(message)
            except asyncio.QueueFull:
                self._drop(viewer)
        await asyncio.sleep(0)

    async def stop(self, grace: float = 2.0) -> None:
        """Send what is queued and close each socket (at most ``grace`` seconds), then stop."""
        writers = []
        for viewer in list(self.clients):
            try:
                viewer.queue.put_nowait(None)
                writers.append(viewer.task)
            except asyncio.QueueFull:
                viewer.abort()
        if writers:
            await asyncio.wait(writers, timeout=grace)
        for viewer in list(self.clients):
            viewer.abort()
        self.clients.clear()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None


@register("sink.browser")
class BrowserSink(Operator):
    """Serves a three.js face page and streams weights, audio, latency and visemes to it."""

    requires = ("aiohttp",)

    Params = BrowserParams
    inputs: ClassVar = {
        "in": Port(streams.Params, doc="ARKit-named weights to show"),
        "audio": Port(Audio, required=False, doc="audio for the page to play in sync"),
        "visemes": Port(Visemes, required=False, doc="viseme ids to display"),
    }
    outputs: ClassVar = {}

    async def setup(self) -> None:
        from ..face.rig import DEFAULT_GLB

        glb = Path(self.params.glb) if self.params.glb else DEFAULT_GLB
        p = self.params
        self.server = ViewerServer(p.host, p.port, glb, p.token, tuple(p.hosts), p.queue)
        self.url = await self.server.start()
        print(f"sink.browser: open {self.url}", file=sys.stderr, flush=True)

    async def process(self, port: str, packet: Packet):
        p = packet.payload
        if port == "in":
            latency = None if math.isnan(packet.lateness) else packet.lateness
            msg = {
                "type": "params",
                "t": packet.media_time,
                "names": list(p.names),
                "frame_rate": p.frame_rate,
                "values": np.round(p.values.astype(np.float64), 4).tolist(),
                "latency": latency,
            }
            await self.server.broadcast(json.dumps(msg))
        elif port == "audio" and self.params.audio:
            head = struct.pack("<dI4x", packet.media_time, int(p.rate))
            await self.server.broadcast(head + np.asarray(p.samples, "<f4").tobytes())
        elif port == "visemes":
            msg = {
                "type": "visemes",
                "t": packet.media_time,
                "frame_rate": p.frame_rate,
                "ids": np.asarray(p.ids).astype(int).tolist(),
            }
            await self.server.broadcast(json.dumps(msg))
        return None

    async def flush(self):
        await self.server.broadcast(json.dumps({"type": "end"}))
        return None

    def counters(self) -> dict[str, int]:
        server = getattr(self, "server", None)
        if server is None:
            return {}
        return {
            "viewers": server.accepted,
            "refused": server.refused,
            "dropped_viewers": server.dropped,
        }

    async def close(self) -> None:
        server = getattr(self, "server", None)
        if server is not None:
            await asyncio.shield(server.stop())
