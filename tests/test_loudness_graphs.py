"""Loudness-driven graphs run by the runner: file or microphone audio -> params -> smoothing ->
CSV, Live Link and VMC outputs."""

from __future__ import annotations

import asyncio
import json
import os
import socket
import struct
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from audio2anim.arkit import ALL
from audio2anim.graph.runner import Runner
from audio2anim.graph.spec import parse_graph

REPO = Path(__file__).resolve().parents[1]
FPS = 60


def tone_bursts(path: Path, rate: int = 44100) -> list[tuple[float, float]]:
    """Write silence / 440 Hz tone alternating every 0.5 s for 2 s; return the tone spans."""
    t = np.arange(2 * rate) / rate
    on = ((t >= 0.5) & (t < 1.0)) | (t >= 1.5)
    x = np.where(on, 0.5 * np.sin(2 * np.pi * 440 * t), 0.0).astype(np.float32)
    sf.write(path, x, rate)
    return [(0.5, 1.0), (1.5, 2.0)]


def read_simple_csv(path: Path) -> tuple[list[str], np.ndarray]:
    lines = path.read_text().splitlines()
    return lines[0].split(","), np.array([[float(c) for c in ln.split(",")] for ln in lines[1:]])


def run(text: str):
    runner = Runner(parse_graph(text))
    return asyncio.run(runner.run())


@pytest.fixture
def udp():
    socks = []

    def make():
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.bind(("127.0.0.1", 0))
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 22)
        s.settimeout(2.0)
        socks.append(s)
        return s

    yield make
    for s in socks:
        s.close()


def test_file_to_smoothed_params_to_csv_livelink_and_vmc(tmp_path, udp):
    wav = tmp_path / "bursts.wav"
    spans = tone_bursts(wav)
    ll, vmc = udp(), udp()
    csv_path, raw_path = tmp_path / "anim.csv", tmp_path / "raw.csv"
    report = run(f"""
name: live-outputs
nodes:
  src:    {{op: source.file, params: {{path: {wav}, block_ms: 20}}}}
  jaw:    {{op: params.loudness_jaw, params: {{frame_rate: {FPS}}}}}
  smooth: {{op: smoothing.one_euro, params: {{min_cutoff: 2.0, beta: 2.0}}}}
  csv:    {{op: sink.csv, params: {{path: {csv_path}, layout: simple}}}}
  raw:    {{op: sink.csv, params: {{path: {raw_path}, layout: simple}}}}
  ll:     {{op: sink.livelink, params: {{port: {ll.getsockname()[1]}, subject: test}}}}
  vmc:    {{op: sink.vmc, params: {{port: {vmc.getsockname()[1]}}}}}
edges:
  - src -> jaw -> smooth -> csv
  - jaw -> raw
  - smooth -> ll
  - smooth -> vmc
""")
    assert report.stopped == "eos", report.error
    header, rows = read_simple_csv(csv_path)
    assert header == ["time", *ALL]
    assert len(rows) == 2 * FPS
    np.testing.assert_allclose(rows[:, 0], np.arange(2 * FPS) / FPS, atol=1e-6)
    jaw = rows[:, 1 + ALL.index("jawOpen")]
    times = rows[:, 0]
    assert np.all((jaw >= 0) & (jaw <= 1))
    for start, end in spans:  # open during the tone, closed in the silence before it
        assert np.all(jaw[(times >= start + 0.1) & (times < end - 0.02)] > 0.95)
        assert np.all(jaw[(times >= start - 0.4) & (times < start - 0.02)] < 0.05)
        # the opening edge (50 % crossing) is not later than the declared timing allows
        first_open = times[np.argmax((times >= start - 0.1) & (jaw >= 0.5))]
        # loudness frame (1/FPS) + One-Euro step delay (EMA lag at min_cutoff + 1 frame) + 1 frame
        smooth_bound = 1.0 / FPS + np.log(2) / (2 * np.pi * 2.0) + 2.0 / FPS
        assert start - 1.0 / FPS <= first_open <= start + smooth_bound
    _, raw = read_simple_csv(raw_path)
    raw_jaw = raw[:, 1 + ALL.index("jawOpen")]
    assert np.mean(np.abs(np.diff(jaw, 2))) <= np.mean(np.abs(np.diff(raw_jaw, 2)))

    # the same frames arrived over UDP (Live Link) and OSC (VMC), in order
    frames = []
    for _ in range(2 * FPS):
        data = ll.recvfrom(2048)[0]
        n_dev = struct.unpack_from(">i", data, 1)[0]
        n_sub = struct.unpack_from(">i", data, 5 + n_dev)[0]
        off = 9 + n_dev + n_sub
        frame = struct.unpack_from(">i", data, off)[0]
        values = struct.unpack_from(">61f", data, off + 17)
        frames.append((frame, values[17]))  # EARFaceBlendShape JawOpen = 17
    assert [f for f, _ in frames] == list(range(2 * FPS))
    np.testing.assert_allclose([v for _, v in frames], jaw, atol=1e-5)

    from pythonosc.osc_bundle import OscBundle

    for i in range(2 * FPS):
        msgs = [(m.address, m.params) for m in OscBundle(vmc.recvfrom(65536)[0])]
        assert msgs[-1][0] == "/VMC/Ext/Blend/Apply"
        assert msgs[0][1][0] == "jawOpen" and msgs[0][1][1] == pytest.approx(jaw[i], abs=1e-5)

    # the run summary reports each operator's declared lookahead beside measured latency
    assert report.nodes["jaw"]["lookahead_ms"] == pytest.approx(1000 / FPS)
    assert report.nodes["smooth"]["lookahead_ms"] == 0.0
    assert report.sinks["csv"]["algorithmic_latency_ms"] == pytest.approx(1000 / FPS)


