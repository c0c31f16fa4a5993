"""``audio2anim serve --workers K``: K processes share the port, the kernel spreads the
sessions over them, each session gets what its audio gives alone, with its models in the
worker or in one model process for all (``--shared-models``); SIGINT stops every worker; a
worker (or the model process) that dies stops the others and the command names it."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import subprocess
import urllib.request
from pathlib import Path

import numpy as np
import pytest
from tiny_models import speak

from audio2anim.client import stream

ROOT = Path(__file__).resolve().parents[1]
TOKEN = "test-token-0123456789abcdef"


@pytest.fixture(scope="module")
def voices():
    return [
        speak("mama bob"),
        speak("how are you"),
        speak("pop a bubble", voice="en-us+f3"),
        speak("we will meet at five", voice="en+m1"),
    ]


def _start(python, *extra) -> tuple[subprocess.Popen, str, list[str], list[int]]:
    """The server → (process, stream URL, metrics URLs (the model host's last), worker pids
    (the model host's last))."""
    proc = subprocess.Popen(
        [python, "-m", "audio2anim", "serve", "--port", "0", "--token", TOKEN, *extra],
        cwd=ROOT, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    metrics, pids, host = [], [], []
    for line in proc.stderr:
        # searched, not matched at the start: the processes share the pipe, and another's
        # unfinished line (a library's warning) may sit in front of one of these
        if found := re.search(r"(?<!host )metrics: (http\S+)", line):
            metrics.append(found.group(1))
        elif found := re.search(r"model host metrics: (http\S+)", line):
            host.append(found.group(1))
        elif line.startswith("model host: pid "):
            host_pid = [int(line.split()[3].rstrip(","))]
        elif line.startswith("workers: "):
            pids = [int(p) for p in re.findall(r"\d+", line.split("pids", 1)[1])]
        elif line.startswith("audio2anim serve: "):
            pids += host_pid if host else []
            return proc, line.split()[2].split("?")[0], metrics + host, pids
    raise AssertionError(f"the server did not start (exit {proc.wait()})")


def _done(url: str) -> float:
    page = urllib.request.urlopen(url, timeout=10).read().decode()
    found = re.search(r'audio2anim_sessions_total\{end="done",graph="viseme-cnn"\} (\S+)', page)
    return float(found.group(1)) if found else 0.0


def _gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    return False


def _host_calls(url: str) -> float:
    page = urllib.request.urlopen(url, timeout=10).read().decode()
    found = re.findall(r'audio2anim_batch_size_count\{model="viseme-cnn"\} (\S+)', page)
    return float(found[0]) if found else 0.0


@pytest.mark.parametrize("shared", [False, True], ids=["own-models", "shared-models"])
def test_two_workers_share_the_port_and_each_session_gets_its_own_frames(voices, python, shared):
    flags = ["--shared-models"] if shared else []
    proc, url, metrics, pids = _start(python, "--workers", "2", "--metrics-port", "0", *flags)
    host = None
    try:
        assert len(metrics) == 2 + shared and len(pids) == 2 + shared
        if shared:
            *metrics, host = metrics
            before = _host_calls(host)

        async def main():
            alone = [await stream(url, TOKEN, a, sr, realtime=False) for a, sr, _ in voices]
            together = await asyncio.gather(
                *(stream(url, TOKEN, a, sr, realtime=False) for a, sr, _ in voices)
            )
            return alone, together

        alone, together = asyncio.run(main())
        for (a, sr, _), solo, got in zip(voices, alone, together, strict=True):
            assert got.end == {"type": "end", "frames": len(got.values), "dropped": 0}
            assert abs(len(got.values) - len(a) / sr * 50) <= 2
            assert len(got.values) == len(solo.values)
            np.testing.assert_allclose(got.values, solo.values, atol=2e-3)
            assert np.max(got.values) > 0.2  # the mouth moves
        # the kernel picks a worker per connection: more short sessions until both served some
        counts = [_done(m) for m in metrics]
        assert sum(counts) == 8
        silence = np.zeros(3200, np.float32)
        for _ in range(40):
            if min(counts) > 0:
                break
            asyncio.run(stream(url, TOKEN, silence, 16000, realtime=False))
            counts = [_done(m) for m in metrics]
        assert min(counts) > 0, counts
        if shared:  # both workers' predictor calls ran in the model host
            assert _host_calls(host) - before >= 2 * len(voices) * 5
    finally:
        proc.send_signal(signal.SIGINT)
        rest = proc.communicate(timeout=60)[1]
    assert proc.returncode == 130, rest
    assert "SIGINT: stopping 2 workers" in rest
    assert "worker 0: sessions: done" in rest and "worker 1: sessions: done" in rest
    assert ("model host: stopped" in rest) == shared
    assert all(_gone(p) for p in pids)


@pytest.mark.parametrize(
    "flags, victim, who",
    [(["--batch-window-ms", "0"], 1, "worker 1"), (["--shared-models"], -1, "the model host")],
    ids=["worker", "model-host"],
)
def test_a_process_that_dies_stops_the_others_and_is_named(python, flags, victim, who):
    proc, _, _, pids = _start(python, "--workers", "2", "--metrics-port", "0", *flags)
    try:
        os.kill(pids[victim], signal.SIGKILL)
        rest = proc.communicate(timeout=60)[1]
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 1
    errors = [line for line in rest.splitlines() if line.startswith("error")]
    assert errors == [
        f"error: {who} (pid {pids[victim]}) stopped: exit code -9; stopping the others"
    ]
    assert all(_gone(p) for p in pids)


def test_shared_models_want_more_than_one_worker(python):
    done = subprocess.run(
        [python, "-m", "audio2anim", "serve", "--port", "0", "--shared-models"],
        cwd=ROOT, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert done.returncode == 2
    assert done.stderr.splitlines() == [
        "error: --shared-models: with --workers K > 1 (one process has one set of models anyway)"
    ]


def test_a_model_host_over_tcp_answers_as_the_model_does_taking_turns_with_another():
    # what a Ray model replica serves (`serve --ray --ray-model-calls socket`): the same host
    # over TCP, where a caller with the addresses of two hosts alternates between them
    import socket
    import threading

    from audio2anim.serve.model_host import ModelHost, RemoteModel
    from audio2anim.serve.server import Server

    async def hosts():
        server = Server(batch_window_ms=1.0, port=0)
        await server.method(None)
        out = []
        for _ in range(2):
            host = ModelHost(server, ("127.0.0.1", 0), b"k" * 32, lambda graph: None)
            host.listen()
            threading.Thread(target=host.serve_forever, daemon=True).start()
            out.append(host)
        return server, out

    server, (a, b) = asyncio.run(hosts())
    try:
        key, batcher = next(iter(server.batching.batchers.items()))
        feeds = batcher.example  # the warm-up's first call of this model
        remote = RemoteModel([a.address, b.address], b"k" * 32, None, key)
        answers = [remote(feeds) for _ in range(4)]
        assert (a.calls, b.calls) == (2, 2)
        alone = batcher.run(feeds)
        for out in answers:
            for name in alone:
                np.testing.assert_allclose(out[name], alone[name], atol=1e-6)
        from multiprocessing import AuthenticationError

        with pytest.raises(AuthenticationError):  # a caller without the key is refused
            RemoteModel([a.address], b"x" * 32, None, key)(feeds)
        assert remote(feeds).keys() == alone.keys()  # and the hosts go on answering
        assert (a.calls, b.calls) == (3, 2)
        # a caller whose host has gone asks where the hosts are now and goes on
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            gone = sock.getsockname()  # nobody listens there once closed
        asked = []
        moved = RemoteModel([gone], b"k" * 32, None, key, lambda: asked.append(1) or [b.address])
        out = moved(feeds)
        for name in alone:
            np.testing.assert_allclose(out[name], alone[name], atol=1e-6)
        assert asked == [1] and b.calls == 3
        with pytest.raises(RuntimeError, match="connection lost"):  # without a way to ask
            RemoteModel([gone], b"k" * 32, None, key)(feeds)
    finally:
        for host in (a, b):
            host.close()
        server.batching.close()
