"""Who may connect to the servers a run opens, and what a viewer that stops reading costs.

sink.browser: the token from the printed URL, the Host check (DNS rebinding), the Origin check
(other web pages in the user's browser), one warning line when binding beyond loopback, and a
queue per viewer (a viewer that never reads is dropped; the others get every frame in order).
The metrics server: the Host check and the warning for ``--metrics-host``.
"""

from __future__ import annotations

import asyncio
import struct
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np
import pytest

from audio2anim.graph.netguard import exposure_warning, host_allowed, is_loopback
from audio2anim.graph.packets import Packet
from audio2anim.streams import Audio

ROOT = Path(__file__).resolve().parents[1]
aiohttp = pytest.importorskip("aiohttp")


def _needs_three():
    from audio2anim.sinks.browser import THREE_DIR

    if not THREE_DIR.exists():
        pytest.skip("three.js not installed (npm ci in audio2anim/sinks/viewer)")


def _sink(**params):
    from audio2anim.sinks.browser import BrowserSink

    _needs_three()
    return BrowserSink(BrowserSink.Params(port=0, **params))


def _run(coro, timeout=120):
    """Run a scenario; the timeout guards against a hang, it measures nothing."""
    return asyncio.run(asyncio.wait_for(coro, timeout))


async def _ws_status(http, url, **kw) -> int:
    """101 when the socket opens (then closes it), else the refusal's HTTP status."""
    try:
        ws = await http.ws_connect(url, **kw)
    except aiohttp.WSServerHandshakeError as e:
        return e.status
    await ws.close()
    return 101


# --- netguard --------------------------------------------------------------------------------


def test_loopback_and_host_rules():
    assert is_loopback("127.0.0.1") and is_loopback("::1") and is_loopback("localhost")
    assert not is_loopback("0.0.0.0") and not is_loopback("192.168.1.5") and not is_loopback("")
    assert exposure_warning("x", "127.0.0.1", 1) is None
    assert "anyone on the network" in exposure_warning("x", "0.0.0.0", 1)
    # bound to loopback: only its own names, on its own port
    for ok in ("127.0.0.1:8765", "localhost:8765", "[::1]:8765", "LOCALHOST:8765"):
        assert host_allowed(ok, "127.0.0.1", 8765), ok
    for bad in ("evil.example:8765", "127.0.0.1:8766", "127.0.0.1", "192.168.1.5:8765", "", None):
        assert not host_allowed(bad, "127.0.0.1", 8765), bad
    # bound to every interface: IP literals (LAN clients) and listed names, never other names
    assert host_allowed("192.168.1.5:8765", "0.0.0.0", 8765)
    assert not host_allowed("evil.example:8765", "0.0.0.0", 8765)
    assert host_allowed("studio.local:8765", "0.0.0.0", 8765, extra=["studio.local"])


# --- sink.browser: token, Host, Origin ----------------------------------------------------------


def test_the_printed_url_carries_a_fresh_token_and_a_pinned_one_is_kept(capsys):
    async def scenario():
        a, b = _sink(), _sink(token="x" * 24)
        await a.setup()
        await b.setup()
        try:
            return a.url, a.server.token, b.url
        finally:
            await a.close()
            await b.close()

    url_a, token_a, url_b = _run(scenario())
    assert url_a.startswith("http://127.0.0.1:") and url_a.endswith(f"/?token={token_a}")
    assert len(token_a) >= 24
    assert url_b.endswith("/?token=" + "x" * 24)
    err = capsys.readouterr().err
    assert f"open {url_a}" in err and "WARNING" not in err  # loopback: no warning


def test_token_host_and_origin_are_checked():
    async def scenario():
        sink = _sink()
        await sink.setup()
        s = sink.server
        ws = f"{s.base}ws"
        own = f"http://127.0.0.1:{s.port}"
        try:
            async with aiohttp.ClientSession() as http:
                status = {
                    "no token": await _ws_status(http, ws),
                    "wrong token": await _ws_status(http, ws + "?token=" + "a" * 32),
                    "token, no Origin": await _ws_status(http, f"{ws}?token={s.token}"),
                    "token, own Origin": await _ws_status(
                        http, f"{ws}?token={s.token}", origin=own
                    ),
                    "token, localhost": await _ws_status(
                        http,
                        f"{ws}?token={s.token}",
                        headers={"Host": f"localhost:{s.port}"},
                        origin=f"http://localhost:{s.port}",
                    ),  # fmt: skip
                    "token, other Origin": await _ws_status(
                        http, f"{ws}?token={s.token}", origin="http://evil.example"
                    ),
                    "token, Origin null": await _ws_status(
                        http, f"{ws}?token={s.token}", origin="null"
                    ),
                    "token, rebound Host": await _ws_status(
                        http,
                        f"{ws}?token={s.token}",
                        headers={"Host": f"evil.example:{s.port}"},
                        origin=f"http://evil.example:{s.port}",
                    ),  # fmt: skip
                }
                pages = {}
                for name, path, headers in (
                    ("page", "", {}),
                    ("script", "viewer.js", {}),
                    ("three.js", "three/build/three.module.js", {}),
                    ("glb, no token", "face.glb", {}),
                    ("glb, token", f"face.glb?token={s.token}", {}),
                    ("page, rebound Host", "", {"Host": f"evil.example:{s.port}"}),
                ):
                    async with http.get(s.base + path, headers=headers) as resp:
                        pages[name] = resp.status
            return status, pages, sink.counters()
        finally:
            await sink.close()

    status, pages, counters = _run(scenario())
    assert status == {
        "no token": 403, "wrong token": 403, "token, no Origin": 101, "token, own Origin": 101,
        "token, localhost": 101, "token, other Origin": 403, "token, Origin null": 403,
        "token, rebound Host": 403,
    }  # fmt: skip
    # the package's own code is public; the rig (possibly the user's avatar) needs the token
    assert pages == {
        "page": 200, "script": 200, "three.js": 200, "glb, no token": 403, "glb, token": 200,
        "page, rebound Host": 403,
    }  # fmt: skip
    assert counters == {"viewers": 3, "refused": 7, "dropped_viewers": 0}


