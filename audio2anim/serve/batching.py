"""Cross-session model batching: one call of a model for the chunks of many sessions.

`audio2anim serve --batch-window-ms W` gives every session a `SessionBatching`; its heavy
operators (the viseme front end, the predictors, the live Whisper encoder) call their model
through it instead of directly (`audio2anim.models.model_call`). Each model
has one `ModelBatcher` per process, with a worker thread:

- a session's call (``feeds``: input name → array with a batch of one, or a few) waits in the
  batcher's queue. It is awaited (``acall``: the operators then run on the event loop, and
  the batch's results reach the loop in one hand-over, whatever its size), or made from a
  thread that blocks until its result is there (``__call__``: a thread-pool operator, a
  set-up's warm-up);
- the worker takes the first waiting call, then waits until every session holding a slot on
  this batcher has called or ``window_ms`` has passed since that first call, whichever comes
  first (calls that queue while a batch runs join the next one);
- `ModelBatcher.run_batch` groups the calls by their shapes (chunks of different lengths, and
  a GRU over padding is not exact, so nothing is padded), stacks each group along the batch
  axis of each input (``axes``; 0 unless named), runs the model once per group and hands each
  caller its slice of every output.

The batcher keeps no state of any session: per-session state (GRU state, conv history, the
autoregressive predictor's previous outputs) is an input and an output of the model call, and
stays in the session's stream object. A session holds one slot per batcher it uses, opened
when its operator is set up; `SessionBatching.close` frees them all at once (the server calls
it as the session ends or its client disconnects), so no batch waits for a session that is
gone. A call in flight when its session stops still gets its answer; the worker never waits
on a caller. `run_batch` is a plain synchronous function of the inputs, so another host (a
Ray Serve deployment) can wrap it as its own batched handler.

Metrics (`audio2anim.graph.metrics.ServeMetrics`, label ``model``): the batch sizes
(``audio2anim_batch_size``), each call's wait in the queue before its batch ran
(``audio2anim_batch_queue_wait_seconds``) and each batch's run time
(``audio2anim_batch_run_seconds``).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import dataclasses
import threading
import time
from collections.abc import Callable

import numpy as np

from audio2anim.graph.metrics import ServeMetrics
from audio2anim.models.model_call import ModelCall

Feeds = dict[str, np.ndarray]

# batches of a remote model (`BatchingService` ``remote``) that may be on their way at once: a
# session calls each model once per hop and waits for the answer, so with one in flight its
# call waits for the batch before it to come back, then for its own: on one H100 at 100
# speakers that was as long as the live Whisper graph's 40 ms hop
REMOTE_IN_FLIGHT = 2


@dataclasses.dataclass
class _Request:
    feeds: Feeds
    queued: float
    future: concurrent.futures.Future | asyncio.Future
    loop: asyncio.AbstractEventLoop | None = None  # an awaited call's


def _settle(results: list[tuple[asyncio.Future, Feeds | None, BaseException | None]]) -> None:
    """On the event loop: hand the awaited calls of one batch their results."""
    for future, out, error in results:
        if future.done():  # its caller was cancelled (the session stopped)
            continue
        if error is not None:
            future.set_exception(error)
        else:
            future.set_result(out)


def _signature(feeds: Feeds, axes: dict[str, int]) -> tuple:
    """What must match for calls to stack: each input's name, dtype and non-batch shape."""
    sig = []
    for name in sorted(feeds):
        a = feeds[name]
        shape = list(a.shape)
        del shape[axes.get(name, 0)]
        sig.append((name, a.dtype.str, tuple(shape)))
    return tuple(sig)


