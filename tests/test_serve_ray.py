"""``audio2anim serve --ray``: the service on Ray Serve (`audio2anim.serve.ray_app`).

On a local Ray instance that the module fixture starts on 127.0.0.1 (two CPUs, no dashboard)
with the shipped viseme CNN graph, its predictor's checkpoint named by a folder that only the
deployments' settings carry (the replicas find it through their runtime_env, not this
process's environment): a client streaming an espeak-ng sentence file gets the
frames the in-process server sends for the same audio, its model calls having gone to the
model worker deployment (over the model replica's socket), as do those of a client streaming to
the ingress replica's own port; the replicas' metrics come out of the instance's metrics export
port, per deployment; two concurrent sessions each get their own; a wrong token, Host or
start message is refused as ``audio2anim serve`` refuses it; deploying again with another port
on the running Serve is one line naming its port, and deploying a second application on the
cluster is refused with one line. Without Ray Serve installed (the
``ray`` extra) these are skipped. Without a Ray instance: the ingress' model calls carry the
graph their model belongs to and find the worker's model by its key, the deployments carry
this process's checkpoint folders, and the command's option errors are one line. Slow (each its own Ray instance): ``serve --ray local`` streams a
file with the model calls through the deployment's handle and stops on SIGINT; a missing checkpoint fails the deployment with one line naming it."""

from __future__ import annotations

import asyncio
import os
import socket

import aiohttp
import numpy as np
import pytest
import soundfile as sf
from tiny_models import speak

from audio2anim.client import ServeError, stream, stream_file
from audio2anim.resources import CHECKPOINTS_ENV, PACKAGE_CHECKPOINTS, find_checkpoint
from audio2anim.serve.server import Server

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TOKEN = "ray-serve-test-token-0123456789"
# the service's predictor checkpoint: a name found only in the folder its settings carry
RAY_CHECKPOINT = "checkpoints/ray-test-viseme-cnn"


@pytest.fixture(scope="module")
def voices():
    return {"mama bob": speak("mama bob"), "how are you": speak("how are you")}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def ray_service(ray_deployed):
    """(the proxy's URL, the models' handle)."""
    url, _, models, _ = ray_deployed
    return url, models


@pytest.fixture(scope="module")
def ray_deployed(tmp_path_factory):
    """The application deployed on a new local Ray instance, its ingress replica listening on a
    direct port too → (the proxy's URL, the direct port's URL, the models' handle, the
    instance's metrics export URL).
    Its predictor checkpoint is `RAY_CHECKPOINT` (the shipped viseme CNN under another name),
    in a folder that only its settings name: this process's environment, which the Ray
    instance's workers inherit, has no $AUDIO2ANIM_CHECKPOINTS."""
    pytest.importorskip("ray.serve", reason="Ray Serve is not installed (audio2anim[ray])")
    pytest.importorskip("fastapi", reason="Ray Serve is not installed (audio2anim[ray])")
    from ray import serve

    from audio2anim.serve import ray_app

    folder = tmp_path_factory.mktemp("ray-checkpoints")
    (folder / os.path.basename(RAY_CHECKPOINT)).symlink_to(PACKAGE_CHECKPOINTS / "viseme-cnn")
    names = ("PYTHONPATH", "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", CHECKPOINTS_ENV)
    saved = {k: os.environ.get(k) for k in names}
    # the replicas import this checkout's audio2anim
    os.environ["PYTHONPATH"] = ROOT + os.pathsep + (saved["PYTHONPATH"] or "")
    os.environ.pop(CHECKPOINTS_ENV, None)
    import ray

    try:
        metrics_port = _free_port()
        ray_app.start_local_ray(num_cpus=2, metrics_port=metrics_port)
        settings = ray_app.RaySettings(
            token=TOKEN, port=_free_port(), batch_wait_s=0.002, direct_port=_free_port(),
            overrides=(f"pred.checkpoint={RAY_CHECKPOINT}",), env={CHECKPOINTS_ENV: str(folder)},
        )  # fmt: skip
        url = ray_app.deploy(settings)
        assert url.startswith("ws://127.0.0.1:")
        direct = f"ws://127.0.0.1:{settings.direct_port}/v1/stream"
        models = serve.get_deployment_handle("models", ray_app.APP_NAME)
        yield url.split("?")[0], direct, models, f"http://127.0.0.1:{metrics_port}/metrics"
    finally:
        try:
            serve.shutdown()
        finally:
            ray.shutdown()  # stops the instance this process started (and only that one)
            for k, v in saved.items():
                if v is None:
                    os.environ.pop(k, None)
                else:
                    os.environ[k] = v