def test_savgol_lookahead_in_a_graph(tmp_path):
    out = tmp_path / "sg.csv"
    report = run(f"""
nodes:
  src:  {{op: source.synthetic, params: {{kind: noise, amplitude: 0.1, duration_s: 1.0, rate: 16000}}}}
  jaw:  {{op: params.loudness_jaw, params: {{frame_rate: 50}}}}
  sg:   {{op: smoothing.savgol, params: {{window_ms: 200, lookahead_ms: 60}}}}
  out:  {{op: sink.csv, params: {{path: {out}, layout: livelink, timecode_fps: 50}}}}
edges:
  - src -> jaw -> sg -> out
""")
    assert report.stopped == "eos", report.error
    lines = out.read_text().splitlines()
    assert len(lines) == 1 + 50  # every frame, including the lookahead tail flushed at the end
    assert lines[1].startswith("00:00:00:00.000,61,") and lines[-1].startswith("00:00:00:49.000")
    assert report.nodes["sg"]["lookahead_ms"] == pytest.approx(60.0)  # 3 frames at 50 Hz
    assert report.sinks["out"]["algorithmic_latency_ms"] == pytest.approx(20.0 + 60.0)


def test_microphone_graph_through_the_cli_on_alsa_null(tmp_path):
    """`audio2anim run` with source.microphone on a real PortAudio device (ALSA's null PCM)."""
    (tmp_path / ".asoundrc").write_text(
        'pcm.a2a_null {\n type null\n hint { show on description "test" }\n}\n'
    )
    graph = tmp_path / "mic.yaml"
    out = tmp_path / "mic.csv"
    graph.write_text(f"""
name: mic-null
nodes:
  mic: {{op: source.microphone, params: {{device: a2a_null, samplerate: 16000, block_ms: 20, max_seconds: 0.5}}}}
  jaw: {{op: params.loudness_jaw, params: {{frame_rate: 50}}}}
  out: {{op: sink.csv, params: {{path: {out}, layout: simple}}}}
edges:
  - mic -> jaw -> out
""")
    env = dict(os.environ, HOME=str(tmp_path), PYTHONPATH=str(REPO))
    report_path = tmp_path / "report.json"
    result = subprocess.run(
        [sys.executable, "-m", "audio2anim", "run", str(graph), "--report", str(report_path)],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr + result.stdout
    _, rows = read_simple_csv(out)
    assert len(rows) == 25  # 0.5 s at 50 frames/s
    np.testing.assert_allclose(rows[:, 0], np.arange(25) / 50, atol=1e-6)
    # ALSA's null PCM hands PortAudio uninitialised memory, not silence: check range only
    jaw = rows[:, 1 + ALL.index("jawOpen")]
    assert np.all((jaw >= 0) & (jaw <= 1))
    report = json.loads(report_path.read_text())
    assert report["stopped"] == "eos"
    assert report["sinks"]["out"]["e2e_p50_ms"] is not None  # from the callback capture times


def test_shipped_loudness_graph_runs_on_alsa_null(tmp_path, udp):
    """graphs/loudness_avatar.yaml, microphone overridden to ALSA's null PCM, outputs received."""
    (tmp_path / ".asoundrc").write_text(
        'pcm.a2a_null {\n type null\n hint { show on description "test" }\n}\n'
    )
    ll, vmc = udp(), udp()
    sets = [
        "mic.device=a2a_null", "mic.samplerate=16000", "mic.max_seconds=0.3",
        f"unreal.port={ll.getsockname()[1]}", f"vmc.port={vmc.getsockname()[1]}",
    ]  # fmt: skip
    cmd = [sys.executable, "-m", "audio2anim", "run", "graphs/loudness_avatar.yaml", "--quiet"]
    for s in sets:
        cmd += ["--set", s]
    env = dict(os.environ, HOME=str(tmp_path), PYTHONPATH=str(REPO))
    result = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr + result.stdout
    ll.settimeout(0.5)
    vmc.settimeout(0.5)
    received = {"ll": 0, "vmc": 0}
    for name, sock in (("ll", ll), ("vmc", vmc)):
        try:
            while True:
                sock.recvfrom(65536)
                received[name] += 1
        except TimeoutError:
            pass
    # 0.3 s at 60 frames/s; drop_oldest queues may drop under load, never add
    assert 0 < received["ll"] <= 18 and 0 < received["vmc"] <= 18
