"""``audio2anim serve`` and ``audio2anim stream`` as commands: the server prints its URL and
token, ``stream`` writes the animation in animate's formats, /metrics counts the session, and
SIGINT stops the server cleanly; ``serve --ray`` refuses ``--grpc-port``, and ``--metrics-port``
on a cluster (the nodes' Ray metrics export ports carry the metrics there), in one line. The client library imports no torch."""

from __future__ import annotations

import csv
import signal
import subprocess
import sys
import types
import urllib.request
from pathlib import Path

import numpy as np
import soundfile as sf
from tiny_models import speak

from audio2anim import arkit

ROOT = Path(__file__).resolve().parents[1]
TOKEN = "test-token-0123456789abcdef"


def _line(proc, prefix: str) -> str:
    for line in proc.stderr:
        if line.startswith(prefix):
            return line.strip()
    raise AssertionError(f"the server never printed {prefix!r}")


def test_serve_stream_and_metrics(tmp_path, python):
    audio, sr, _ = speak("mama bob")
    wav = tmp_path / "mama.wav"
    sf.write(wav, audio, sr)
    server = subprocess.Popen(
        [python, "-m", "audio2anim", "serve", "--port", "0", "--token", TOKEN,
         "--metrics-port", "0"],
        cwd=ROOT, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        metrics_url = _line(server, "metrics: ").split(" ", 1)[1]
        url = _line(server, "audio2anim serve: ").split(" ", 2)[2]
        assert url.startswith("ws://127.0.0.1:") and url.endswith(f"/v1/stream?token={TOKEN}")
        base = url.split("?")[0]
        out_csv, out_json = tmp_path / "mama.csv", tmp_path / "mama.json"
        r = subprocess.run(
            [python, "-m", "audio2anim", "stream", str(wav), "--server", base, "--token", TOKEN,
             "-o", str(out_csv), "-o", str(out_json), "--fast"],
            cwd=ROOT, capture_output=True, text=True, timeout=120,
        )  # fmt: skip
        assert r.returncode == 0, r.stderr
        rows = list(csv.reader(out_csv.open()))
        assert rows[0] == ["time", *arkit.ALL]
        assert abs(len(rows) - 1 - len(audio) / sr * 50) <= 2
        jaw = np.array([float(row[1 + arkit.ALL.index("jawOpen")]) for row in rows[1:]])
        assert jaw.max() > 0.2  # the mouth moves
        assert out_json.stat().st_size > 0
        bad = subprocess.run(
            [python, "-m", "audio2anim", "stream", str(wav), "--server", base, "--token",
             "wrong-token-0123456789", "-o", str(tmp_path / "x.csv")],
            cwd=ROOT, capture_output=True, text=True, timeout=60,
        )  # fmt: skip
        assert bad.returncode == 1 and "refused (403" in bad.stderr
        assert not (tmp_path / "x.csv").exists()
        page = urllib.request.urlopen(metrics_url, timeout=10).read().decode()
        assert 'audio2anim_sessions_total{end="done",graph="viseme-cnn"} 1.0' in page
        assert 'audio2anim_sessions_refused_total{reason="token"} 1.0' in page
        assert 'audio2anim_sessions_active{graph="viseme-cnn"} 0.0' in page
    finally:
        server.send_signal(signal.SIGINT)
        rest = server.communicate(timeout=30)[1]
    assert server.returncode == 130
    assert "sessions: done 1, disconnected 0, error 0, stopped 0; refused 1" in rest


def test_serve_ray_refuses_grpc_and_a_clusters_metrics_port_in_one_line(capsys, monkeypatch):
    from audio2anim.cli import main

    started = []  # refused before Ray is imported or started: a stand-in for the Ray command
    stand_in = types.SimpleNamespace(serve_on_ray=lambda args: started.append(args) or 0)
    monkeypatch.setitem(sys.modules, "audio2anim.serve.ray_app", stand_in)
    for argv, message in (
        (["--ray", "local", "--grpc-port", "0"], "error: audio2anim serve: --grpc-port is not "
         "available with --ray: the Ray Serve ingress serves the WebSocket only"),
        (["--ray", "auto", "--metrics-port", "0"], "error: audio2anim serve: --metrics-port is "
         "for --ray local; on a cluster, each node exports the service's metrics on its Ray "
         "metrics export port"),
        (["--ray", "local", "--metrics-port", "0", "--metrics-host", "0.0.0.0"], "error: "
         "audio2anim serve: --metrics-host is not available with --ray"),
    ):  # fmt: skip
        assert main(["serve", *argv]) == 2
        err = [ln for ln in capsys.readouterr().err.splitlines() if ln.strip()]
        assert len(err) == 1, err
        assert err[0].startswith(message), err
    assert not started
    assert main(["serve", "--ray", "local", "--metrics-port", "0"]) == 0  # Ray's export port
    assert len(started) == 1 and started[0].metrics_port == 0


def test_the_client_imports_no_torch():
    code = (
        "import sys, audio2anim.client; "
        "bad = [m for m in ('torch', 'onnxruntime', 'audio2anim.graph') if m in sys.modules]; "
        "print(bad); sys.exit(1 if bad else 0)"
    )
    r = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr


def test_stream_result_latencies_pair_frames_with_their_chunks():
    from audio2anim.client import StreamResult

    r = StreamResult({"names": ["jawOpen"], "fps": 50.0})
    r.sent = [(0.02, 10.0), (0.04, 10.02)]
    r.received, r.audio_end = [10.005, 10.03, 10.05], [0.02, 0.04, None]
    r.values, r.times, r.visemes = [[0.1], [0.2], [0.3]], [0.0, 0.02, 0.04], [[], [], []]
    np.testing.assert_allclose(r.latencies(), [0.005, 0.01])
    anim = r.animation()
    assert anim.values[:, anim.names.index("jawOpen")].tolist() == [
        np.float32(0.1),
        np.float32(0.2),
        np.float32(0.3),
    ]
