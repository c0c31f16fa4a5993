"""Prometheus metrics of one graph run, plus exact percentiles for the end-of-run summary.

Each `GraphMetrics` owns its metric families in a `CollectorRegistry` (its own, or one shared by
several graphs in a process: every series carries the ``graph`` label), so nothing here is
module-level state. Names and labels are those of DESIGN.md.

`serve_metrics` serves one registry at ``/metrics`` (``audio2anim run --metrics-port``) with the
Host check of `netguard` (no DNS rebinding into a local Prometheus endpoint). It has no token:
scrapers are configured with a bare URL, and the series hold timings and counts, no media.
"""

from __future__ import annotations

import contextlib
import random
import socket
from array import array
from wsgiref.simple_server import WSGIRequestHandler, make_server

import numpy as np
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, make_wsgi_app
from prometheus_client.exposition import ThreadingWSGIServer

from .netguard import host_allowed

# DESIGN.md: buckets cover 1 ms ... 2 s; operator time also gets sub-millisecond buckets, since
# most operators take microseconds per packet.
E2E_BUCKETS = (0.001, 0.002, 0.005, 0.01, 0.02, 0.03, 0.05, 0.08, 0.1, 0.15, 0.2, 0.5, 1.0, 2.0)
OP_BUCKETS = (1e-5, 5e-5, 1e-4, 2.5e-4, 5e-4) + E2E_BUCKETS
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512)


class Samples:
    """Durations kept for exact percentiles; a uniform reservoir past ``cap`` samples (so a
    node's memory for them stops growing: 160 kB, reached after 400 s of 50 packets/s)."""

    def __init__(self, cap: int = 20_000, seed: int = 0) -> None:
        self.values = array("d")
        self.count = 0
        self.cap = cap
        self._rng = random.Random(seed)

    def add(self, v: float) -> None:
        self.count += 1
        if len(self.values) < self.cap:
            self.values.append(v)
        else:
            j = self._rng.randrange(self.count)
            if j < self.cap:
                self.values[j] = v

    def percentile(self, q: float) -> float | None:
        if not self.values:
            return None
        return float(np.percentile(np.frombuffer(self.values, dtype=np.float64), q))