def _served(models) -> dict[str, int]:
    """The calls the model worker has served, by model."""
    return {m: calls for m, (calls, _) in models.batches.remote().result().items()}


async def _in_process(*clips):
    """Each clip streamed alone to an in-process server (no batching)."""
    server = Server(port=0)
    url = (await server.start()).split("?")[0]
    try:
        return [await stream(url, server.token, x, sr, realtime=False) for x, sr in clips]
    finally:
        await server.stop()


def test_ray_serve_answers_a_client_as_the_in_process_server_does(ray_service, voices, tmp_path):
    url, models = ray_service
    a, sr, _ = voices["mama bob"]
    sf.write(tmp_path / "mama.wav", a, sr)
    before = _served(models)
    r = stream_file(url, TOKEN, tmp_path / "mama.wav", realtime=False)
    after = _served(models)
    (local,) = asyncio.run(_in_process((a, sr)))
    assert r.end == {"type": "end", "frames": len(r.values), "dropped": 0}
    assert abs(len(r.values) - len(a) / sr * 50) <= 2
    assert {**r.header, "session": ""} == {**local.header, "session": ""}
    assert r.times == pytest.approx(local.times, abs=1e-9)
    np.testing.assert_allclose(r.values, local.values, atol=1e-4)
    np.testing.assert_allclose(r.visemes, local.visemes, atol=1e-4)
    assert np.ptp(np.asarray(r.values)[:, r.names.index("jawOpen")]) > 0.1  # the mouth moves
    # the session's two models (the viseme front end, the predictor) ran in the model worker
    assert len([m for m in after if after[m] > before.get(m, 0)]) == 2


def test_a_stream_to_the_direct_port_bypasses_the_proxy_and_gets_the_same_frames(
    ray_deployed, voices
):
    url, direct, models, _ = ray_deployed
    a, sr, _ = voices["mama bob"]
    before = _served(models)
    r = asyncio.run(stream(direct, TOKEN, a, sr, realtime=False))
    after = _served(models)
    via_proxy = asyncio.run(stream(url, TOKEN, a, sr, realtime=False))
    assert r.end == {"type": "end", "frames": len(r.values), "dropped": 0}
    assert r.times == pytest.approx(via_proxy.times, abs=1e-9)
    np.testing.assert_allclose(r.values, via_proxy.values, atol=1e-4)
    # the models ran in the model worker (over its socket), as for the proxy's streams
    assert len([m for m in after if after[m] > before.get(m, 0)]) == 2
    with pytest.raises(ServeError, match=r"refused \(403"):  # the same checks as the proxy's
        asyncio.run(stream(direct, "not-the-token-0123456789", a, sr, realtime=False))


def test_the_replicas_metrics_are_scraped_from_rays_export_port(ray_deployed, voices):
    import time
    import urllib.request

    from prometheus_client.parser import text_string_to_metric_families

    url, _, _, metrics_url = ray_deployed
    a, sr, _ = voices["mama bob"]
    r = asyncio.run(stream(url, TOKEN, a, sr, realtime=False))
    assert r.end["frames"] > 0

    def scrape() -> dict:  # (name, deployment, model or graph) → value, this service's only
        out = {}
        text = urllib.request.urlopen(metrics_url, timeout=5).read().decode()
        for family in text_string_to_metric_families(text):
            for s in family.samples:
                if s.name.startswith("ray_audio2anim_"):
                    assert "session" not in s.labels  # Ray cannot remove a session's series
                    what = s.labels.get("model") or s.labels.get("graph") or ""
                    key = (s.name, s.labels["deployment"], what)
                    out[key] = out.get(key, 0.0) + s.value
        return out

    want = {
        ("ray_audio2anim_frames_sent_total", "ingress", "viseme-cnn"),
        ("ray_audio2anim_e2e_latency_seconds_count", "ingress", "viseme-cnn"),
        ("ray_audio2anim_sessions_total", "ingress", "viseme-cnn"),
        ("ray_audio2anim_batch_size_count", "models", "viseme-cnn"),
        ("ray_audio2anim_batch_size_count", "ingress", "viseme-cnn"),
    }
    deadline = time.monotonic() + 60  # Ray's agent exports every few seconds
    while True:
        got = scrape()
        if all(got.get(k, 0) > 0 for k in want) or time.monotonic() > deadline:
            break
        time.sleep(1)
    assert {k for k in want if got.get(k, 0) > 0} == want, sorted(got)
    assert got[("ray_audio2anim_frames_sent_total", "ingress", "viseme-cnn")] >= len(r.values)
    assert ("ray_audio2anim_sessions_active", "ingress", "viseme-cnn") in got


