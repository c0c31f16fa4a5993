"""``audio2anim serve --workers K``: K server processes on one host, sharing its ports.

One process runs every session's per-session work (resampling, the graph's streaming
operators, JSON, socket I/O) on one event loop, so one core bounds how many sessions it serves
however fast its models are. With ``--workers K`` the command starts K worker processes
(multiprocessing's spawn context: each a fresh interpreter, safe with CUDA), each a whole
`audio2anim.serve.server.Server` with its own batchers and metrics, all listening on the same
WebSocket port (and gRPC port) with SO_REUSEPORT, so the kernel spreads the connections over
them. All take the one token this process makes (or ``--token``). With ``--shared-models`` (the
default with ``--device cuda``) the batched models run in one model host process that this
process starts first (`audio2anim.serve.model_host`); otherwise each worker has its own (with
``--device cuda``, each its own CUDA context on the one GPU). ``--max-sessions`` is per worker.
``--metrics-port P``: worker i serves its own /metrics on P + i, the model host on P + K (0:
each on any free port, each printed).

This process reserves the ports (binding them with SO_REUSEPORT, so that port 0 becomes one
port for all), starts the model host and waits for its models, starts the workers, prints the
URL once all are listening, forwards SIGINT and SIGTERM to the workers, waits for them to stop,
then stops the host. A worker (or the host) that fails to start, or exits before it is told
to, stops the others; the command then exits non-zero with one line naming it. A
worker whose parent goes away stops itself (it watches its end of a pipe to the parent).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import socket
import sys
import threading

STOP_TIMEOUT_S = 60.0  # a worker's sessions drain within `Server.stop`'s grace; then SIGKILL


def reserve_port(host: str, port: int) -> tuple[socket.socket, int]:
    """Bind ``host:port`` (0: any free port) with SO_REUSEPORT, not listening → (the socket,
    the port): the workers bind the same port while it is held; it takes no connections."""
    family, kind, proto, _, where = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
    s = socket.socket(family, kind, proto)
    try:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        s.bind(where)
    except OSError as e:
        s.close()
        raise OSError(f"cannot listen on {host}:{port}: {e.strerror or e}") from None
    return s, s.getsockname()[1]


def serve_workers(args: argparse.Namespace, serve) -> int:
    """Run ``audio2anim serve`` as ``args.workers`` processes (the module docstring), each
    ``asyncio.run(serve(args, worker=(index, ready, error)))`` (``serve``: a module-level
    coroutine function, `audio2anim.serve.cli` ``_serve``, pickled by name for spawn)."""
    import multiprocessing
    from multiprocessing.connection import wait

    from audio2anim.graph.netguard import new_token

    token = args.token or new_token()
    reserved = []
    try:
        sock, port = reserve_port(args.host, args.port)
        reserved.append(sock)
        grpc_port = None
        if args.grpc_port is not None:
            sock, grpc_port = reserve_port(args.host, args.grpc_port)
            reserved.append(sock)
    except OSError as e:
        for s in reserved:
            s.close()
        print(f"error: audio2anim serve: {e}", file=sys.stderr)
        return 2
    received: list[int] = []
    workers: list = []

    def forward(sig, _frame) -> None:
        received.append(sig)
        for p in workers:
            if p.is_alive():
                with contextlib.suppress(OSError):
                    os.kill(p.pid, sig)

    previous = {sig: signal.signal(sig, forward) for sig in (signal.SIGINT, signal.SIGTERM)}
    ctx = multiprocessing.get_context("spawn")
    conns = []
    host = None
    try:
        models = None
        if args.shared_models:
            host, models = _start_model_host(ctx, args, received, wait)
            if host is None:
                return models
        for i in range(args.workers):
            metrics_port = args.metrics_port
            if metrics_port:
                metrics_port += i
            wargs = argparse.Namespace(**{
                **vars(args), "port": port, "grpc_port": grpc_port, "token": token,
                "metrics_port": metrics_port, "workers": 1, "models": models,
            })  # fmt: skip
            mine, theirs = ctx.Pipe()
            p = ctx.Process(target=_worker, args=(i, wargs, theirs, serve), name=f"worker-{i}")
            p.start()
            theirs.close()
            workers.append(p)
            conns.append(mine)
        code = _supervise(workers, conns, received, reserved, wait, host)
    finally:
        for s in reserved:
            s.close()
        _stop(workers)
        if host is not None:  # after the workers: their sessions drain through it
            _stop([host])
            if host.exitcode == 0:
                print(f"model host: stopped (pid {host.pid})", file=sys.stderr, flush=True)
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    return code


def _start_model_host(ctx, args, received, wait):
    """Start the model host (`audio2anim.serve.model_host`) and wait until its models are
    loaded → (the process, (socket path, key)) for the workers, or (None, the exit code) after
    its one error line."""
    from .model_host import host_address, host_main

    address, authkey = host_address()
    mine, theirs = ctx.Pipe()
    host = ctx.Process(target=host_main, args=(args, address, authkey, theirs), name="model-host")
    host.start()
    theirs.close()
    while not received:
        if not wait([mine, host.sentinel], timeout=0.5):
            continue
        try:
            message = mine.recv()
        except (EOFError, OSError):
            host.join()
            message = ("error", f"model host (pid {host.pid}) failed to start: exit code "
                                f"{host.exitcode}")  # fmt: skip
        if message[0] == "ready":
            print(f"model host: pid {host.pid}, models on {args.device}", file=sys.stderr)
            host.conn = mine  # held open: the host stops itself when this process goes away
            return host, (address, authkey)
        print(f"error: {message[1]}", file=sys.stderr, flush=True)
        _stop([host])
        return None, 2
    _stop([host])
    return None, 128 + int(received[0])


def _supervise(workers, conns, received, reserved, wait, host=None) -> int:
    """Wait for the workers to start, then for a signal or a worker's (or the model host's)
    exit → the exit code."""
    starting = dict(enumerate(conns))
    urls: dict[int, tuple[str, str]] = {}
    sentinels = {p.sentinel: i for i, p in enumerate(workers)}
    if host is not None:
        sentinels[host.sentinel] = -1
    while not received:
        ready = wait([*sentinels, *starting.values()], timeout=0.5)
        # messages first: a worker that failed to start says why, then exits
        for obj in sorted(ready, key=lambda o: o in sentinels):
            if obj in sentinels:
                i = sentinels[obj]
                if received:
                    break
                p = host if i < 0 else workers[i]
                p.join()
                who = "the model host" if i < 0 else f"worker {i}"
                what = "failed to start" if i in starting else "stopped"
                print(f"error: {who} (pid {p.pid}) {what}: exit code {p.exitcode}; "
                      "stopping the others", file=sys.stderr, flush=True)  # fmt: skip
                return 1
            i = next(k for k, c in starting.items() if c is obj)
            del starting[i]
            try:
                message = obj.recv()
            except (EOFError, OSError):
                continue  # it is exiting: its sentinel says how
            if message[0] == "error":
                print(f"error: worker {i}: {message[1]}", file=sys.stderr, flush=True)
                return 2
            urls[i] = message[1], message[2]
            if len(urls) == len(workers):
                for s in reserved:
                    s.close()
                pids = ", ".join(str(p.pid) for p in workers)
                print(f"workers: {len(workers)} processes (pids {pids})", file=sys.stderr)
                url, grpc_url = urls[0]
                print(f"audio2anim serve: {url}", file=sys.stderr, flush=True)
                if grpc_url:
                    print(f"audio2anim serve (gRPC): {grpc_url}", file=sys.stderr, flush=True)
    sig = received[0]
    print(f"{signal.Signals(sig).name}: stopping {len(workers)} workers", file=sys.stderr,
          flush=True)  # fmt: skip
    for p in workers:
        p.join(STOP_TIMEOUT_S)
    return 128 + int(sig)


def _stop(workers) -> None:
    """SIGTERM the workers still running, wait for them, SIGKILL any that do not stop."""
    for p in workers:
        if p.is_alive():
            with contextlib.suppress(OSError):
                os.kill(p.pid, signal.SIGTERM)
    for p in workers:
        p.join(STOP_TIMEOUT_S)
        if p.is_alive():
            p.kill()
            p.join()


def _worker(index: int, args: argparse.Namespace, conn, serve) -> None:
    """One worker process: ``serve`` with the shared ports."""
    import asyncio

    def early_exit(sig, _frame):  # before the server's own handlers are in place
        raise SystemExit(128 + sig)

    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, early_exit)

    def watch_parent() -> None:
        with contextlib.suppress(EOFError, OSError):
            conn.recv()  # the parent sends nothing: this returns when it has gone
        os.kill(os.getpid(), signal.SIGTERM)

    def ready(url: str, grpc_url: str) -> None:
        conn.send(("ready", url, grpc_url))
        threading.Thread(target=watch_parent, daemon=True).start()

    def error(line: str) -> None:
        conn.send(("error", line))

    sys.exit(asyncio.run(serve(args, worker=(index, ready, error))))
