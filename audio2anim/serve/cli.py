"""``audio2anim serve`` (the streaming service) and ``audio2anim stream`` (its client).

    audio2anim serve [--port 8770] [--grpc-port 8771] [--graph graphs/viseme_cnn.yaml]
    audio2anim stream speech.wav --server ws://127.0.0.1:8770/v1/stream --token T -o out.csv
    audio2anim stream speech.wav --server grpc://127.0.0.1:8771 --token T -o out.csv

``serve`` prints the URL with its token (random per run unless ``--token``), and with
``--grpc-port`` the gRPC address (the same token goes in the call's metadata), and runs until
SIGINT/SIGTERM, then stops every session (each graph drains and closes) and prints how many
sessions ended how. ``stream`` sends a file paced in real time (``--fast``: as fast as the
server takes it) and writes the animation in any format ``animate`` writes (by extension, or
``--format``), atomically, as ``animate`` does.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

# the batched models a service may keep on the CPU under ``device="cuda"`` (``--cpu-models``): the
# window predictors (their ONNX export) and the live Whisper encoder (ONNX or torch, as its graph
# says); the viseme front end and the autoregressive predictor run on the CPU anyway
DEVICE_MODELS = ("viseme-mlp", "viseme-cnn", "w2v-cnn", "w2v-attention", "whisper-encoder")
# kept on the CPU by default: on one H100 the viseme CNN's batched call took 0.4 ms in ONNX
# Runtime, 1.2 ms in torch on the GPU and about 10 ms at each batch shape the GPU had not seen
# yet, which stalled the start of 300 sessions (docs/experiments.md)
DEFAULT_CPU_MODELS = "viseme-mlp,viseme-cnn,w2v-cnn,w2v-attention"

DEFAULT_BATCH_WINDOW_MS = 5.0  # bench/serve.py on the 2-core CPU: docs/performance.md


def add_commands(sub: argparse._SubParsersAction) -> None:
    from audio2anim.graph.cli import add_checkpoints_argument

    p = sub.add_parser(
        "serve", help="WebSocket/gRPC service: many speakers stream audio in, animation out"
    )
    p.add_argument("--host", default="127.0.0.1", help="address (not loopback: a warning)")
    p.add_argument("--port", type=int, default=8770, help="port (0 = any free one)")
    p.add_argument(
        "--grpc-port", type=int, metavar="N",
        help="also serve gRPC (audio2anim.v1.AnimationService) on this port, same --host "
        "(0 = any free one; default: no gRPC; not with --ray)",
    )  # fmt: skip
    p.add_argument("--graph", default="graphs/viseme_cnn.yaml", help="the default method graph")
    p.add_argument(
        "--set", dest="overrides", action="append", default=[], metavar="NODE.PARAM=VALUE",
        help="override a node parameter of --graph (repeatable)",
    )  # fmt: skip
    p.add_argument("--token", help="access token (default: a new random one per run)")
    p.add_argument(
        "--hosts", action="append", default=[], metavar="NAME",
        help="another host name the Host check accepts (repeatable)",
    )  # fmt: skip
    p.add_argument("--max-sessions", type=int, default=32, help="concurrent sessions (default 32)")
    p.add_argument(
        "--max-chunk", type=int, default=65536, metavar="BYTES",
        help="largest audio chunk a client may send (default 65536 bytes)",
    )  # fmt: skip
    p.add_argument(
        "--queue", type=int, default=50, metavar="FRAMES",
        help="frames queued per session for its client before the oldest is dropped (default 50)",
    )  # fmt: skip
    p.add_argument(
        "--batch-window-ms", type=float, default=DEFAULT_BATCH_WINDOW_MS, metavar="MS",
        help="batch the models' calls across sessions, waiting at most this long for others "
        f"(0 = off; default {DEFAULT_BATCH_WINDOW_MS:g})",
    )  # fmt: skip
    p.add_argument(
        "--device", choices=("cpu", "cuda"), default="cpu",
        help="where the batched live Whisper encoder and window predictors run (default cpu)",
    )  # fmt: skip
    p.add_argument(
        "--cpu-models", default=DEFAULT_CPU_MODELS, metavar="LABELS",
        help="--device cuda: the batched models that stay on the CPU, comma-separated, of "
        f"{', '.join(DEVICE_MODELS)}; '' for none (default: the window predictors, "
        f"{DEFAULT_CPU_MODELS})",
    )  # fmt: skip
    p.add_argument(
        "--warm-batches", type=int, default=0, metavar="N",
        help="at start, run each batched model at every batch size 1 … N, so that a GPU's "
        "first sight of a size does not stall sessions (default 0: off)",
    )  # fmt: skip
    p.add_argument(
        "--ray", metavar="ADDRESS",
        help="run on Ray Serve (docs/serve.md): 'local' starts a Ray instance on 127.0.0.1; "
        "'auto', HOST:6379 or ray://HOST:10001 joins a cluster",
    )  # fmt: skip
    p.add_argument("--ray-model-replicas", type=int, default=1, metavar="N",
                   help="--ray: replicas of the model worker (default 1)")  # fmt: skip
    p.add_argument(
        "--ray-gpus-per-model-replica", type=float, default=1.0, metavar="F",
        help="--ray --device cuda: the share of a GPU each model replica asks Ray for, in "
        "(0, 1] (default 1); e.g. 0.25 places four on one GPU",
    )  # fmt: skip
    p.add_argument("--ray-ingress-replicas", type=int, default=1, metavar="N",
                   help="--ray: replicas of the WebSocket front end (default 1)")  # fmt: skip
    p.add_argument(
        "--ray-direct-port", type=int, metavar="N",
        help="--ray: each ingress replica also listens on port N of its node (0: a free one), "
        "the node's replicas sharing it, so that streams bypass Ray Serve's HTTP proxy; the "
        "printed URL is then this port's",
    )  # fmt: skip
    p.add_argument(
        "--ray-model-calls", choices=("socket", "serve"), default="socket",
        help="--ray: how an ingress replica's batches reach the model replicas: 'socket', "
        "each model replica's own TCP socket on its node, its key derived from the token; "
        "'serve', requests through the deployment's handle (default socket)",
    )  # fmt: skip
    p.add_argument(
        "--ray-max-batch", type=int, default=256, metavar="N",
        help="--ray: most requests (an ingress replica's stacked calls) in one batch of the "
        "model worker (default 256); it takes those waiting, the ingress has waited "
        "--batch-window-ms",
    )  # fmt: skip
    p.add_argument(
        "--workers", type=int, default=1, metavar="K",
        help="server processes sharing the port(s) (SO_REUSEPORT), each with its own models "
        "unless --shared-models; --max-sessions is per worker (default 1)",
    )  # fmt: skip
    p.add_argument(
        "--shared-models", action=argparse.BooleanOptionalAction, default=None,
        help="--workers K: run the batched models in one process for all workers, which "
        "stacks their calls (default: on with --device cuda)",
    )  # fmt: skip
    p.add_argument(
        "--metrics-port", type=int, metavar="N",
        help="serve /metrics on this port (with --workers K: worker i on N + i, the shared "
        "models on N + K; with --ray local: the Ray instance's metrics export port)",
    )  # fmt: skip
    p.add_argument("--metrics-host", default="127.0.0.1", help="address for --metrics-port")
    add_checkpoints_argument(p)
    p.set_defaults(func=cmd_serve)

    p = sub.add_parser("stream", help="stream an audio file to `audio2anim serve`, save the result")
    p.add_argument("audio", type=Path, help="audio file (any libsndfile format)")
    p.add_argument("--server", required=True, metavar="URL",
                   help="ws://HOST:PORT/v1/stream, or grpc://HOST:PORT for gRPC")  # fmt: skip
    p.add_argument("--token", required=True, help="the server's token")
    p.add_argument("-o", "--output", dest="outputs", action="append", required=True,
                   metavar="OUT", help="output file, format by extension (repeatable)")  # fmt: skip
    p.add_argument("--format", help="formats, one per -o, comma-separated (default: extensions)")
    p.add_argument("--fast", action="store_true", help="send as fast as possible, not paced")
    p.add_argument("--graph", help="a shipped graph's name (default: the server's)")
    p.add_argument("--fps", type=float, help="resample the animation to this frame rate")
    p.set_defaults(func=cmd_stream)


def cmd_serve(args: argparse.Namespace) -> int:
    import asyncio

    from audio2anim.graph.cli import apply_checkpoints_argument

    apply_checkpoints_argument(args)
    if not 0 <= args.batch_window_ms <= 1000:
        print("error: --batch-window-ms: between 0 and 1000", file=sys.stderr)
        return 2
    if args.token is not None and len(args.token) < 16:
        print("error: --token: at least 16 characters", file=sys.stderr)
        return 2
    if args.workers < 1:
        print("error: --workers: at least 1", file=sys.stderr)
        return 2
    if args.shared_models and args.workers == 1:
        print("error: --shared-models: with --workers K > 1 (one process has one set of "
              "models anyway)", file=sys.stderr)  # fmt: skip
        return 2
    if args.shared_models is None:
        args.shared_models = args.workers > 1 and args.device == "cuda"
    args.cpu_models = tuple(m.strip() for m in args.cpu_models.split(",") if m.strip())
    unknown = [m for m in args.cpu_models if m not in DEVICE_MODELS]
    if unknown:
        print(f"error: --cpu-models: unknown model {unknown[0]!r} (one of "
              f"{', '.join(DEVICE_MODELS)})", file=sys.stderr)  # fmt: skip
        return 2
    if not 0 <= args.warm_batches <= 4096:
        print("error: --warm-batches: between 0 and 4096", file=sys.stderr)
        return 2
    if args.ray is None and args.ray_direct_port is not None:
        print("error: --ray-direct-port: only with --ray", file=sys.stderr)
        return 2
    if args.ray is not None:
        if args.workers != 1:
            print("error: --workers: not with --ray (Ray Serve has its replicas)", file=sys.stderr)
            return 2
        return _serve_ray(args)
    if args.device == "cuda":
        import torch

        if not torch.cuda.is_available():
            print("error: --device cuda: no CUDA device is available", file=sys.stderr)
            return 2
    if args.workers > 1:
        from .workers import serve_workers

        return serve_workers(args, _serve)
    return asyncio.run(_serve(args))


# the options the Ray Serve application does not serve, and what to use instead
NOT_ON_RAY = {
    "grpc_port": (
        "--grpc-port",
        "the Ray Serve ingress serves the WebSocket only (ws://HOST:PORT/v1/stream); "
        "for gRPC, run audio2anim serve without --ray",
    ),
}


def _serve_ray(args: argparse.Namespace) -> int:
    for dest, (option, instead) in NOT_ON_RAY.items():
        if getattr(args, dest) is not None:
            print(f"error: audio2anim serve: {option} is not available with --ray: {instead}",
                  file=sys.stderr)  # fmt: skip
            return 2
    if args.metrics_host != "127.0.0.1":
        print("error: audio2anim serve: --metrics-host is not available with --ray: Ray's "
              "metrics export chooses its address (127.0.0.1 with --ray local)",
              file=sys.stderr)  # fmt: skip
        return 2
    if args.metrics_port is not None and args.ray != "local":
        print("error: audio2anim serve: --metrics-port is for --ray local; on a cluster, each "
              "node exports the service's metrics on its Ray metrics export port (ray start "
              "--metrics-export-port N)", file=sys.stderr)  # fmt: skip
        return 2
    for option, value in (("--ray-model-replicas", args.ray_model_replicas),
                          ("--ray-ingress-replicas", args.ray_ingress_replicas),
                          ("--ray-max-batch", args.ray_max_batch)):  # fmt: skip
        if value < 1:
            print(f"error: {option}: at least 1", file=sys.stderr)
            return 2
    if args.ray_direct_port is not None and not 0 <= args.ray_direct_port <= 65535:
        print("error: --ray-direct-port: a port number, 0 … 65535", file=sys.stderr)
        return 2
    if not 0 < args.ray_gpus_per_model_replica <= 1:
        print("error: --ray-gpus-per-model-replica: a share of one GPU, in (0, 1]",
              file=sys.stderr)  # fmt: skip
        return 2
    try:
        from .ray_app import serve_on_ray
    except ImportError as e:
        print(f"error: --ray: {e.name or e} is not installed (pip install 'audio2anim[ray]')",
              file=sys.stderr)  # fmt: skip
        return 2
    return serve_on_ray(args)


async def _serve(args: argparse.Namespace, worker=None) -> int:
    """The server in this process until a signal; ``worker``: ``(index, ready, error)`` of a
    `audio2anim.serve.workers` process (its ports shared; it reports its URL, or its error
    line, with those instead of printing them)."""
    import asyncio
    import signal

    from audio2anim.graph.errors import GraphError, OperatorError
    from audio2anim.graph.metrics import ServeMetrics, open_metrics_server

    from .server import Server, settle_heap

    metrics = ServeMetrics()
    remote = None
    if getattr(args, "models", None) is not None:  # a worker of `--shared-models`
        from .model_host import remote_models

        remote = remote_models(*args.models)
    server = Server(
        args.host, args.port, graph=args.graph, overrides=tuple(args.overrides),
        token=args.token, hosts=tuple(args.hosts), max_sessions=args.max_sessions,
        max_chunk=args.max_chunk, queue=args.queue, metrics=metrics, grpc_port=args.grpc_port,
        batch_window_ms=args.batch_window_ms, device=args.device, reuse_port=worker is not None,
        remote=remote, warm_batches=args.warm_batches, cpu_models=args.cpu_models,
    )  # fmt: skip
    who = "" if worker is None else f"worker {worker[0]}: "
    http = None
    if args.metrics_port is not None:
        http = open_metrics_server(args.metrics_host, args.metrics_port, metrics.registry)
        if http is None:
            if worker is not None:
                worker[2](f"--metrics-port {args.metrics_port}: cannot listen")
            return 2
    try:
        url = await server.start()
    except (GraphError, OperatorError, OSError, RuntimeError) as e:
        if worker is not None:
            worker[2](str(e).splitlines()[0])
        else:
            print(f"error: {str(e).splitlines()[0]}", file=sys.stderr)
        return 2
    settle_heap()
    if worker is not None:
        worker[1](url, server.grpc_url)
    else:
        print(f"audio2anim serve: {url}", file=sys.stderr, flush=True)
        if server.grpc_url:
            print(f"audio2anim serve (gRPC): {server.grpc_url}", file=sys.stderr, flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    received = []
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, lambda s=sig: (received.append(s), stop.set()))
    await stop.wait()
    if worker is None:  # the workers' parent says it once
        print(f"{signal.Signals(received[0]).name}: stopping", file=sys.stderr, flush=True)
    await server.stop()
    if http is not None:
        http.shutdown()
        http.server_close()
    ended = ", ".join(f"{k} {v}" for k, v in server.ended.items())
    # one write: the workers share the parent's stderr
    sys.stderr.write(f"{who}sessions: {ended}; refused {server.refused}\n")
    sys.stderr.flush()
    return 128 + int(received[0])


def cmd_stream(args: argparse.Namespace) -> int:
    from audio2anim.animate.outputs import OutputError, write_output
    from audio2anim.client import ServeError, stream_file

    formats = args.format.split(",") if args.format else [None] * len(args.outputs)
    if len(formats) != len(args.outputs):
        print("error: --format: give one format per -o", file=sys.stderr)
        return 2
    if not args.audio.is_file():
        print(f"error: {args.audio}: no such file", file=sys.stderr)
        return 2
    try:
        result = stream_file(
            args.server, args.token, args.audio, realtime=not args.fast, graph=args.graph
        )
    except ServeError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    except Exception as e:  # an unreadable file: libsndfile's message
        print(f"error: {args.audio}: {str(e).splitlines()[0]}", file=sys.stderr)
        return 1
    if not result.values:
        print(f"error: {args.audio}: the server sent no frames", file=sys.stderr)
        return 1
    animation = result.animation(str(args.audio))
    if args.fps:
        animation = animation.resample(args.fps)
    try:
        for out, fmt in zip(args.outputs, formats, strict=True):
            write_output(out, animation, fmt)
    except OutputError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    dropped = result.end.get("dropped", 0)
    print(
        f"{args.audio}: {len(result.values)} frames"
        + (f" ({dropped} dropped by the server)" if dropped else "")
        + f" → {', '.join(args.outputs)}",
        file=sys.stderr,
    )
    return 0
