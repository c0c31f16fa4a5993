"""The streaming service on Ray Serve: ``audio2anim serve --ray ADDRESS``.

Two Ray Serve deployments (docs/serve.md, "On Ray Serve"), each with its own replica count:

- ``models`` (`ModelWorker`): the heavy models of the method graph (the ONNX viseme front end
  and predictors, the live Whisper encoder), loaded once per replica by warming the graph up
  through an in-process `audio2anim.serve.batching.BatchingService` (so its model batchers,
  keyed as the sessions' operators key them, hold the models on the replica's device). With
  ``model_calls="socket"`` (the default) it also serves them as `ModelHost` does for
  ``serve --workers``: on a free TCP port of its node (``wire_address``), to peers that prove
  a key derived from the token, stacking what has arrived from every ingress replica. Its
  ``call`` is a Ray Serve batch handler (``@serve.batch``: up to ``max_batch`` calls, the
  ingress replicas' stacks that are waiting; it waits for none, the ingress has waited its
  window): the calls of a batch are grouped by model and each
  group goes through that model's `ModelBatcher.run_batch` (grouped by shape, stacked, run
  once, split) in a thread. With ``device="cuda"`` every replica asks Ray for one GPU.
- ``ingress`` (`Ingress`): a FastAPI WebSocket at ``/v1/stream`` behind Ray Serve's HTTP proxy,
  with the protocol, token, ``Host``/``Origin`` checks, session limit and errors of
  ``audio2anim serve``'s WebSocket (`audio2anim.serve.server`), through the same session core
  (`audio2anim.serve.session`). Its sessions' graphs run in the replica (sources, features,
  smoothing: per-session state stays there); their heavy operators' model calls go through
  the replica's own batchers (`audio2anim.serve.batching`, with ``batch_wait_s`` as the window),
  which stack the calls of its sessions and send each stack to a model replica as one
  request, as a worker of ``serve --workers K --shared-models`` sends its stacks to the model
  host: over the replicas' sockets (`RemoteModel`, taking them in turn; the addresses asked
  through the handle at start), or with ``model_calls="serve"`` through the handle.
  With ``direct_port`` each replica also listens on that port of its node itself
  (`Server.start`, the node's replicas sharing it through SO_REUSEPORT, the kernel spreading
  the connections): every WebSocket message through the proxy costs the proxy and the replica
  a Ray call each, and one proxy per node carries them all, so streams that connect there
  bypass it.

A model worker replica finds the model a call names by the batcher key (the exported file, or
the encoder's source and weights), so every node must hold the same models at the same paths
(one install, the same image). A call of a graph the replica has not loaded yet (a session
asking for another shipped graph) loads it first: the call carries the graph's name. The
replicas run in Ray's worker processes, on any node, which do not inherit the launching
process's environment: its checkpoint folders (``--checkpoints``, ``$AUDIO2ANIM_CHECKPOINTS``)
go to them in the deployments' ``runtime_env`` (`RaySettings.env`).

One application per Ray cluster (`APP_NAME`, at the proxies' ``/``): `deploy` refuses to
replace one that is there.

`serve_on_ray` is the command: it connects to Ray (``local``: a new instance bound to
127.0.0.1), deploys both, prints the URL and token as ``audio2anim serve`` does, and on
SIGINT/SIGTERM deletes the application (``local``: stops the instance). Ray, Ray Serve and
FastAPI are imported only here (the ``ray`` extra).
"""

# no ``from __future__ import annotations``: FastAPI reads the WebSocket endpoint's annotation
# through Ray Serve's wrapper, whose module cannot resolve a string
import asyncio
import contextlib
import dataclasses
import hashlib
import json
import os
import signal
import sys
import threading
import time

from fastapi import FastAPI, WebSocket, WebSocketDisconnect
from ray import serve