def test_binding_beyond_loopback_prints_one_warning(capsys):
    async def scenario():
        sink = _sink(host="0.0.0.0")
        await sink.setup()
        await sink.close()

    _run(scenario())
    lines = [ln for ln in capsys.readouterr().err.splitlines() if "WARNING" in ln]
    assert len(lines) == 1
    assert "sink.browser" in lines[0] and "0.0.0.0" in lines[0]
    assert "anyone on the network" in lines[0]


# --- sink.browser: a queue per viewer ---------------------------------------------------------


def test_viewers_that_never_read_are_dropped_and_a_reading_viewer_gets_every_frame():
    async def scenario():
        sink = _sink(queue=8)
        await sink.setup()
        url = f"{sink.server.base}ws?token={sink.server.token}"
        try:
            async with aiohttp.ClientSession() as http:
                idle = [await http.ws_connect(url) for _ in range(3)]  # they never receive
                reader = await http.ws_connect(url)
                while len(sink.server.clients) < 4:
                    await asyncio.sleep(0)
                received: list[float] = []

                async def read():
                    async for msg in reader:
                        if msg.type == aiohttp.WSMsgType.BINARY:
                            received.append(struct.unpack_from("<d", msg.data)[0])
                        elif msg.type == aiohttp.WSMsgType.TEXT and '"end"' in msg.data:
                            return

                task = asyncio.create_task(read())
                block = Audio(np.zeros(16384, np.float32), 16000)  # 64 KiB a message
                sent = 0
                extra = 20  # frames after the last idle viewer is gone
                while sink.server.dropped < 3 or extra > 0:
                    assert sent < 20_000, "the idle viewers were never dropped"
                    extra -= sink.server.dropped >= 3
                    await sink.process("audio", Packet(block, float(sent)))
                    sent += 1
                    # paced like a live source: the next block once the reader is near
                    while len(received) < sent - 4:
                        await asyncio.sleep(0)
                await sink.flush()
                await task
                for ws in idle:  # the server has gone away from each of them
                    await ws.close()
            return received, sent, sink.counters()
        finally:
            await sink.close()

    received, sent, counters = _run(scenario())
    assert received == [float(i) for i in range(sent)]  # every frame, in order
    assert counters["dropped_viewers"] == 3 and counters["viewers"] == 4


# --- the metrics server ------------------------------------------------------------------------


def test_metrics_server_checks_the_host_header():
    from prometheus_client import CollectorRegistry, Counter

    from audio2anim.graph.metrics import serve_metrics

    registry = CollectorRegistry()
    Counter("audio2anim_probe", "a probe", registry=registry).inc()
    server = serve_metrics("127.0.0.1", 0, registry)
    port = server.server_address[1]
    try:

        def get(host):
            req = urllib.request.Request(f"http://127.0.0.1:{port}/metrics", headers={"Host": host})
            try:
                with urllib.request.urlopen(req, timeout=10) as r:
                    return r.status, r.read().decode()
            except urllib.error.HTTPError as e:
                return e.code, ""

        status, body = get(f"127.0.0.1:{port}")
        assert status == 200 and "audio2anim_probe_total 1.0" in body
        assert get(f"localhost:{port}")[0] == 200
        assert get(f"evil.example:{port}")[0] == 403
    finally:
        server.shutdown()
        server.server_close()


def test_metrics_host_beyond_loopback_prints_one_warning():
    r = subprocess.run(
        [sys.executable, "-m", "audio2anim", "run", "graphs/passthrough.yaml", "--quiet",
         "--metrics-host", "0.0.0.0", "--metrics-port", "0"],
        cwd=ROOT, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert r.returncode == 0, r.stderr[-2000:]
    lines = [ln for ln in r.stderr.splitlines() if "WARNING" in ln]
    assert len(lines) == 1, r.stderr
    assert "metrics" in lines[0] and "0.0.0.0" in lines[0] and "anyone on the network" in lines[0]