def test_ray_replicas_find_a_checkpoint_through_their_settings(ray_service, voices):
    url, _ = ray_service
    # this process (whose environment the local instance's workers inherit) cannot find it
    assert CHECKPOINTS_ENV not in os.environ and find_checkpoint(RAY_CHECKPOINT) is None
    a, sr, _ = voices["how are you"]
    r = asyncio.run(stream(url, TOKEN, a, sr, realtime=False))  # the replicas did
    assert r.end["frames"] == len(r.values) > 0


def test_concurrent_ray_sessions_each_get_their_own_frames(ray_service, voices):
    url, _ = ray_service
    (a, sr_a, _), (b, sr_b, _) = voices["mama bob"], voices["how are you"]

    async def together():
        return await asyncio.gather(
            stream(url, TOKEN, a, sr_a, realtime=False),
            stream(url, TOKEN, b, sr_b, fmt="f32le", realtime=False),
        )

    both = asyncio.run(together())
    alone = asyncio.run(_in_process((a, sr_a), (b, sr_b)))
    for r, solo in zip(both, alone, strict=True):
        assert len(r.values) == len(solo.values) == r.end["frames"]
        np.testing.assert_allclose(r.values, solo.values, atol=2e-3)  # stacked: float rounding
    n = min(len(both[0].values), len(both[1].values))
    assert np.abs(np.subtract(both[0].values[:n], both[1].values[:n])).max() > 0.1


def test_ray_serve_refuses_a_wrong_token_host_or_start(ray_service, voices):
    url, _ = ray_service
    a, sr, _ = voices["how are you"]
    with pytest.raises(ServeError, match=r"refused \(403"):
        asyncio.run(stream(url, "not-the-token-at-all", a, sr, realtime=False))

    async def raw(headers: dict, first: str) -> tuple[int | None, str | None]:
        async with aiohttp.ClientSession() as http:
            try:
                ws = await http.ws_connect(f"{url}?token={TOKEN}", headers=headers)
            except aiohttp.WSServerHandshakeError as e:
                return e.status, None
            async with ws:
                await ws.send_str(first)
                msg = await ws.receive()
                return None, msg.data

    port = url.split(":")[2].split("/")[0]
    assert asyncio.run(raw({"Host": f"evil.example:{port}"}, "{}")) == (403, None)
    status, reply = asyncio.run(raw({}, '{"rate": 16000, "format": "s24le"}'))
    assert status is None and '"type": "error"' in reply and "bad start message: format" in reply
    # the refusals closed nothing else: a session still streams
    r = asyncio.run(stream(url, TOKEN, a, sr, realtime=False))
    assert r.end["frames"] == len(r.values) > 0


def test_deploying_on_a_running_serve_with_another_port_is_one_line(ray_service):
    from audio2anim.serve import ray_app

    url, _ = ray_service
    port = int(url.split(":")[2].split("/")[0])
    with pytest.raises(RuntimeError) as e:  # before the application is replaced
        ray_app.deploy(ray_app.RaySettings(token=TOKEN, port=port + 1))
    message = str(e.value)
    assert f"its proxies on 127.0.0.1:{port}: use --host 127.0.0.1 --port {port}" in message
    assert "\n" not in message


def test_deploying_a_second_application_on_the_cluster_is_refused(ray_service, voices):
    from ray import serve

    from audio2anim.serve import ray_app

    url, _ = ray_service
    port = int(url.split(":")[2].split("/")[0])
    with pytest.raises(ray_app.Refused) as e:
        ray_app.deploy(ray_app.RaySettings(token="another-token-0123456789", port=port))
    message = str(e.value)
    assert message.startswith("an audio2anim application is already running on this Ray cluster")
    assert "serve shutdown" in message and "\n" not in message
    # the first application is as it was: its replicas, its token
    assert serve.status().applications[ray_app.APP_NAME].deployments["ingress"].status == "HEALTHY"
    a, sr, _ = voices["mama bob"]
    assert asyncio.run(stream(url, TOKEN, a, sr, realtime=False)).end["frames"] > 0