from audio2anim.graph.netguard import (
    exposure_warning,
    host_allowed,
    new_token,
    origin_allowed,
    token_ok,
)
from audio2anim.resources import CHECKPOINTS_ENV, user_checkpoint_folders

from .server import Server, settle_heap
from .session import START_TIMEOUT_S, ServerFull, SessionError, end_message, start_message

APP_NAME = "audio2anim"
DEFAULT_MAX_BATCH = 256


@dataclasses.dataclass
class RaySettings:
    """What both deployments are built from (the ``serve`` options, plain values)."""

    token: str
    graph: str = "graphs/viseme_cnn.yaml"
    overrides: tuple[str, ...] = ()
    host: str = "127.0.0.1"  # the Ray Serve HTTP proxy's address and port (the Host check)
    port: int = 8770
    hosts: tuple[str, ...] = ()
    max_sessions: int = 32  # per ingress replica
    max_chunk: int = 65536
    queue: int = 50
    device: str = "cpu"
    model_replicas: int = 1
    gpus_per_model_replica: float = 1.0  # with device cuda: several replicas may share a GPU
    ingress_replicas: int = 1
    max_batch: int = DEFAULT_MAX_BATCH
    batch_wait_s: float = 0.0
    warm_batches: int = 0  # the model replicas' (`Server` ``warm_batches``)
    cpu_models: tuple[str, ...] = ()  # the model replicas' (`Server` ``cpu_models``)
    # each ingress replica's own WebSocket listener on this port of its node (None: none),
    # shared by the node's replicas (SO_REUSEPORT): the streams bypass the HTTP proxy
    direct_port: int | None = None
    # how an ingress replica's batches reach a model replica: "socket", the replica's own
    # listener (`ModelHost` over TCP); "serve", requests through the deployment's handle
    model_calls: str = "socket"
    # environment variables of every replica (`replica_env`)
    env: dict[str, str] = dataclasses.field(default_factory=dict)


def replica_env() -> dict[str, str]:
    """The environment the replicas need from this process: ``$AUDIO2ANIM_CHECKPOINTS`` (what
    ``--checkpoints`` set), its folders made absolute (a replica's working directory is Ray's),
    and ``$AUDIO2ANIM_TORCH_THREADS``. Each only when set: the replicas keep their node's own.
    (``$AUDIO2ANIM_CACHE`` is a folder of this machine: each node keeps its own.)"""
    from audio2anim.models.torch_threads import ENV as TORCH_THREADS_ENV

    env = {}
    folders = user_checkpoint_folders()
    if folders:
        env[CHECKPOINTS_ENV] = os.pathsep.join(str(f.absolute()) for f in folders)
    if os.environ.get(TORCH_THREADS_ENV):
        env[TORCH_THREADS_ENV] = os.environ[TORCH_THREADS_ENV]
    return env


def replica_metrics(deployment: str):
    """This replica's `RayServeMetrics` (tags ``deployment`` and ``replica``)."""
    from .ray_metrics import RayServeMetrics

    return RayServeMetrics(deployment, serve.get_replica_context().replica_id.unique_id)


# -- the model worker ---------------------------------------------------------------------------


