"""Rules shared by the servers a run opens (the browser viewer, ``--metrics-port``).

- `is_loopback`: 127.0.0.0/8, ::1 and the ``localhost`` names. Anything else (``0.0.0.0``, a
  LAN address) is reachable from the network; `exposure_warning` gives the one loud line a
  server prints when it binds such an address (still allowed: the user asked for it).
- `host_allowed`: the HTTP ``Host`` check against DNS rebinding. A web page on a name the
  attacker controls (``evil.example``) that re-resolves to 127.0.0.1 reaches a local server
  with ``Host: evil.example:PORT``; a server that accepts only its own names never answers it.
  Accepted: the served port, and a ``localhost`` name, the bound host, a name in ``extra``, a
  loopback IP, or — when bound to a non-loopback address — any IP literal (an IP literal
  cannot be rebound, and LAN clients reach the machine by its address).
- `token_ok` and `origin_allowed`: the per-run token (compared in constant time) and the
  WebSocket ``Origin`` check: a socket opened by a web page carries its page's origin, which
  must be this server's own; a socket without ``Origin`` comes from a program, not a page, and
  needs the token alone.
"""

from __future__ import annotations

import ipaddress
import secrets
from collections.abc import Iterable


def _bare(host: str) -> str:
    return host.strip().strip("[]").rstrip(".").lower()


def _ip(host: str):
    try:
        return ipaddress.ip_address(_bare(host))
    except ValueError:
        return None


def is_loopback(host: str) -> bool:
    """True for an address only this machine can reach (127.x, ::1, localhost)."""
    h = _bare(host)
    if h == "localhost" or h.endswith(".localhost"):
        return True
    ip = _ip(h)
    return ip is not None and ip.is_loopback


def exposure_warning(server: str, host: str, port: int) -> str | None:
    """The line to print when ``server`` binds ``host``, or None for a loopback address."""
    if is_loopback(host):
        return None
    shown = host or "all interfaces"
    return (
        f"WARNING: {server} listens on {shown}:{port}, which is NOT loopback: anyone on the "
        f"network who can reach this machine can connect (plain HTTP, unencrypted)"
    )


def split_host_header(value: str) -> tuple[str, int | None]:
    """``"name:8765"`` / ``"[::1]:8765"`` / ``"name"`` → (name, port or None)."""
    value = value.strip()
    if value.startswith("["):
        name, _, rest = value[1:].partition("]")
        port = rest[1:] if rest.startswith(":") else ""
    elif value.count(":") == 1:
        name, _, port = value.partition(":")
    else:
        name, port = value, ""
    try:
        return name, int(port) if port else None
    except ValueError:
        return name, -1


def host_allowed(header: str | None, bound_host: str, port: int, extra: Iterable[str] = ()) -> bool:
    """Whether an HTTP ``Host`` header names this server (see the module docstring)."""
    if not header:
        return False
    name, hport = split_host_header(header)
    if hport != port and not (hport is None and port == 80):
        return False
    h = _bare(name)
    if not h:
        return False
    if is_loopback(h) or h == _bare(bound_host) or h in {_bare(e) for e in extra}:
        return True
    return _ip(h) is not None and not is_loopback(bound_host)


def new_token() -> str:
    """A random access token (32 URL-safe characters) that never starts with ``-``, so it can
    follow ``--token`` on a command line."""
    while True:
        token = secrets.token_urlsafe(24)
        if not token.startswith("-"):
            return token


def token_ok(given: str | None, token: str) -> bool:
    """Whether a request's token (e.g. its ``?token=`` query value) is the run's ``token``."""
    return secrets.compare_digest((given or "").encode(), token.encode())


def origin_allowed(origin: str | None, host_header: str) -> bool:
    """Whether a WebSocket ``Origin`` header is acceptable for a request to ``host_header``:
    absent (a program, not a web page), or this server's own ``http://`` origin."""
    return origin is None or origin.lower() == f"http://{host_header}".lower()


async def listen(app, who: str, host: str, port: int, reuse_port: bool = False, **runner_options):
    """Serve the aiohttp ``app`` on ``host:port`` (0: any free port) → (its runner, the port,
    `exposure_warning` or None); ``reuse_port``: SO_REUSEPORT, the port shared with other
    processes of this user. A port that cannot be bound is one OSError line naming ``who``."""
    from aiohttp import web

    runner = web.AppRunner(app, access_log=None, **runner_options)
    await runner.setup()
    site = web.TCPSite(runner, host, port, reuse_port=reuse_port or None)
    try:
        await site.start()
    except OSError as e:
        await runner.cleanup()
        raise OSError(f"{who}: cannot listen on {host}:{port}: {e}") from None
    port = site._server.sockets[0].getsockname()[1]
    return runner, port, exposure_warning(who, host, port)
