"""The service's metrics on Ray Serve: `ServeMetrics`' families recorded through Ray's own metrics.

A Ray Serve replica is one process among many, on any node, so it serves no /metrics of its
own: Ray's metrics agent on each node exports what the node's processes record
(`ray.util.metrics`) on the node's metrics export port (``ray start --metrics-export-port N``;
``audio2anim serve --ray local --metrics-port N``), with Ray's prefix: ``audio2anim_e2e_latency_seconds``
is scraped as ``ray_audio2anim_e2e_latency_seconds``. `RayServeMetrics` has `ServeMetrics`'
families under the same names and labels, plus ``deployment`` (``ingress`` or ``models``) and
``replica``, and without ``session``: Ray cannot remove a series, so per-session series would
pile up for as long as the service runs; a replica's series sum its sessions (counts and
histograms over every session it has served, queue depths over those streaming now).

The families keep `ServeMetrics`' interface (``labels(…)`` then ``inc``, ``dec``, ``set``,
``observe``, ``set_function``; `forget`), so the service's code records into either. A gauge
read when scraped (``set_function``) is read here every `POLL_S` seconds and summed over its
sessions. It needs the ``ray`` extra, as `audio2anim.serve.ray_app` does.
"""

from __future__ import annotations

import contextlib
import threading
import time
import weakref
from collections.abc import Callable

from ray.util import metrics as ray_metrics

from audio2anim.graph.metrics import SERVE_FAMILIES

POLL_S = 2.0  # how often the gauges read when scraped are read (Ray exports every few seconds)


class _Family:
    """One of `SERVE_FAMILIES` as a Ray metric: its labels but ``session``, plus the replica's
    own tags."""

    def __init__(self, kind: str, name: str, doc: str, labels, buckets, tags: dict) -> None:
        self.labelnames = tuple(labels)
        self.kept = tuple(n for n in self.labelnames if n != "session")
        keys = self.kept + tuple(tags)
        if kind == "counter":  # named as prometheus_client exposes a counter
            self.metric = ray_metrics.Counter(name + "_total", doc, tag_keys=keys)
        elif kind == "gauge":
            self.metric = ray_metrics.Gauge(name, doc, tag_keys=keys)
        else:
            self.metric = ray_metrics.Histogram(name, doc, boundaries=list(buckets), tag_keys=keys)
        self.metric.set_default_tags(tags)
        self.values: dict[tuple, float] = {}  # a gauge's value per tag set (``inc``/``set``)
        # a gauge's readers per tag set: (session, function)
        self.readers: dict[tuple, list[tuple[str | None, Callable[[], float]]]] = {}
        self.lock = threading.Lock()

    def labels(self, *values) -> _Child:
        if len(values) != len(self.labelnames):
            raise ValueError(f"{self.labelnames}: {len(values)} label values")
        named = dict(zip(self.labelnames, (str(v) for v in values), strict=True))
        return _Child(self, tuple(named[n] for n in self.kept), named.get("session"))

    def poll(self) -> None:
        """Set each gauge read when scraped to the sum of its readers, and each other gauge to
        its value again (Ray exports a gauge's values recorded since its last export)."""
        with self.lock:
            readers = {k: list(v) for k, v in self.readers.items()}
            values = dict(self.values)
        for key, value in values.items():
            self.metric.set(value, tags=dict(zip(self.kept, key, strict=True)))
        for key, fns in readers.items():
            total = 0.0
            for _, fn in fns:
                with contextlib.suppress(Exception):  # a reader whose object is gone: 0
                    total += float(fn())
            self.metric.set(total, tags=dict(zip(self.kept, key, strict=True)))

    def forget(self, session: str) -> None:
        with self.lock:
            for fns in self.readers.values():
                fns[:] = [(s, fn) for s, fn in fns if s != session]


class _Child:
    """One series of a `_Family` (its label values, ``session`` aside)."""

    def __init__(self, family: _Family, key: tuple, session: str | None) -> None:
        self.family, self.key, self.session = family, key, session
        self.tags = dict(zip(family.kept, key, strict=True))

    def inc(self, amount: float = 1.0) -> None:
        f = self.family
        if isinstance(f.metric, ray_metrics.Gauge):
            self._add(amount)
        elif amount:
            f.metric.inc(amount, tags=self.tags)

    def dec(self, amount: float = 1.0) -> None:
        self._add(-amount)

    def set(self, value: float) -> None:
        with self.family.lock:
            self.family.values[self.key] = value
        self.family.metric.set(value, tags=self.tags)

    def _add(self, amount: float) -> None:
        with self.family.lock:
            value = self.family.values[self.key] = self.family.values.get(self.key, 0.0) + amount
        self.family.metric.set(value, tags=self.tags)

    def observe(self, value: float) -> None:
        self.family.metric.observe(value, tags=self.tags)

    def set_function(self, fn: Callable[[], float]) -> None:
        with self.family.lock:
            self.family.readers.setdefault(self.key, []).append((self.session, fn))


class RayServeMetrics:
    """`ServeMetrics`' families recorded as Ray metrics (module docstring), with the tags
    ``deployment`` and ``replica``. A thread reads the gauges every `POLL_S` seconds while the
    object lives."""

    def __init__(self, deployment: str, replica: str) -> None:
        tags = {"deployment": deployment, "replica": replica}
        self.families = {}
        for attr, kind, name, doc, labels, buckets in SERVE_FAMILIES:
            self.families[attr] = _Family(kind, name, doc, labels, buckets, tags)
            setattr(self, attr, self.families[attr])
        families = list(self.families.values())
        alive = weakref.ref(self)

        def poll() -> None:
            while alive() is not None:
                time.sleep(POLL_S)
                for f in families:
                    f.poll()

        threading.Thread(target=poll, name="a2a-ray-metrics", daemon=True).start()

    def forget(self, graph: str, session: str) -> None:
        """Stop reading ``session``'s gauges (its counts stay in the replica's series)."""
        for f in self.families.values():
            f.forget(session)