class ModelWorker:
    """The ``models`` deployment: the method graphs' heavy models, called in batches."""

    async def __init__(self, settings: RaySettings) -> None:
        # an in-process batcher per model holds it (on ``device``); its own window only
        # matters to the warm-up's calls
        self.server = Server(
            graph=settings.graph, overrides=settings.overrides, batch_window_ms=1.0,
            device=settings.device, log=lambda line: None, warm_batches=settings.warm_batches,
            cpu_models=settings.cpu_models, metrics=replica_metrics("models"),
        )  # fmt: skip
        self.served: dict[str, list[int]] = {}  # model label → [calls, batches]
        self._count = threading.Lock()  # two batches may run at once
        self.call.set_max_batch_size(settings.max_batch)
        await self.server.method(None)
        self.wire = None
        if settings.model_calls == "socket":
            self.wire = _listen_for_calls(self.server, settings.token)
        settle_heap()

    def wire_address(self) -> tuple[str, int] | None:
        """Where this replica takes model calls on its own socket (``model_calls="socket"``)."""
        return None if self.wire is None else tuple(self.wire.address)

    @serve.batch(max_batch_size=DEFAULT_MAX_BATCH, batch_wait_timeout_s=0.0,
                 max_concurrent_batches=2)  # fmt: skip
    async def call(self, requests: list[tuple[str | None, str, dict]]) -> list[dict]:
        """``(graph name or None, model key, feeds)`` per caller → its outputs, in order."""
        batchers = self.server.batching.batchers
        for name, key, _ in requests:
            if key not in batchers:
                await self.server.method(name)  # a graph this replica has not loaded yet
                if key not in batchers:
                    raise LookupError(
                        f"model worker: graph {name or self.server.graph_file!r} has no model "
                        f"{key!r} here (do all nodes hold the same models at the same paths?)"
                    )
        return await asyncio.to_thread(self._run, requests)

    def _run(self, requests: list[tuple[str | None, str, dict]]) -> list[dict]:
        groups: dict[str, list[int]] = {}
        for i, (_, key, _) in enumerate(requests):
            groups.setdefault(key, []).append(i)
        outs: list[dict] = [{}] * len(requests)
        for key, members in groups.items():
            batcher = self.server.batching.batchers[key]
            results = batcher.run_batch([requests[i][2] for i in members])
            with self._count:
                served = self.served.setdefault(batcher.name, [0, 0])
                served[0] += len(members)
                served[1] += 1
            for i, out in zip(members, results, strict=True):
                outs[i] = out
        return outs

    def batches(self) -> dict[str, tuple[int, int]]:
        """What this replica has served: model label → (calls, requests), through its handle
        and its socket together."""
        out: dict[str, tuple[int, int]] = {}
        with self._count:
            sources = [dict(self.served)]
        if self.wire is not None:
            sources.append(self.wire.served())
        for served in sources:
            for name, (calls, n) in served.items():
                c0, n0 = out.get(name, (0, 0))
                out[name] = (c0 + calls, n0 + n)
        return out


def _wire_key(token: str) -> bytes:
    """The model replicas' socket key, from the service's token (every replica has it)."""
    return hashlib.sha256(b"audio2anim model calls:" + token.encode()).digest()


def _listen_for_calls(server: Server, token: str):
    """A `ModelHost` over ``server``'s models on a free TCP port of this node, serving on a
    thread; graphs it lacks load on the running event loop."""
    import ray

    from .model_host import ModelHost

    loop = asyncio.get_running_loop()

    def load(graph: str | None) -> None:
        asyncio.run_coroutine_threadsafe(server.method(graph), loop).result()

    host = ModelHost(server, (ray.util.get_node_ip_address(), 0), _wire_key(token), load)
    host.listen()
    threading.Thread(target=host.serve_forever, daemon=True, name="a2a-model-calls").start()
    return host


async def _wire_addresses(models, replicas: int, timeout_s: float = 120.0) -> list:
    """The socket addresses of the ``models`` deployment's replicas: asked through the handle
    (which routes each request to some replica) until all ``replicas`` have answered."""
    seen: set = set()
    deadline = time.monotonic() + timeout_s
    while len(seen) < replicas:
        answers = await asyncio.gather(*[models.wire_address.remote() for _ in range(8 * replicas)])
        seen.update(tuple(a) for a in answers if a is not None)
        if len(seen) < replicas:
            if time.monotonic() > deadline:
                raise RuntimeError(
                    f"ingress: {len(seen)} of {replicas} model replicas gave their socket "
                    f"address within {timeout_s:g} s"
                )
            await asyncio.sleep(0.5)
    return sorted(seen)


