"""One process that runs the batched models for all the workers of ``audio2anim serve --workers K``.

With ``--shared-models`` (the default with ``--device cuda`` and more than one worker) the
command starts a *model host* before the workers: a process that loads the method graph's heavy
models once (on ``--device``) and answers the model calls of every worker. A worker still
gathers its own sessions' calls (its `audio2anim.serve.batching.ModelBatcher`, within
``--batch-window-ms``), and sends each stacked call here instead of running it; the host stacks
the calls of all workers that arrive while its previous batch runs (it waits for none: each
worker has already waited its window) and runs them as one batch. So the GPU sees a few large
batches from one CUDA context instead of many small ones from K contexts, while the per-session
work (sockets, resampling, log-mel, smoothing, JSON) is spread over the K workers.

The wire: one `multiprocessing.connection` per worker model batcher over a Unix socket in a
private temporary folder, with a random key the command hands the workers (never on a command
line). A request is ``(graph name or None, model key, [feeds, …])`` (a worker batch's calls, one
per shape, queued here at once so they join one batch); the answer ``("ok", [outputs, …])`` or
``("error", one line)``. Keys name models as the sessions' operators do
(`audio2anim.models.model_call`), so the host finds a model by loading the graph that uses it
(its warm-up opens the batchers); a call of a graph it has not loaded yet loads that graph first.

Metrics: the host's batch sizes and queue waits (``audio2anim_batch_size``,
``audio2anim_batch_queue_wait_seconds``) on its own /metrics at ``--metrics-port`` + K.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import os
import secrets
import signal
import socket
import sys
import tempfile
import threading
from multiprocessing import AuthenticationError
from multiprocessing.connection import Client, Listener
from pathlib import Path

from audio2anim.models.model_call import ModelCall


def host_address() -> tuple[str, bytes]:
    """A new Unix socket path in a private (0700) folder and a random key → (path, key)."""
    folder = tempfile.mkdtemp(prefix="audio2anim-models-")
    return str(Path(folder) / "models.sock"), secrets.token_bytes(32)


class RemoteModel:
    """A worker's `ModelCall` of one model in the host: blocks until the host answers. Calls
    may come from several threads at once (a model batcher with more than one batch in
    flight): each takes an idle connection, or opens one, and gives it back after the answer.
    ``many`` sends several calls (a worker batch's groups of different shapes) in one message.
    ``address``: a Unix socket path or a ``(host, port)`` (TCP), or a list of them (hosts that
    hold the same models, e.g. Ray model replicas): each call goes to the next in turn.
    ``refresh``: () → the hosts' addresses now; when a host cannot be reached, the caller asks
    it and sends the call once more (a model call is a pure function of its inputs, so a call
    that was lost with its host may run again)."""

    def __init__(self, address, authkey: bytes, graph: str | None, key: str, refresh=None) -> None:
        self.authkey, self.graph, self.key, self.refresh = authkey, graph, key, refresh
        self._lock = threading.Lock()
        self._idle: dict = {}
        self._use(address)

    def _use(self, address) -> None:
        addresses = address if isinstance(address, list) else [address]
        addresses = [tuple(a) if isinstance(a, (list, tuple)) else a for a in addresses]
        with self._lock:
            gone = [c for a, conns in self._idle.items() if a not in addresses for c in conns]
            self.addresses = addresses
            self._idle = {a: self._idle.get(a, []) for a in addresses}
            self._turn = itertools.cycle(addresses)
        for conn in gone:
            with contextlib.suppress(OSError):
                conn.close()

    def __call__(self, feeds: dict) -> dict:
        return self.many([feeds])[0]

    def many(self, calls: list[dict]) -> list[dict]:
        try:
            status, value = self._send(calls)
        except ConnectionError as e:
            if self.refresh is None:
                raise RuntimeError(f"model host: connection lost ({e})") from None
            self._use(self.refresh())
            try:
                status, value = self._send(calls)
            except ConnectionError as e:
                raise RuntimeError(f"model host: connection lost ({e})") from None
        if status != "ok":
            raise RuntimeError(f"model host: {value}")
        return value

    def _send(self, calls: list[dict]) -> tuple[str, object]:
        with self._lock:
            address = next(self._turn)
            idle = self._idle[address]
            conn = idle.pop() if idle else None
        try:
            if conn is None:
                conn = Client(address, authkey=self.authkey)
                if not isinstance(address, str):
                    no_delay(conn)
            conn.send((self.graph, self.key, calls))
            answer = conn.recv()
        except (EOFError, OSError) as e:
            if conn is not None:
                with contextlib.suppress(OSError):
                    conn.close()
            raise ConnectionError(str(e) or type(e).__name__) from None
        with self._lock:
            if address in self._idle:
                self._idle[address].append(conn)
            else:  # the addresses changed meanwhile
                conn.close()
        return answer


def no_delay(conn) -> None:
    """A TCP connection sends each message at once: a message over 16 KB goes out in two
    writes, and Nagle's algorithm holds the second until the first is acknowledged, which a
    delayed ACK makes 40 ms or more (measured: 48 ms a call of 20 KB, 4 ms without it)."""
    sock = socket.socket(fileno=os.dup(conn.fileno()))
    try:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    finally:
        sock.close()


def remote_models(address, authkey: bytes):
    """The factory `audio2anim.serve.batching.BatchingService` takes as ``remote``: (graph,
    key) → a `RemoteModel`."""

    def make(graph: str | None, key: str) -> ModelCall:
        return RemoteModel(address, authkey, graph, key)

    return make


class ModelHost:
    """The host's side: ``server`` (a `Server` that never listens) holds the models in its
    batching service; each connection to ``address`` (a Unix socket path, or ``(host, port)``
    for TCP, port 0: any free one) is served on a thread of its own. ``load(graph)`` loads a
    graph the server has not loaded yet (a worker's session of another shipped graph)."""

    def __init__(self, server, address, authkey: bytes, load) -> None:
        self.server, self.address, self.authkey, self._load = server, address, authkey, load
        self.listener: Listener | None = None
        self._closed = False
        self._served: dict[str, list[int]] = {}  # model label → [calls, requests]
        self._count = threading.Lock()

    def listen(self):
        """Listen → the address listened on (with the port TCP gave)."""
        self.listener = Listener(self.address, authkey=self.authkey)
        self.address = self.listener.address
        if isinstance(self.address, str):
            os.chmod(self.address, 0o600)
        return self.address

    def serve_forever(self) -> None:
        """Accept worker connections until the listener is closed."""
        while True:
            try:
                conn = self.listener.accept()
            except (AuthenticationError, EOFError, ConnectionError):
                continue  # a peer without the key, or gone during the handshake: refused
            except OSError:
                if self._closed:
                    return  # stopping
                continue
            if not isinstance(self.address, str):
                no_delay(conn)
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn) -> None:
        batchers = self.server.batching.batchers
        with contextlib.closing(conn):
            while True:
                try:
                    graph, key, calls = conn.recv()
                except (EOFError, OSError):
                    return  # the worker closed it
                try:
                    if key not in batchers:
                        self._load(graph)
                    if key not in batchers:
                        raise LookupError(
                            f"graph {graph or self.server.graph_file!r} has no model {key!r}"
                        )
                    # queued together, they join one batch of the host's batcher
                    futures = batchers[key].submit(calls)
                    answer = ("ok", [f.result() for f in futures])
                    with self._count:
                        served = self._served.setdefault(batchers[key].name, [0, 0])
                        served[0] += len(calls)
                        served[1] += 1
                except Exception as e:  # noqa: BLE001 - the worker's session reports it
                    answer = ("error", f"{type(e).__name__}: {str(e).splitlines()[0]}")
                try:
                    conn.send(answer)
                except (EOFError, OSError):
                    return

    def served(self) -> dict[str, tuple[int, int]]:
        """What this host has answered: model label → (calls, requests)."""
        with self._count:
            return {name: (calls, n) for name, (calls, n) in self._served.items()}

    @property
    def calls(self) -> int:
        """Calls answered, all models together."""
        return sum(calls for calls, _ in self.served().values())

    def close(self) -> None:
        """Stop listening (the connections being served end with their workers)."""
        self._closed = True
        if self.listener is not None:
            with contextlib.suppress(OSError):
                self.listener.close()
        if isinstance(self.address, str):
            with contextlib.suppress(OSError):
                os.unlink(self.address)
                os.rmdir(os.path.dirname(self.address))


def host_main(args: argparse.Namespace, address: str, authkey: bytes, conn) -> None:
    """The model host process (multiprocessing spawn target): load, say ``("ready",)`` or
    ``("error", line)`` on ``conn``, serve until SIGTERM (SIGINT is the workers') or until the parent goes away."""
    from audio2anim.graph.metrics import ServeMetrics

    from .server import Server, settle_heap

    stop = threading.Event()

    # SIGTERM from the command once its workers have drained; a terminal's Ctrl-C reaches the
    # whole process group, and the workers' sessions still need the models while they drain
    signal.signal(signal.SIGTERM, lambda sig, frame: stop.set())
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    metrics = ServeMetrics()
    # a window is only the warm-up's: the host's batchers hold no slots, so a batch takes
    # what has arrived
    server = Server(
        graph=args.graph, overrides=tuple(args.overrides), metrics=metrics,
        batch_window_ms=max(args.batch_window_ms, 1.0), device=args.device,
        log=lambda line: None, warm_batches=args.warm_batches, cpu_models=args.cpu_models,
    )  # fmt: skip
    loop = asyncio.new_event_loop()  # the server's: graphs load there
    threading.Thread(target=loop.run_forever, daemon=True).start()

    def load(graph: str | None) -> None:
        asyncio.run_coroutine_threadsafe(server.method(graph), loop).result()

    host = ModelHost(server, address, authkey, load)
    try:
        load(None)
        host.listen()
        settle_heap()
    except Exception as e:  # noqa: BLE001 - the parent prints the one line and stops
        with contextlib.suppress(OSError):
            conn.send(("error", f"model host: {str(e).splitlines()[0]}"))
        host.close()
        server.batching.close()
        sys.exit(2)
    http = None
    if args.metrics_port is not None:
        from audio2anim.graph.metrics import serve_metrics

        port = args.metrics_port + args.workers if args.metrics_port else 0
        try:
            http = serve_metrics(args.metrics_host, port, metrics.registry)
            print(f"model host metrics: http://{args.metrics_host}:{http.server_address[1]}"
                  "/metrics", file=sys.stderr, flush=True)  # fmt: skip
        except OSError as e:
            print(f"model host: --metrics-port {port}: {e.strerror}", file=sys.stderr)

    def watch_parent() -> None:
        with contextlib.suppress(EOFError, OSError):
            conn.recv()  # the parent sends nothing: this returns when it has gone
        stop.set()

    threading.Thread(target=host.serve_forever, daemon=True).start()
    conn.send(("ready",))
    threading.Thread(target=watch_parent, daemon=True).start()
    while not stop.wait(0.5):
        pass
    host.close()
    server.batching.close()
    loop.call_soon_threadsafe(loop.stop)
    if http is not None:
        http.shutdown()
        http.server_close()
    sys.stderr.write(f"model host: {host.calls} calls answered\n")
    sys.exit(0)