class ModelBatcher:
    """One model shared by the sessions of a process: stacks their calls (module docstring).

    ``run``: the model, feeds → outputs by name, any batch size. ``axes``: the batch axis of
    an input or output by name (0 unless named). ``window_ms``: the longest a call waits for
    others. ``max_batch``: the most calls stacked in one model call. ``in_flight``: how many
    batches may run at once (a thread each); more than one where a batch's time is mostly a
    wait on another process (the model host), so the calls that queue meanwhile need not wait
    for it to return."""

    def __init__(
        self,
        name: str,
        run: ModelCall,
        axes: dict[str, int] | None = None,
        *,
        window_ms: float = 2.0,
        max_batch: int = 512,
        metrics: ServeMetrics | None = None,
        in_flight: int = 1,
    ) -> None:
        if window_ms < 0:
            raise ValueError(f"batcher {name}: window_ms must be ≥ 0, not {window_ms}")
        if in_flight < 1:
            raise ValueError(f"batcher {name}: in_flight must be ≥ 1, not {in_flight}")
        self.name, self.run, self.axes = name, run, dict(axes or {})
        self.window = window_ms / 1000.0
        self.max_batch = max_batch
        self.slots = 0  # callers that will call again (sessions holding a slot)
        self.batches = self.calls = 0
        self.example: Feeds | None = None  # the first call's inputs (`warm`)
        self._pending: list[_Request] = []
        self._cv = threading.Condition()
        self._closed = False
        self._size = self._wait = self._run = None
        if metrics is not None:
            self._size = metrics.batch_size.labels(name)
            self._wait = metrics.batch_wait.labels(name)
            self._run = metrics.batch_run.labels(name)
        self._threads = [
            threading.Thread(target=self._work, name=f"a2a-batch-{name}", daemon=True)
            for _ in range(in_flight)
        ]
        for t in self._threads:
            t.start()

    # -- the batch: a plain function of the inputs -------------------------------------------

    def run_batch(self, inputs: list[Feeds]) -> list[Feeds]:
        """Run the model once per group of same-shaped calls; each call's outputs, in order.
        A ``run`` with a ``many`` method (a model in another process) gets every group in one
        call: one round trip per batch, not one per shape."""
        if self.example is None and inputs:
            self.example = inputs[0]
        groups: dict[tuple, list[int]] = {}
        for i, feeds in enumerate(inputs):
            groups.setdefault(_signature(feeds, self.axes), []).append(i)
        calls: list[tuple[list[int], Feeds, list[int] | None]] = []  # members, feeds, sizes
        for members in groups.values():
            if self._size is not None:
                self._size.observe(len(members))
            if len(members) == 1:
                calls.append((members, inputs[members[0]], None))
                continue
            first = inputs[members[0]]
            lead = next(iter(first))  # the batch sizes are read off one input
            sizes = [inputs[i][lead].shape[self.axes.get(lead, 0)] for i in members]
            stacked = {
                name: np.concatenate([inputs[i][name] for i in members], self.axes.get(name, 0))
                for name in first
            }
            calls.append((members, stacked, sizes))
        many = getattr(self.run, "many", None)
        if many is not None and len(calls) > 1:
            results = many([feeds for _, feeds, _ in calls])
        else:
            results = [self.run(feeds) for _, feeds, _ in calls]
        outs: list[Feeds] = [{}] * len(inputs)
        for (members, _, sizes), result in zip(calls, results, strict=True):
            if sizes is None:
                outs[members[0]] = result
                continue
            cuts = np.cumsum(sizes)[:-1]
            parts = {
                name: np.split(y, cuts, axis=self.axes.get(name, 0)) for name, y in result.items()
            }
            for k, i in enumerate(members):
                outs[i] = {name: p[k] for name, p in parts.items()}
        return outs

    def warm(self, rows: int) -> int:
        """Run the model once at every batch size 1 … ``rows``, on copies of its first call's
        inputs → the sizes run (0 before any call). A GPU prepares each new input shape on
        first sight (kernels loaded, algorithms chosen); warmed, the sizes a batch of many
        sessions takes cost no such stall while sessions wait for it."""
        if self.example is None:
            return 0
        one = {
            name: np.take(a, [0], axis=self.axes.get(name, 0)) for name, a in self.example.items()
        }
        for n in range(1, rows + 1):
            self.run({name: np.repeat(a, n, self.axes.get(name, 0)) for name, a in one.items()})
        return rows

    @property
    def waiting(self) -> int:
        """Calls in the queue now (not yet in a batch)."""
        return len(self._pending)

    # -- callers -----------------------------------------------------------------------------

    def call(self, feeds: Feeds) -> Feeds:
        """One caller's model call, batched with the others waiting (blocks until done)."""
        return self.submit([feeds])[0].result()

    def submit(self, calls: list[Feeds]) -> list[concurrent.futures.Future]:
        """Queue several calls at once (they join one batch) → a future of each one's outputs."""
        now = time.monotonic()
        reqs = [_Request(feeds, now, concurrent.futures.Future()) for feeds in calls]
        self._queue(*reqs)
        return [r.future for r in reqs]

    async def acall(self, feeds: Feeds) -> Feeds:
        """`call`, awaited on the running event loop."""
        loop = asyncio.get_running_loop()
        req = _Request(feeds, time.monotonic(), loop.create_future(), loop)
        self._queue(req)
        return await req.future

    def _queue(self, *reqs: _Request) -> None:
        with self._cv:
            if self._closed:
                raise RuntimeError(f"batcher {self.name}: closed")
            self._pending.extend(reqs)
            self._cv.notify_all()

    def open_slot(self) -> None:
        with self._cv:
            self.slots += 1

    def release_slot(self) -> None:
        with self._cv:
            self.slots -= 1
            self._cv.notify_all()  # the worker may be waiting for this caller

    def close(self) -> None:
        """Stop the worker after the calls already queued."""
        with self._cv:
            self._closed = True
            self._cv.notify_all()
        for t in self._threads:
            t.join(timeout=10)

    def _work(self) -> None:
        cv = self._cv
        while True:
            with cv:
                while True:
                    while not self._pending and not self._closed:
                        cv.wait()
                    if not self._pending:
                        return  # closed
                    deadline = self._pending[0].queued + self.window
                    while not self._closed and len(self._pending) < min(self.slots, self.max_batch):
                        left = deadline - time.monotonic()
                        if left <= 0:
                            break
                        cv.wait(left)
                    if self._pending:  # (with in_flight > 1 another thread may have taken them)
                        break
                batch = self._pending[: self.max_batch]
                del self._pending[: self.max_batch]
                self.batches += 1
                self.calls += len(batch)
            now = time.monotonic()
            if self._wait is not None:
                for r in batch:
                    self._wait.observe(now - r.queued)
            error = None
            try:
                outs = self.run_batch([r.feeds for r in batch])
            except Exception as e:  # noqa: BLE001 - each caller gets the model's error
                outs, error = [None] * len(batch), e
            if self._run is not None:
                self._run.observe(time.monotonic() - now)
            loops: dict[asyncio.AbstractEventLoop, list] = {}
            for r, out in zip(batch, outs, strict=True):
                if r.loop is not None:
                    loops.setdefault(r.loop, []).append((r.future, out, error))
                elif error is not None:
                    r.future.set_exception(error)
                else:
                    r.future.set_result(out)
            for loop, results in loops.items():
                with contextlib.suppress(RuntimeError):  # a loop that has closed
                    loop.call_soon_threadsafe(_settle, results)