# -- without a Ray instance ----------------------------------------------------------------------


class _Handle:
    """A stand-in for the models deployment's handle: answers each call from an in-process
    worker `Server`'s model batchers, as `ModelWorker.call` does, and records the calls."""

    def __init__(self, worker: Server) -> None:
        self.worker, self.calls = worker, []
        self.call = self

    def remote(self, request):
        name, key, feeds = request
        self.calls.append((name, key))
        return _Response(self.worker.batching.batchers[key].run_batch([feeds])[0])


class _Response:
    """A `ray.serve.handle.DeploymentResponse` already answered: ``result()`` or awaited."""

    def __init__(self, out: dict) -> None:
        self.out = out

    def result(self) -> dict:
        return self.out

    def __await__(self):
        yield from asyncio.sleep(0).__await__()
        return self.out


def test_ingress_model_calls_name_their_graph_and_the_worker_model():
    pytest.importorskip("ray.serve", reason="Ray Serve is not installed (audio2anim[ray])")
    pytest.importorskip("fastapi", reason="Ray Serve is not installed (audio2anim[ray])")
    from audio2anim.serve.ray_app import RaySettings, _IngressServer

    a, sr, _ = speak("mama bob")

    async def main():
        worker = Server(batch_window_ms=1.0, log=lambda line: None)
        await worker.method(None)  # the worker's models, keyed as its warm-up keyed them
        handle = _Handle(worker)
        ingress = _IngressServer(handle, RaySettings(token=TOKEN, port=0))
        await ingress.method(None)
        warm = len(handle.calls)
        try:
            server = Server(port=0)  # the frames without a worker
            url = (await server.start()).split("?")[0]
            alone = await stream(url, server.token, a, sr, realtime=False)
            await server.stop()
            from audio2anim.serve.session import start_message

            frames = []

            async def incoming():  # 20 ms chunks, as the client sends them
                data = (np.clip(a, -1, 1) * 32767.0).round().astype("<i2").tobytes()
                step = 2 * round(sr * 0.02)
                for i in range(0, len(data), step):
                    yield data[i : i + step]
                yield None

            async def send(message):
                frames.append(message)

            async with ingress.open_session(
                start_message({"rate": sr, "format": "s16le"})
            ) as session:
                await session.run(incoming(), send)
            return handle.calls, warm, frames, alone, set(worker.batching.batchers)
        finally:
            worker.batching.close()

    calls, warm, frames, alone, keys = asyncio.run(main())
    assert warm > 0 and len(calls) > warm  # the warm-up's calls, then the session's
    assert {name for name, _ in calls} == {None}  # the server's default graph
    assert {key for _, key in calls} == keys  # every model the worker holds, by its key
    assert frames[0]["type"] == "header" and frames[-1]["type"] == "end"
    values = [f["values"] for f in frames[1:-1]]
    assert len(values) == len(alone.values)
    np.testing.assert_allclose(values, alone.values, atol=1e-4)