# -- the ingress' side of the model calls ---------------------------------------------------------


class _RemoteCall:
    """One model in the ``models`` deployment as an ingress replica's `ModelCall`: made from
    a thread (the replica's model batcher, or a set-up's warm-up through it), never on the
    replica's event loop, and blocking there until the answer is in."""

    def __init__(self, method, graph: str | None, key: str) -> None:
        self.method, self.graph, self.key = method, graph, key

    def __call__(self, feeds: dict) -> dict:
        return self.method.remote((self.graph, self.key, feeds)).result()

    def many(self, calls: list[dict]) -> list[dict]:
        """Several calls (a batch's groups of different shapes), on their way at once."""
        responses = [self.method.remote((self.graph, self.key, feeds)) for feeds in calls]
        return [r.result() for r in responses]


class _IngressServer(Server):
    """`Server` as an ingress replica's session host, its sessions' model calls to the
    ``models`` deployment. Its listener (`Server.start`, on ``direct_port`` shared with the
    node's other ingress replicas) only with ``direct_port``; Ray Serve's proxy is the other."""

    def __init__(self, handle, s: RaySettings, remote=None, metrics=None) -> None:
        # as a worker of `serve --workers K --shared-models` with its model host: the replica's
        # batchers stack its sessions' calls within the window and send one request per model
        # (two on their way at once), not one per session and hop
        if remote is None:
            remote = lambda graph, key: _RemoteCall(handle.call, graph, key)  # noqa: E731
        super().__init__(
            s.host, s.port if s.direct_port is None else s.direct_port, graph=s.graph,
            overrides=s.overrides, token=s.token, hosts=s.hosts, reuse_port=True,
            max_sessions=s.max_sessions, max_chunk=s.max_chunk, queue=s.queue,
            batch_window_ms=s.batch_wait_s * 1000.0,
            remote=remote, log=lambda line: None, metrics=metrics,
        )  # fmt: skip


# -- the ingress ----------------------------------------------------------------------------------


# defined before `Ingress`: Ray Serve's ingress wrapper takes the module's names as they
# are when the class is decorated
async def _chunks(ws: WebSocket):
    """A socket's audio for `Session.run`: binary messages, then None for the end message."""
    while True:
        msg = await ws.receive()
        if msg.get("type") == "websocket.disconnect":
            return
        if msg.get("bytes") is not None:
            yield msg["bytes"]
            continue
        end_message(msg.get("text") or "")
        yield None
        return


async def _error(ws: WebSocket, message: str, code: int = 1008) -> None:
    """Send one error line and close the socket."""
    with contextlib.suppress(Exception):
        await ws.send_text(json.dumps({"type": "error", "error": message}))
        await ws.close(code=code, reason=message[:120])


api = FastAPI(docs_url=None, redoc_url=None, openapi_url=None)


