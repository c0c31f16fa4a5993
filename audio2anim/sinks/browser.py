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

Ports: ``in`` `Params`; ``audio`` `Audio` (optional); ``visemes`` `Visemes` (optional).
Params: ``host``, ``port``, ``glb`` (rig to show; default: the packaged face), ``audio``
(send audio to the page). Runs on the event loop: sending is cheap and non-blocking.

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
from ..graph.operator import Operator, OperatorParams, Port, existing_file
from ..graph.packets import Packet
from ..graph.registry import register
from ..streams import Audio, Visemes

VIEWER_DIR = Path(__file__).with_name("viewer")
THREE_DIR = VIEWER_DIR / "node_modules" / "three"


class BrowserParams(OperatorParams):
    host: str = Field("127.0.0.1", description="address to serve on")
    port: int = Field(8765, ge=0, le=65535, description="HTTP/WebSocket port (0 = any free)")
    glb: Annotated[str | None, existing_file("glb")] = Field(
        None, description="rig GLB to show; default: ours"
    )
    audio: bool = Field(True, description="send the audio for the page to play")


class ViewerServer:
    """The aiohttp server behind `BrowserSink`; usable on its own (``await start()``)."""

    def __init__(self, host: str, port: int, glb: Path) -> None:
        self.host, self.port, self.glb = host, port, glb
        self.clients: set = set()
        self._runner = None
        self.url = ""

    async def start(self) -> str:
        from aiohttp import web

        if not (THREE_DIR / "build" / "three.module.js").exists():
            raise RuntimeError(
                f"sink.browser: three.js is not installed in {VIEWER_DIR}/node_modules; "
                f"run `npm ci` there (setup.sh does)"
            )
        if not self.glb.exists():
            raise FileNotFoundError(f"sink.browser: glb {self.glb} does not exist")

        def file(path: Path):
            async def handler(request):
                return web.FileResponse(path)

            return handler

        app = web.Application()
        app.router.add_get("/", file(VIEWER_DIR / "index.html"))
        app.router.add_get("/viewer.js", file(VIEWER_DIR / "viewer.js"))
        app.router.add_get("/face.glb", file(self.glb))
        app.router.add_get("/ws", self._socket)
        app.router.add_static("/three/", THREE_DIR)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, self.port)
        try:
            await site.start()
        except OSError as e:
            await self._runner.cleanup()
            raise OSError(f"sink.browser: cannot listen on {self.host}:{self.port}: {e}") from None
        port = site._server.sockets[0].getsockname()[1]
        self.url = f"http://{self.host}:{port}/"
        return self.url

    async def _socket(self, request):
        from aiohttp import web

        ws = web.WebSocketResponse(heartbeat=20)
        await ws.prepare(request)
        self.clients.add(ws)
        try:
            async for _ in ws:  # the page sends nothing; wait for it to go away
                pass
        finally:
            self.clients.discard(ws)
        return ws

    async def broadcast(self, message: str | bytes) -> None:
        """Send to every open socket; a socket that fails is dropped, never waited on."""
        for ws in list(self.clients):
            try:
                if isinstance(message, bytes):
                    await ws.send_bytes(message)
                else:
                    await ws.send_str(message)
            except (ConnectionError, RuntimeError):
                self.clients.discard(ws)

    async def stop(self) -> None:
        for ws in list(self.clients):
            await ws.close()
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
        self.server = ViewerServer(self.params.host, self.params.port, glb)
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

    async def close(self) -> None:
        server = getattr(self, "server", None)
        if server is not None:
            await asyncio.shield(server.stop())