class BatchCaller:
    """One session's caller of a `ModelBatcher` (a `ModelCall`), holding a slot until closed."""

    def __init__(self, batcher: ModelBatcher) -> None:
        self.batcher = batcher
        self.closed = False
        batcher.open_slot()

    def __call__(self, feeds: Feeds) -> Feeds:
        return self.batcher.call(feeds)

    async def acall(self, feeds: Feeds) -> Feeds:
        return await self.batcher.acall(feeds)

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            self.batcher.release_slot()


class BatchingService:
    """The model batchers of one process, made on first use (keyed by model). ``remote``:
    (graph name, model key) → the `ModelCall` a batcher runs instead of building the model
    here (`audio2anim.serve.model_host`: the models of ``serve --workers K`` in one process).
    ``cpu_models``: the labels of models that run on the CPU whatever ``device`` says (their
    ONNX Runtime export, for the window predictors)."""

    def __init__(
        self,
        window_ms: float = 2.0,
        device: str = "cpu",
        metrics: ServeMetrics | None = None,
        max_batch: int = 512,
        remote: Callable[[str | None, str], ModelCall] | None = None,
        cpu_models: tuple[str, ...] = (),
    ) -> None:
        if device not in ("cpu", "cuda"):
            raise ValueError(f"batching: device must be cpu or cuda, not {device!r}")
        self.window_ms, self.device, self.metrics = window_ms, device, metrics
        self.max_batch, self.remote = max_batch, remote
        self.cpu_models = frozenset(cpu_models)
        self.batchers: dict[str, ModelBatcher] = {}
        self._lock = threading.Lock()

    def batcher(
        self,
        key: str,
        make_run: Callable[[str], ModelCall],
        axes: dict[str, int],
        graph: str | None = None,
    ) -> ModelBatcher:
        """The batcher of model ``key`` (``label@identity``) of the shipped graph ``graph`` (None:
        the server's own); ``make_run(device)`` (or ``remote``) the first time."""
        with self._lock:
            b = self.batchers.get(key)
            if b is None:
                label = key.split("@", 1)[0]
                device = "cpu" if label in self.cpu_models else self.device
                run = make_run(device) if self.remote is None else self.remote(graph, key)
                b = self.batchers[key] = ModelBatcher(
                    label, run, axes,
                    window_ms=self.window_ms, max_batch=self.max_batch, metrics=self.metrics,
                    in_flight=1 if self.remote is None else REMOTE_IN_FLIGHT,
                )  # fmt: skip
                if self.metrics is not None:  # the calls waiting in every batcher of the label
                    self.metrics.batch_depth.labels(b.name).set_function(
                        lambda name=b.name: self.waiting(name)
                    )
            return b

    def warm(self, rows: int) -> None:
        """`ModelBatcher.warm` for every model run here (not those of ``remote``)."""
        if self.remote is None:
            for b in list(self.batchers.values()):
                b.warm(rows)

    def waiting(self, label: str) -> int:
        """Calls waiting in the queues of this service's batchers of model ``label`` (several
        when graphs of one server hold models of the same kind)."""
        return sum(b.waiting for b in list(self.batchers.values()) if b.name == label)

    def session(self, graph: str | None = None) -> SessionBatching:
        """A session's access (a `audio2anim.models.model_call.ModelBatching`) for its graph:
        the name of a shipped graph, None for the server's own."""
        return SessionBatching(self, graph)

    def close(self) -> None:
        with self._lock:
            batchers, self.batchers = list(self.batchers.values()), {}
        for b in batchers:
            b.close()


class SessionBatching:
    """One session's callers; `close` frees its slot in every batcher at once."""

    def __init__(self, service: BatchingService, graph: str | None = None) -> None:
        self.service, self.graph = service, graph
        self.callers: list[BatchCaller] = []
        self.closed = False

    def caller(
        self, key: str, make_run: Callable[[str], ModelCall], axes: dict[str, int]
    ) -> ModelCall:
        c = BatchCaller(self.service.batcher(key, make_run, axes, self.graph))
        if self.closed:
            c.close()  # a late operator set-up: it still runs, without holding a slot
        self.callers.append(c)
        return c

    def close(self) -> None:
        self.closed = True
        for c in self.callers:
            c.close()