@serve.ingress(api)
class Ingress:
    """The ``ingress`` deployment: ``audio2anim serve``'s WebSocket protocol at ``/v1/stream``."""

    async def __init__(self, models, settings: RaySettings) -> None:
        self.settings = settings
        remote = None
        if settings.model_calls == "socket":
            from .model_host import RemoteModel

            n, loop = settings.model_replicas, asyncio.get_running_loop()
            addresses = await _wire_addresses(models, n)
            key = _wire_key(settings.token)

            def refresh() -> list:  # from a batcher's thread: a model replica restarted
                return asyncio.run_coroutine_threadsafe(_wire_addresses(models, n), loop).result()

            remote = lambda graph, k: RemoteModel(list(addresses), key, graph, k, refresh)  # noqa: E731
        self.server = _IngressServer(models, settings, remote, replica_metrics("ingress"))
        # loads the graph, warms it up through the worker (and listens on the direct port)
        if settings.direct_port is None:
            await self.server.method(None)
        else:
            await self.server.start()
        settle_heap()

    @api.websocket("/v1/stream")
    async def stream(self, ws: WebSocket) -> None:
        server, s = self.server, self.settings
        host = ws.headers.get("host")
        refusal = None
        if not host_allowed(host, s.host, s.port, s.hosts):  # the proxy's address
            refusal = "host"
        elif not token_ok(ws.query_params.get("token"), server.token):
            refusal = "token"
        elif not origin_allowed(ws.headers.get("origin"), host or ""):
            refusal = "origin"
        if refusal is not None:
            server.refuse(refusal)
            await ws.close(code=1008)  # before the upgrade: HTTP 403
            return
        await ws.accept()
        try:
            with server.slot():
                await self._session(ws)
        except ServerFull as e:
            await _error(ws, str(e), code=1013)  # try again later

    async def _session(self, ws: WebSocket) -> None:
        try:
            first = await asyncio.wait_for(ws.receive(), START_TIMEOUT_S)
        except TimeoutError:
            await _error(ws, f"no start message within {START_TIMEOUT_S:g} s")
            return
        if first.get("type") == "websocket.disconnect":
            return
        if first.get("text") is None:
            await _error(ws, 'the first message must be the JSON start message, e.g. '
                             '{"rate": 16000, "format": "s16le"}')  # fmt: skip
            return

        async def send(message: dict) -> None:
            try:
                await ws.send_text(json.dumps(message))
            except WebSocketDisconnect:
                raise ConnectionError("the client went away") from None

        try:
            async with self.server.open_session(start_message(first["text"])) as session:
                await session.run(_chunks(ws), send)
                with contextlib.suppress(Exception):
                    await ws.close(code=1000 if session.error is None else 1008)
        except SessionError as e:  # before the session: nothing sent yet
            await _error(ws, str(e))


# -- deploying ------------------------------------------------------------------------------------


def actor_options(s: RaySettings, **resources) -> dict:
    """A deployment's ``ray_actor_options``: ``resources``, and ``s.env`` set in its replicas'
    processes before they start (Ray workers on other nodes do not see this process's)."""
    if s.env:
        return {**resources, "runtime_env": {"env_vars": dict(s.env)}}
    return resources


def build_app(s: RaySettings):
    """The application: ``ingress`` bound to a handle of ``models``."""
    models = serve.deployment(
        ModelWorker, name="models", num_replicas=s.model_replicas,
        # a batch can fill only if that many calls may wait at a replica
        max_ongoing_requests=max(64, 4 * s.max_batch),
        ray_actor_options=actor_options(
            s, num_cpus=1, num_gpus=s.gpus_per_model_replica if s.device == "cuda" else 0
        ),
    ).bind(s)  # fmt: skip
    ingress = serve.deployment(
        Ingress, name="ingress", num_replicas=s.ingress_replicas,
        # a session is one request for its whole length: room for every slot, and for the
        # sockets told that the replica is full
        max_ongoing_requests=2 * s.max_sessions, ray_actor_options=actor_options(s, num_cpus=1),
    ).bind(models, s)  # fmt: skip
    return ingress