class GraphMetrics:
    """The metric families of one registry; `.labels(graph, …)` gives a series."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        r = self.registry
        self.e2e = Histogram(
            "audio2anim_e2e_latency_seconds",
            "End-to-end latency at a sink: now minus capture time of the newest audio used",
            ["graph", "sink"], buckets=E2E_BUCKETS, registry=r,
        )  # fmt: skip
        self.op_time = Histogram(
            "audio2anim_operator_seconds", "Time an operator spends per packet",
            ["graph", "node"], buckets=OP_BUCKETS, registry=r,
        )  # fmt: skip
        self.depth = Gauge(
            "audio2anim_queue_depth", "Packets waiting on an edge", ["graph", "edge"], registry=r
        )
        self.dropped = Counter(
            "audio2anim_dropped",
            "Packets dropped by an edge's policy",
            ["graph", "edge"],
            registry=r,
        )
        self.packets = Counter(
            "audio2anim_packets", "Packets processed by a node", ["graph", "node"], registry=r
        )
        self.errors = Counter(
            "audio2anim_errors", "Operator failures", ["graph", "node"], registry=r
        )


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format, *args):  # noqa: A002 - the base class's name
        pass


def open_metrics_server(host: str, port: int, registry: CollectorRegistry):
    """`serve_metrics` for a command's ``--metrics-host``/``--metrics-port``: prints the URL (and
    the beyond-loopback warning) on stderr → the server, or None after a one-line error."""
    import sys

    from .netguard import exposure_warning

    try:
        server = serve_metrics(host, port, registry)
    except OSError as e:
        print(f"error: --metrics-port {port}: {e.strerror}", file=sys.stderr)
        return None
    port = server.server_address[1]
    warning = exposure_warning("the metrics server (--metrics-host)", host, port)
    if warning:
        print(warning, file=sys.stderr)
    print(f"metrics: http://{host}:{port}/metrics", file=sys.stderr, flush=True)
    return server


def serve_metrics(host: str, port: int, registry: CollectorRegistry) -> ThreadingWSGIServer:
    """Serve ``registry`` at ``http://host:port/metrics`` on a daemon thread; a request whose
    Host header does not name this server gets 403. ``server.shutdown()`` stops it."""
    import threading

    metrics_app = make_wsgi_app(registry)

    def app(environ, start_response):
        if not host_allowed(environ.get("HTTP_HOST"), host, server.server_address[1]):
            start_response("403 Forbidden", [("Content-Type", "text/plain")])
            return [b"forbidden: the Host header does not name this server\n"]
        return metrics_app(environ, start_response)

    family = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)[0]

    class Server(ThreadingWSGIServer):
        address_family = family[0]

    server = make_server(family[4][0], port, app, Server, handler_class=_QuietHandler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


# the streaming service's families: (attribute, kind, name, help, labels, buckets); per-session
# series carry ``session`` (`ServeMetrics`; on Ray Serve, `audio2anim.serve.ray_metrics`)
SERVE_FAMILIES = (
    ("active", "gauge", "audio2anim_sessions_active", "Sessions streaming now", ("graph",), None),
    ("sessions", "counter", "audio2anim_sessions",
     "Sessions ended, by how they ended (done, disconnected, error, stopped)", ("graph", "end"), None),
    ("refused", "counter", "audio2anim_sessions_refused", "Connections refused, by reason",
     ("reason",), None),
    ("frames", "counter", "audio2anim_frames_sent", "Parameter frames sent to a session's client",
     ("graph", "session"), None),
    ("dropped", "counter", "audio2anim_dropped",
     "Frames dropped by a session's outbound queue (edge 'client')", ("graph", "edge", "session"), None),
    ("e2e", "histogram", "audio2anim_e2e_latency_seconds",
     "From the arrival of the newest audio chunk a frame used to the frame's send",
     ("graph", "sink", "session"), E2E_BUCKETS),
    ("batch_size", "histogram", "audio2anim_batch_size",
     "Calls stacked into one model call by a cross-session batcher", ("model",), BATCH_BUCKETS),
    ("batch_wait", "histogram", "audio2anim_batch_queue_wait_seconds",
     "How long a model call waited in its batcher's queue before its batch ran", ("model",), OP_BUCKETS),
    ("batch_run", "histogram", "audio2anim_batch_run_seconds",
     "How long one batch took to run (its model calls, stacking and splitting included)",
     ("model",), OP_BUCKETS),
    # read when scraped (`Gauge.set_function`): nothing to update per chunk or frame
    ("queue_depth", "gauge", "audio2anim_queue_depth",
     "Waiting in a session's queue: audio chunks (edge 'inbox'), frames (edge 'client')",
     ("graph", "edge", "session"), None),
    ("batch_depth", "gauge", "audio2anim_batch_queue_depth", "Model calls waiting in a batcher's queue",
     ("model",), None),
)  # fmt: skip


class ServeMetrics:
    """The metric families of a streaming service (``audio2anim serve``, `SERVE_FAMILIES`): one
    registry for the process, series labelled by graph and, where per session, by ``session``.
    Per-session series are removed when their session ends (`forget`), so the registry holds
    live sessions only; the totals over sessions stay in ``audio2anim_sessions_total`` and the
    families without a session label."""

    active: Gauge
    sessions: Counter
    refused: Counter
    frames: Counter
    dropped: Counter
    e2e: Histogram
    batch_size: Histogram
    batch_wait: Histogram
    batch_run: Histogram
    queue_depth: Gauge
    batch_depth: Gauge

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        kinds = {"counter": Counter, "gauge": Gauge, "histogram": Histogram}
        for attr, kind, name, doc, labels, buckets in SERVE_FAMILIES:
            extra = {} if buckets is None else {"buckets": buckets}
            family = kinds[kind](name, doc, list(labels), registry=self.registry, **extra)
            setattr(self, attr, family)

    def forget(self, graph: str, session: str) -> None:
        """Remove the per-session series of ``session``."""
        for family, labels in (
            (self.frames, (graph, session)),
            (self.e2e, (graph, "client", session)),
            (self.dropped, (graph, "client", session)),
            (self.queue_depth, (graph, "inbox", session)),
            (self.queue_depth, (graph, "client", session)),
        ):
            with contextlib.suppress(KeyError):
                family.remove(*labels)