def test_the_deployments_carry_this_process_checkpoint_folders(monkeypatch, tmp_path):
    pytest.importorskip("ray.serve", reason="Ray Serve is not installed (audio2anim[ray])")
    pytest.importorskip("fastapi", reason="Ray Serve is not installed (audio2anim[ray])")
    import argparse
    from pathlib import Path

    from audio2anim.graph.cli import apply_checkpoints_argument
    from audio2anim.serve.ray_app import RaySettings, build_app, replica_env

    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv(CHECKPOINTS_ENV, raising=False)
    monkeypatch.delenv("AUDIO2ANIM_TORCH_THREADS", raising=False)
    assert replica_env() == {}
    app = build_app(RaySettings(token=TOKEN))
    assert "runtime_env" not in app._bound_deployment.ray_actor_options  # the node's own

    monkeypatch.setenv(CHECKPOINTS_ENV, "mine")  # relative: the replicas' directory is Ray's
    apply_checkpoints_argument(argparse.Namespace(checkpoints=Path("ckpt")))  # --checkpoints
    env = replica_env()
    assert env == {CHECKPOINTS_ENV: f"{tmp_path / 'ckpt'}{os.pathsep}{tmp_path / 'mine'}"}
    ingress = build_app(RaySettings(token=TOKEN, env=env))._bound_deployment
    models = ingress.init_args[0]._bound_deployment
    for d in (ingress, models):
        assert d.ray_actor_options["runtime_env"] == {"env_vars": env}, d.name
    assert models.ray_actor_options["num_cpus"] == ingress.ray_actor_options["num_cpus"] == 1
    assert models.ray_actor_options["num_gpus"] == 0  # on the CPU
    shared = build_app(RaySettings(token=TOKEN, device="cuda", model_replicas=4,
                                   gpus_per_model_replica=0.25))._bound_deployment  # fmt: skip
    models = shared.init_args[0]._bound_deployment
    assert models.ray_actor_options["num_gpus"] == 0.25 and models.num_replicas == 4
    monkeypatch.setenv("AUDIO2ANIM_TORCH_THREADS", "3")  # a tuning the replicas keep too
    assert replica_env()["AUDIO2ANIM_TORCH_THREADS"] == "3"


def test_serve_ray_option_errors_are_one_line(capsys):
    from audio2anim.cli import main

    for argv, what in (
        (["--ray", "127.0.0.1:9"], "cannot connect to the Ray cluster"),  # nothing listens
        (["--ray", "local", "--ray-model-replicas", "0"], "--ray-model-replicas: at least 1"),
        (["--ray", "local", "--ray-gpus-per-model-replica", "1.5"], "a share of one GPU"),
        (["--ray", "local", "--ray-direct-port", "70000"], "--ray-direct-port: a port number"),
        (["--ray-direct-port", "0"], "--ray-direct-port: only with --ray"),
    ):
        pytest.importorskip("ray.serve", reason="Ray Serve is not installed (audio2anim[ray])")
        assert main(["serve", *argv]) == 2
        err = [ln for ln in capsys.readouterr().err.splitlines() if ln.strip()]
        assert len(err) == 1 and err[0].startswith("error: ") and what in err[0], err


def _serve_cli(*args: str):
    import subprocess
    import sys

    env = {**os.environ, "PYTHONPATH": ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""),
           "RAY_USAGE_STATS_ENABLED": "0"}  # fmt: skip
    cmd = [sys.executable, "-m", "audio2anim", "serve", "--ray", "local", "--port", "0", *args]
    return subprocess.Popen(cmd, env=env, stderr=subprocess.PIPE, text=True)


@pytest.mark.slow
def test_serve_ray_local_streams_then_stops_on_sigint(tmp_path, voices):
    # the model calls through the deployment's handle (the module's service uses sockets)
    import signal

    pytest.importorskip("ray.serve", reason="Ray Serve is not installed (audio2anim[ray])")
    a, sr, _ = voices["mama bob"]
    sf.write(tmp_path / "mama.wav", a, sr)
    proc = _serve_cli("--token", TOKEN, "--ray-model-calls", "serve")
    try:
        url = None
        for line in proc.stderr:
            if line.startswith("audio2anim serve: "):
                url = line.split(" ", 2)[2].strip()
                break
        assert url is not None and url.startswith("ws://127.0.0.1:") and f"token={TOKEN}" in url
        r = stream_file(url.split("?")[0], TOKEN, tmp_path / "mama.wav", realtime=False)
        assert r.end["frames"] == len(r.values) > 0
        proc.send_signal(signal.SIGINT)
        rest = proc.stderr.read()
        assert proc.wait(timeout=120) == 130
        assert "SIGINT: stopping" in rest
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


@pytest.mark.slow
def test_serve_ray_with_a_missing_checkpoint_is_one_line_naming_it():
    pytest.importorskip("ray.serve", reason="Ray Serve is not installed (audio2anim[ray])")
    proc = _serve_cli("--set", "pred.checkpoint=/nonexistent/ckpt")
    try:
        err = proc.stderr.read()
        assert proc.wait(timeout=300) == 2
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    errors = [ln for ln in err.splitlines() if ln.startswith("error")]
    assert len(errors) == 1 and "Ray Serve deployment failed: models:" in errors[0]
    assert "/nonexistent/ckpt" in errors[0]