def start_local_ray(num_cpus: int | None = None, metrics_port: int | None = None) -> None:
    """A new Ray instance on this machine, every server of it bound to 127.0.0.1 (``num_cpus``:
    the CPUs it schedules by, default the machine's; ``metrics_port``: its metrics export
    port, where the replicas' `RayServeMetrics` are scraped)."""
    os.environ["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] = "0"  # Ray's single-machine mode
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    import ray
    from ray._private import ray_constants

    ray_constants.ENABLE_RAY_CLUSTER = False  # read at import: in case ray came in earlier
    extra = {} if metrics_port is None else {"_metrics_export_port": metrics_port}
    ray.init(num_cpus=num_cpus, include_dashboard=False, log_to_driver=False,
             configure_logging=False, **extra)  # fmt: skip


def _proxy_address() -> tuple[str, int] | None:
    """The host and port of the running Ray Serve's proxies; None if unknown."""
    with contextlib.suppress(Exception):
        from ray.serve.context import _get_global_client

        config = _get_global_client().http_config
        return config.host, int(config.port)
    return None


class Refused(RuntimeError):
    """`deploy` will not deploy on this cluster (one line); nothing was changed there."""


def deploy(s: RaySettings) -> str:
    """Start Ray Serve's proxy on ``s.host:s.port`` (if Serve is not running yet) and deploy
    the application (waits until every replica has warmed up) → the stream URL with its
    token. Needs a Ray connection. `Refused` (one line) if Serve already runs on the cluster
    with its proxies elsewhere, or an audio2anim application is there already."""
    serve.start(http_options={"host": s.host, "port": s.port})
    # a running Serve keeps the proxies' address it started with and ignores a new one: the
    # URL printed would name a port nobody listens on
    running = _proxy_address()
    if running is not None and running != (s.host, s.port):
        host, port = running
        raise Refused(
            f"Ray Serve already runs on this cluster with its proxies on {host}:{port}: "
            f"use --host {host} --port {port}, or stop it first (serve shutdown)"
        )
    # serve.run under the same name replaces the application in place: another run's clients
    # would lose their sessions and its token
    app = serve.status().applications.get(APP_NAME)
    if app is not None:
        status = str(app.status).rsplit(".", 1)[-1]
        raise Refused(
            f"an audio2anim application is already running on this Ray cluster (Ray Serve "
            f"application {APP_NAME!r}, {status}); stop it with `serve shutdown` or by "
            f"stopping the audio2anim serve --ray that started it (SIGINT)"
        )
    serve.run(build_app(s), name=APP_NAME, route_prefix="/", blocking=False)
    return f"ws://{s.host}:{s.port}/v1/stream?token={s.token}"


def _failure(error: Exception) -> str:
    """Why the deployment failed, one line: the failed deployment's own error (the last line of
    its replica's traceback, e.g. a missing checkpoint), else Ray's message."""
    with contextlib.suppress(Exception):
        app = serve.status().applications[APP_NAME]
        for name, d in app.deployments.items():
            lines = [ln.strip() for ln in (d.message or "").splitlines() if ln.strip()]
            if str(d.status).endswith("DEPLOY_FAILED") and lines:
                return f"{name}: {lines[-1]}"
    return (str(error).strip().splitlines() or [type(error).__name__])[0]


def serve_on_ray(args) -> int:
    """``audio2anim serve --ray ADDRESS`` (options as `audio2anim.serve.cli`)."""
    import socket

    import ray

    from audio2anim.animate.ray_batch import connect
    from audio2anim.graph.errors import GraphError

    from .server import method_graph

    try:  # a bad graph or override: one line now, not a failed deployment later
        method_graph(args.graph, tuple(args.overrides))
    except (GraphError, OSError, ValueError) as e:
        print(f"error: {str(e).splitlines()[0]}", file=sys.stderr)
        return 2

    def free_port() -> int:  # the replicas and the proxy need a port number: a free one now
        with socket.socket() as sock:
            sock.bind((args.host, 0))
            return sock.getsockname()[1]

    port = args.port or free_port()
    direct = args.ray_direct_port
    if direct == 0:
        direct = free_port()
    if direct is not None and direct == port:
        print(f"error: --ray-direct-port: {direct} is the proxy's --port", file=sys.stderr)
        return 2
    settings = RaySettings(
        token=args.token or new_token(), graph=args.graph,
        overrides=tuple(args.overrides), host=args.host, port=port, hosts=tuple(args.hosts),
        max_sessions=args.max_sessions, max_chunk=args.max_chunk, queue=args.queue,
        device=args.device, model_replicas=args.ray_model_replicas,
        gpus_per_model_replica=args.ray_gpus_per_model_replica,
        ingress_replicas=args.ray_ingress_replicas, max_batch=args.ray_max_batch,
        batch_wait_s=args.batch_window_ms / 1000.0, warm_batches=args.warm_batches,
        cpu_models=args.cpu_models, direct_port=direct, model_calls=args.ray_model_calls, env=replica_env(),
    )  # fmt: skip
    local = args.ray == "local"
    metrics_port = args.metrics_port
    if metrics_port == 0:
        metrics_port = free_port()
    need = settings.model_replicas + settings.ingress_replicas  # CPUs: one per replica
    try:
        if local:  # enough CPUs to schedule by, even on a machine with fewer cores
            start_local_ray(max(os.cpu_count() or 1, need), metrics_port)
        else:
            connect(args.ray)
    except (ConnectionError, RuntimeError, ValueError) as e:
        print(f"error: {str(e).splitlines()[0]}", file=sys.stderr)
        return 2
    gpus = ray.cluster_resources().get("GPU", 0) if settings.device == "cuda" else 0
    want = settings.model_replicas * settings.gpus_per_model_replica
    if settings.device == "cuda" and gpus < want - 1e-9:
        print(f"error: --device cuda: {settings.model_replicas} model replica(s) of "
              f"{settings.gpus_per_model_replica:g} GPU need {want:g} GPUs; the Ray cluster "
              f"has {gpus:g}", file=sys.stderr)  # fmt: skip
        ray.shutdown()
        return 2
    cpus = ray.cluster_resources().get("CPU", 0)
    if cpus < need:  # an autoscaling cluster may add nodes; else the deployment waits forever
        print(f"warning: the replicas ask for {need} CPUs (one each); the Ray cluster has "
              f"{cpus:g} now: the deployment waits for more nodes", file=sys.stderr)  # fmt: skip
    stop = threading.Event()
    received: list[int] = []
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda s, _frame: (received.append(s), stop.set()))
    try:
        for what, p in (("Ray Serve proxy", port), ("ingress replicas", direct)):
            warning = p is not None and exposure_warning(f"audio2anim serve ({what})", args.host, p)
            if warning:
                print(warning, file=sys.stderr, flush=True)
        try:
            url = deploy(settings)
        except Refused as e:
            print(f"error: audio2anim serve --ray: {e}", file=sys.stderr)
            return 2
        except Exception as e:  # a replica that cannot start
            print(f"error: Ray Serve deployment failed: {_failure(e)}", file=sys.stderr)
            if not local:  # Serve would go on retrying it, and the next run be refused
                with contextlib.suppress(Exception):
                    serve.delete(APP_NAME)
            return 2
        where = "a local Ray instance" if local else f"the Ray cluster at {args.ray}"
        if direct is not None:  # the streams' address; the proxy's serves too
            print(f"audio2anim serve: ws://{args.host}:{direct}/v1/stream?token={settings.token}",
                  file=sys.stderr, flush=True)  # fmt: skip
            print(f"  through Ray Serve's proxy: {url}", file=sys.stderr, flush=True)
        else:
            print(f"audio2anim serve: {url}", file=sys.stderr, flush=True)
        print(f"  on {where}: {settings.ingress_replicas} ingress and {settings.model_replicas}"
              f" model replica(s)", file=sys.stderr, flush=True)  # fmt: skip
        if metrics_port is not None:  # Ray's export: its names are prefixed ray_
            print(f"metrics: http://127.0.0.1:{metrics_port}/metrics (ray_audio2anim_*)",
                  file=sys.stderr, flush=True)  # fmt: skip
        while not stop.wait(0.5):
            pass
        print(f"{signal.Signals(received[0]).name}: stopping", file=sys.stderr, flush=True)
        with contextlib.suppress(Exception):
            serve.delete(APP_NAME)
        return 128 + int(received[0])
    finally:
        if local:
            with contextlib.suppress(Exception):
                serve.shutdown()
        ray.shutdown()
