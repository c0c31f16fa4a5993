"""The runner: runs a validated `Graph` as asyncio tasks joined by bounded queues.

It owns everything operators don't: queues and their policies, the capture-time clock,
end-of-stream, metrics, the thread pool for CPU-heavy operators (kept for the process's next
run once all its calls have returned), errors and shutdown.

- One task per node. A node with several inputs takes, among the packets waiting, the one with
  the smallest media time, so fan-in sees its streams in time order.
- Every edge is a bounded FIFO with a policy: ``block`` (the producer waits: backpressure, nothing
  lost), ``drop_oldest`` / ``drop_newest`` (the producer never waits; each drop is counted).
  End-of-stream is never dropped.
- Outputs get the capture time of the newest input packet the node had consumed when it emitted
  them (sources: the time the packet entered the graph), unless the operator set one.
- Honest media time across drops: the packet after a dropped one is marked ``discontinuity``.
  A node that consumes a marked packet has its next output on every port marked too, and an
  operator that keeps state (it defines ``reset()``) is flushed and reset first, so its
  media times re-anchor on the packet after the gap and no state is spliced across it.
- Formats: once every operator is set up, each edge's declared output format is checked
  against what its input takes, before any packet flows; a mismatch is a `GraphError` naming
  the edge. The first packet on each output port is checked against its declaration.
- Stop (Ctrl-C, SIGTERM, `Runner.stop()`): sources are cancelled and end their streams; what is
  in flight drains to the sinks; then every operator's ``close()`` runs.
- One call at a time per operator: ``close()`` never runs while the operator's ``process()`` or
  ``flush()`` is still running (a thread operator's call outlives its task when the drain times
  out or the run is cancelled). The runner waits for that call (up to ``CLOSE_WAIT_S``); if it
  does not finish, that operator's ``close()`` is skipped with an error, never run alongside it.
- An operator exception stops the graph the same way: the failed node ends its outputs (so the
  sinks downstream finalize what they already have), upstream packets addressed to it are
  discarded, and `run()` raises `OperatorError` naming the node once everything is closed.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import inspect
import math
import os
import threading
import time
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from prometheus_client import CollectorRegistry

from audio2anim.streams import Audio

from .errors import GraphError, OperatorError
from .formats import ANY, Format, mismatch, payload_format
from .metrics import GraphMetrics, Samples
from .operator import Operator, Source, restarts, routed
from .packets import EndOfStream, Packet
from .spec import Edge as EdgeSpec
from .spec import Graph
from .stopping import watching

DRAIN_TIMEOUT_S = 10.0  # after a stop or an error, how long in-flight work may take to drain
CLOSE_WAIT_S = 10.0  # before close(): how long an operator's running call may take to finish


# Thread pools of finished runs, reused by the next run in this process (a batch of short
# clips would otherwise start new threads for every clip). Only a pool whose calls have all
# returned comes back; a forked child starts with none (threads do not cross a fork).
IDLE_POOLS = 4  # at most this many idle pools are kept per pool size
_idle: dict[int, list[ThreadPoolExecutor]] = {}  # max_workers → idle pools
_idle_lock = threading.Lock()


def _forget_idle_pools() -> None:
    global _idle, _idle_lock
    _idle, _idle_lock = {}, threading.Lock()


os.register_at_fork(after_in_child=_forget_idle_pools)


def _take_pool(n: int) -> ThreadPoolExecutor:
    with _idle_lock:
        pools = _idle.get(n)
        if pools:
            return pools.pop()
    return ThreadPoolExecutor(max_workers=n, thread_name_prefix="a2a-graph")


def _give_back_pool(pool: ThreadPoolExecutor, n: int, settled: bool) -> None:
    """``pool`` kept for the next run when ``settled`` (no call still running), else shut."""
    with _idle_lock:
        pools = _idle.setdefault(n, [])
        if settled and len(pools) < IDLE_POOLS:
            pools.append(pool)
            return
    pool.shutdown(wait=False, cancel_futures=True)


class Queue:
    """One edge: a bounded FIFO with a policy; the consumer node is woken on every put."""

    __slots__ = ("spec", "label", "items", "size", "policy", "wake", "not_full", "closed",
                 "dropped", "_drop_counter", "max_depth", "mark_head", "mark_next")  # fmt: skip

    def __init__(self, spec: EdgeSpec, wake: asyncio.Event, drop_counter) -> None:
        self.spec = spec
        self.label = spec.label
        self.items: deque = deque()
        self.size = spec.size
        self.policy = spec.policy
        self.wake = wake
        self.not_full = asyncio.Event()
        self.not_full.set()
        self.closed = False  # consumer failed: discard what arrives
        self.dropped = 0
        self._drop_counter = drop_counter
        self.max_depth = 0
        # where the gap left by a drop is: before the queue's head (drop_oldest) or before
        # the next packet put (drop_newest); that packet leaves marked as a discontinuity
        self.mark_head = False
        self.mark_next = False

    async def put(self, item: Packet | EndOfStream) -> None:
        if self.closed:
            return
        items = self.items
        if not isinstance(item, EndOfStream) and len(items) >= self.size:
            if self.policy == "block":
                while len(items) >= self.size and not self.closed:
                    self.not_full.clear()
                    await self.not_full.wait()
                if self.closed:
                    return
            elif self.policy == "drop_oldest":
                # never drop a queued end-of-stream: it is the last item, so the oldest is data
                items.popleft()
                self._drop()
                self.mark_head = True
            else:  # drop_newest
                self._drop()
                self.mark_next = True
                return
        if self.mark_next and not isinstance(item, EndOfStream):
            self.mark_next = False
            item = item.marked()
        items.append(item)
        if len(items) > self.max_depth and not isinstance(item, EndOfStream):
            self.max_depth = len(items)
        self.wake.set()

    def _drop(self) -> None:
        self.dropped += 1
        self._drop_counter.inc()

    def pop(self) -> Packet | EndOfStream:
        item = self.items.popleft()
        self.not_full.set()
        if self.mark_head and not isinstance(item, EndOfStream):
            self.mark_head = False
            item = item.marked()
        return item

    def close(self) -> None:
        self.closed = True
        self.items.clear()
        self.not_full.set()


@dataclass
class NodeState:
    name: str
    op: Operator
    inputs: list[tuple[str, Queue]] = field(default_factory=list)
    outputs: dict[str, list[Queue]] = field(default_factory=dict)
    wake: asyncio.Event = field(default_factory=asyncio.Event)
    latest_capture: float = math.nan
    times: Samples = field(default_factory=Samples)
    e2e: Samples | None = None  # sinks only
    packets: int = 0
    pump: asyncio.Task | None = None  # sources only: the task iterating packets()
    failed: bool = False
    busy: concurrent.futures.Future | None = None  # the operator's call running on a thread
    gaps: set[str] = field(default_factory=set)  # output ports whose next packet gets marked
    restarts: int = 0  # resets at a discontinuity
    formats: dict[str, Format] = field(default_factory=dict)  # declared, per output port
    unchecked: set[str] = field(default_factory=set)  # ports whose first packet is not yet seen


@dataclass
class RunReport:
    graph: str
    duration_s: float
    nodes: dict[str, dict[str, Any]]
    sinks: dict[str, dict[str, Any]]
    edges: dict[str, dict[str, Any]]
    stopped: str  # "eos", "stop" or "error"
    error: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return {
            "graph": self.graph, "duration_s": self.duration_s, "stopped": self.stopped,
            "error": self.error, "nodes": self.nodes, "sinks": self.sinks, "edges": self.edges,
        }  # fmt: skip

    def table(self) -> str:
        """The human-readable end-of-run summary."""

        def ms(v):
            return "-" if v is None else f"{v:.3f}"

        lines = [f"graph '{self.graph}': {self.duration_s:.2f} s, ended by {self.stopped}"]
        lines.append(
            f"  {'node':<16}{'op':<22}{'packets':>9}{'p50 ms':>10}{'p99 ms':>10}{'lookahead ms':>14}"
        )
        for n, d in self.nodes.items():
            lines.append(
                f"  {n:<16}{d['op']:<22}{d['packets']:>9}{ms(d['p50_ms']):>10}{ms(d['p99_ms']):>10}"
                f"{d['lookahead_ms']:>14.1f}"
            )
        if self.sinks:
            lines.append(
                f"  {'sink':<16}{'e2e p50 ms':>12}{'e2e p99 ms':>12}{'algorithmic ms':>16}"
            )
            for n, d in self.sinks.items():
                lines.append(
                    f"  {n:<16}{ms(d['e2e_p50_ms']):>12}{ms(d['e2e_p99_ms']):>12}"
                    f"{d['algorithmic_latency_ms']:>16.1f}"
                )
        for n, d in self.nodes.items():
            if any(d["counters"].values()):
                lines.append(f"  {n}: " + ", ".join(f"{k} {v}" for k, v in d["counters"].items()))
        restarted = [f"{n} {d['restarts']}" for n, d in self.nodes.items() if d.get("restarts")]
        if restarted:
            lines.append("  reset after a gap: " + ", ".join(restarted))
        drops = {e: d for e, d in self.edges.items() if d["dropped"]}
        lines.append(
            "  drops: " + (", ".join(f"{e}: {d['dropped']}" for e, d in drops.items()) or "none")
        )
        if self.error:
            lines.append(f"  error: {self.error}")
        return "\n".join(lines)


class Runner:
    """Runs one graph. Several runners may share a process, an event loop and one
    `GraphMetrics` (series are labelled by graph name; give concurrent graphs distinct names)."""

    def __init__(self, graph: Graph, metrics: GraphMetrics | None = None) -> None:
        self.graph = graph
        self.metrics = metrics or GraphMetrics()
        self._stop_reason: str | None = None
        self._error: OperatorError | None = None
        self._nodes: dict[str, NodeState] = {}
        self._pool: ThreadPoolExecutor | None = None
        self._started = False
        self._format_error: GraphError | None = None
        # set once every operator is set up and the formats have met, just before the packets
        # flow (also when the run ends first): a service starts its client's stream on it
        self.ready = asyncio.Event()

    @property
    def registry(self) -> CollectorRegistry:
        return self.metrics.registry

    def operator(self, node: str) -> Operator:
        """The operator instance of ``node`` (exists once `run` has started)."""
        return self._nodes[node].op

    @property
    def stop_reason(self) -> str | None:
        """Why a stop was asked for (``"stop"``, a signal name, ``"error"``), or None."""
        return self._stop_reason

    # -- control --------------------------------------------------------------------------

    def stop(self, reason: str = "stop") -> None:
        """Ask the graph to stop: sources end their streams, in-flight packets drain."""
        if self._stop_reason is None:
            self._stop_reason = reason
        for st in self._nodes.values():
            if st.pump is not None and not st.pump.done():
                st.pump.cancel()

    async def run(self) -> RunReport:
        """Run to the end of every stream (or a stop); raise `OperatorError` on failure, and
        `GraphError` (after closing what was set up) when an edge's formats do not meet."""
        if self._started:
            raise RuntimeError("a Runner runs once; make a new one")
        self._started = True
        g = self.graph
        t0 = time.perf_counter()
        self._build()
        n_threads = sum(st.op.executor == "thread" for st in self._nodes.values())
        if n_threads:
            self._pool = _take_pool(n_threads)
        set_up: list[NodeState] = []
        tasks: list[asyncio.Task] = []
        try:
            with watching(self):
                for name in g.order:
                    st = self._nodes[name]
                    try:
                        await self._call(st, st.op.setup)
                    except Exception as e:
                        self._fail(st, e)
                        break
                    set_up.append(st)
                if self._error is None:
                    self._negotiate()
                if self._error is None and self._format_error is None:
                    tasks = [asyncio.ensure_future(self._run_node(self._nodes[n])) for n in g.order]
                    self.ready.set()
                    await self._wait(tasks)
        finally:
            self.ready.set()
            for t in tasks:
                t.cancel()
            if tasks:
                with contextlib.suppress(asyncio.CancelledError):
                    await asyncio.gather(*tasks, return_exceptions=True)
            await self._close_all(set_up)
            if self._pool is not None:
                settled = all(st.busy is None or st.busy.done() for st in self._nodes.values())
                _give_back_pool(self._pool, n_threads, settled)
        if self._format_error is not None:
            raise self._format_error
        report = self._report(time.perf_counter() - t0)
        if self._error is not None:
            self._error.report = report
            raise self._error
        return report

    async def _close_all(self, set_up: list[NodeState]) -> None:
        """Close every operator that was set up, each once its running call has finished."""
        for st in set_up:
            try:
                if not await self._settled(st):
                    self._fail(st, TimeoutError(
                        f"still running after {CLOSE_WAIT_S:g} s; close() skipped"
                    ))  # fmt: skip
                    continue
                await self._call(st, st.op.close)
            except asyncio.CancelledError:
                # cancelled again while closing: close the others without waiting
                await self._close_now(set_up[set_up.index(st) + 1 :])
                raise
            except Exception as e:
                self._fail(st, e)

    async def _close_now(self, rest: list[NodeState]) -> None:
        for st in rest:
            if st.busy is not None and not st.busy.done():
                continue  # never alongside a running call
            with contextlib.suppress(Exception):
                if inspect.iscoroutinefunction(st.op.close):
                    await st.op.close()
                else:
                    st.op.close()

    async def _settled(self, st: NodeState) -> bool:
        """Wait (bounded) for the operator's call running on a thread; True when none runs."""
        busy = st.busy
        if busy is None or busy.done():
            return True
        deadline = time.monotonic() + CLOSE_WAIT_S
        while not busy.done() and time.monotonic() < deadline:
            await asyncio.sleep(0.01)
        return busy.done()

    async def _wait(self, tasks: list[asyncio.Task]) -> None:
        pending = set(tasks)
        deadline: float | None = None
        while pending:
            if deadline is None and self._stop_reason is not None:
                deadline = time.monotonic() + DRAIN_TIMEOUT_S
            timeout = None if deadline is None else max(0.0, deadline - time.monotonic())
            # wake at least every 0.2 s so a stop requested meanwhile arms the drain deadline
            done, pending = await asyncio.wait(
                pending, timeout=0.2 if timeout is None else min(timeout, 0.2),
                return_when=asyncio.FIRST_COMPLETED,
            )  # fmt: skip
            for t in done:
                if not t.cancelled() and t.exception() is not None:
                    raise t.exception()
            if deadline is not None and time.monotonic() >= deadline and pending:
                for t in pending:
                    t.cancel()
                await asyncio.gather(*pending, return_exceptions=True)
                return

    # -- building -------------------------------------------------------------------------

    def _build(self) -> None:
        g = self.graph
        for name in g.order:
            node = g.nodes[name]
            op = node.op_class(node.params)
            st = NodeState(name, op)
            st.outputs = {port: [] for port in node.op_class.outputs}
            if not node.op_class.outputs:
                st.e2e = Samples()
            self._nodes[name] = st
        for e in g.edges:
            dst = self._nodes[e.dst]
            q = Queue(e, dst.wake, self.metrics.dropped.labels(g.name, e.label))
            self.metrics.depth.labels(g.name, e.label).set_function(lambda q=q: len(q.items))
            dst.inputs.append((e.dst_port, q))
            self._nodes[e.src].outputs[e.src_port].append(q)

    # -- formats --------------------------------------------------------------------------

    def _edge_name(self, src: str, sport: str, dst: str, dport: str) -> str:
        nodes = self.graph.nodes
        a = src if len(nodes[src].op_class.outputs) == 1 else f"{src}.{sport}"
        b = dst if len(nodes[dst].op_class.inputs) == 1 else f"{dst}.{dport}"
        return f"{a} → {b}"

    def _negotiate(self) -> None:
        """Every output's declared format, in graph order; a mismatch on an edge stops the run
        before any packet flows (`run` raises it as a `GraphError` naming the edge)."""
        g = self.graph
        for name in g.order:
            st = self._nodes[name]
            inputs: dict[str, Format] = {}
            try:
                for e in g.in_edges(name):
                    have = self._nodes[e.src].formats.get(e.src_port, ANY)
                    need = st.op.input_format(e.dst_port)
                    why = mismatch(have, need)
                    if why:
                        self._format_error = GraphError(
                            f"{g.source}: {self._edge_name(e.src, e.src_port, name, e.dst_port)}: "
                            f"the stream is {why} ({name} is {st.op.name or type(st.op).__name__})"
                            + _hint(have, need, e.src_port, self._nodes[e.src].op)
                        )
                        return
                    inputs.setdefault(e.dst_port, have.joined(need))
                st.formats = {port: st.op.output_format(port, inputs) for port in st.outputs}
            except Exception as e:
                self._fail(st, e)
                return
            st.unchecked = {p for p, f in st.formats.items() if f != ANY}

    def _check_declared(self, st: NodeState, port: str, pkt: Packet) -> None:
        st.unchecked.discard(port)
        have, declared = payload_format(pkt.payload), st.formats[port]
        if mismatch(have, declared):
            raise ValueError(f"output '{port}' carries {have}, but declares {declared}")

    # -- node tasks -----------------------------------------------------------------------

    async def _call(self, st: NodeState, fn, *args):
        if inspect.iscoroutinefunction(fn):
            return await fn(*args)
        if st.op.executor == "thread" and self._pool is not None:
            return await self._on_thread(st, fn, *args)
        return fn(*args)

    async def _on_thread(self, st: NodeState, fn, *args):
        """Run ``fn`` on the pool, remembering the call so close() never overlaps it."""
        if st.busy is not None and not st.busy.done():
            raise RuntimeError(f"{st.name}: a call is still running")  # never two at once
        st.busy = self._pool.submit(fn, *args)
        return await asyncio.wrap_future(st.busy)

    def _fail(self, st: NodeState, e: BaseException) -> None:
        st.failed = True
        self.metrics.errors.labels(self.graph.name, st.name).inc()
        if self._error is None:
            self._error = OperatorError(st.name, e)
        for _, q in st.inputs:
            q.close()
        self.stop("error")

    async def _emit(self, st: NodeState, outs) -> None:
        for port, pkt in routed(outs, st.outputs, st.latest_capture, st.name, st.gaps):
            if port in st.unchecked:
                self._check_declared(st, port, pkt)
            for q in st.outputs[port]:
                await q.put(pkt)

    async def _end_outputs(self, st: NodeState) -> None:
        eos = EndOfStream(self._stop_reason or "done")
        for queues in st.outputs.values():
            for q in queues:
                await q.put(eos)

    async def _run_node(self, st: NodeState) -> None:
        try:
            if isinstance(st.op, Source):
                await self._run_source(st)
            else:
                await self._run_consumer(st)
        except asyncio.CancelledError:
            raise
        except Exception as e:
            self._fail(st, e)
        await self._end_outputs(st)

    async def _run_source(self, st: NodeState) -> None:
        if self._stop_reason is not None:
            return  # stopped before it started: end the stream at once
        st.pump = asyncio.ensure_future(self._pump(st))
        try:
            await st.pump
        except asyncio.CancelledError:
            # a stop cancels the pump only; a cancellation of this task itself propagates
            if not st.pump.cancelled() or asyncio.current_task().cancelling():
                raise

    async def _pump(self, st: NodeState) -> None:
        op: Source = st.op  # type: ignore[assignment]
        packets = self.metrics.packets.labels(self.graph.name, st.name)
        agen = op.packets()
        try:
            while True:
                # a source's time per packet is mostly waiting for input: not recorded
                try:
                    out = await agen.__anext__()
                except StopAsyncIteration:
                    return
                st.latest_capture = time.monotonic()
                st.packets += 1
                packets.inc()
                await self._emit(st, (out,))
        finally:
            with contextlib.suppress(Exception):
                await agen.aclose()

    async def _run_consumer(self, st: NodeState) -> None:
        op = st.op
        g = self.graph.name
        op_time = self.metrics.op_time.labels(g, st.name)
        packets = self.metrics.packets.labels(g, st.name)
        e2e = self.metrics.e2e.labels(g, st.name) if st.e2e is not None else None
        primary = next(iter(op.inputs), None)
        is_async = inspect.iscoroutinefunction(op.process)
        open_inputs = list(st.inputs)
        while open_inputs:
            best = None
            for i, (_, q) in enumerate(open_inputs):
                if q.items:
                    head = q.items[0]
                    key = math.inf if isinstance(head, EndOfStream) else head.media_time
                    if best is None or key < best[0]:
                        best = (key, i)
            if best is None:
                st.wake.clear()
                await st.wake.wait()
                continue
            port, q = open_inputs[best[1]]
            item = q.pop()
            if isinstance(item, EndOfStream):
                del open_inputs[best[1]]
                continue
            cap = item.capture_time
            if cap == cap and not (cap <= st.latest_capture):
                st.latest_capture = cap
            if item.discontinuity:
                if restarts(op):
                    # the stream before the gap ends here: its buffered tail leaves unmarked
                    await self._emit(st, await self._call(st, op.flush))
                    await self._call(st, op.reset)
                    st.restarts += 1
                st.gaps.update(st.outputs)
            item = item.received(time.monotonic())
            t0 = time.perf_counter()
            if is_async:
                outs = await op.process(port, item)
            elif op.executor == "thread" and self._pool is not None:
                outs = await self._on_thread(st, op.process, port, item)
            else:
                outs = op.process(port, item)
            dt = time.perf_counter() - t0
            st.times.add(dt)
            op_time.observe(dt)
            st.packets += 1
            packets.inc()
            if e2e is not None and port == primary and cap == cap:
                lat = time.monotonic() - cap
                st.e2e.add(lat)
                e2e.observe(lat)
            await self._emit(st, outs)
        await self._emit(st, await self._call(st, op.flush))

    # -- report ---------------------------------------------------------------------------

    def _algorithmic_latency(self, own: dict[str, float]) -> dict[str, float]:
        """Per node: the largest sum of declared lookahead (``own``) along any path from a
        source."""
        acc: dict[str, float] = {}
        for name in self.graph.order:
            up = [acc[e.src] for e in self.graph.in_edges(name)]
            acc[name] = max(up, default=0.0) + own[name]
        return acc

    def _report(self, duration: float) -> RunReport:
        # each operator's latency() asked once (some read their checkpoint's settings)
        own = {n: float(st.op.latency()) for n, st in self._nodes.items()}
        algo = self._algorithmic_latency(own)

        def ms(v):
            return None if v is None else v * 1e3

        nodes = {}
        for n, st in self._nodes.items():
            p50, p99 = _p50_p99(st.times)
            nodes[n] = {
                "op": st.op.name,
                "packets": st.packets,
                "p50_ms": ms(p50),
                "p99_ms": ms(p99),
                "lookahead_ms": own[n] * 1e3,
                "counters": st.op.counters(),
                "restarts": st.restarts,
            }  # fmt: skip
        sinks = {}
        for n, st in self._nodes.items():
            if st.e2e is not None:
                p50, p99 = _p50_p99(st.e2e)
                sinks[n] = {
                    "e2e_p50_ms": ms(p50),
                    "e2e_p99_ms": ms(p99),
                    "algorithmic_latency_ms": algo[n] * 1e3,
                }  # fmt: skip
        edges = {}
        for st in self._nodes.values():
            for _, q in st.inputs:
                edges[q.label] = {
                    "size": q.size, "policy": q.policy, "dropped": q.dropped,
                    "max_depth": q.max_depth,
                }  # fmt: skip
        stopped = "error" if self._error else (self._stop_reason or "eos")
        return RunReport(
            self.graph.name, duration, nodes, sinks, edges, stopped,
            str(self._error) if self._error else None,
        )  # fmt: skip


def _p50_p99(samples: Samples) -> tuple[float | None, float | None]:
    """`Samples.percentile` at 50 and 99 in one pass."""
    if not samples.values:
        return None, None
    p50, p99 = np.percentile(np.frombuffer(samples.values, dtype=np.float64), (50, 99))
    return float(p50), float(p99)


def _hint(have: Format, need: Format, port: str, producer: Operator) -> str:
    if (
        have.rate is not None and need.rate is not None and abs(have.rate - need.rate) > 1e-6
        and issubclass(producer.outputs[port].type, Audio)
    ):  # fmt: skip
        return "; put a resample node between them"
    return ""


async def run_graph(graph: Graph, metrics: GraphMetrics | None = None) -> RunReport:
    """Run ``graph`` to completion in the current event loop."""
    return await Runner(graph, metrics).run()
