"""Faults as a user meets them: signals at random points of ``animate --video``, a sink that
raises, a full disk, and an operator call still running when the graph closes. Every output
is either complete (the MP4 decodes to the end, the CSV parses with consistent rows) or absent.
Each subprocess has its own timeout (a hang guard, not a timing assertion)."""

from __future__ import annotations

import asyncio
import csv
import os
import random
import resource
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

import tests.graph_ops  # noqa: F401
from audio2anim.graph import runner as runner_module
from audio2anim.graph.errors import OperatorError
from audio2anim.graph.runner import Runner
from audio2anim.graph.spec import parse_graph

ROOT = Path(__file__).resolve().parents[1]
SPEECH = ROOT / "audio2anim" / "assets" / "speech.wav"
HANG_S = 180  # a subprocess that has not ended by then hangs


def _env() -> dict:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    return env


def _animate(tmp: Path, *extra: str, **popen) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "audio2anim", "animate", str(SPEECH), "-o", str(tmp / "x.csv"),
           "--video", str(tmp / "x.mp4"), "--quiet", *extra]  # fmt: skip
    return subprocess.Popen(
        cmd, cwd=tmp, env=_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        **popen,
    )  # fmt: skip


def assert_playable(path: Path) -> int:
    """Decode every frame of ``path`` → the number of video frames."""
    import av

    with av.open(str(path)) as c:
        n = sum(1 for _ in c.decode(video=0))
    assert n > 0
    return n


def assert_complete_csv(path: Path) -> int:
    with open(path, newline="") as f:
        rows = list(csv.reader(f))
    assert rows and rows[0][0] == "time"
    assert all(len(r) == len(rows[0]) for r in rows)
    times = [float(r[0]) for r in rows[1:]]
    assert times == sorted(times)
    for r in rows[1:]:
        [float(x) for x in r]
    return len(rows) - 1


def assert_outputs_sound(tmp: Path) -> None:
    """Every file present is complete; no temporary file is left."""
    names = sorted(p.name for p in tmp.iterdir())
    assert not [n for n in names if n.endswith(".tmp")], names
    if (tmp / "x.csv").exists():
        assert_complete_csv(tmp / "x.csv")
    if (tmp / "x.mp4").exists():
        assert_playable(tmp / "x.mp4")


# ----------------------------------------------------------------------- signals


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_signal_at_a_random_point_leaves_complete_outputs(tmp_path, sig):
    rng = random.Random(f"{sig.name}-{os.getpid()}-{time.time_ns()}")
    delays = [rng.uniform(0.5, 20.0) for _ in range(3)]
    runs = []
    for k, delay in enumerate(delays):
        d = tmp_path / f"run{k}"
        d.mkdir()
        runs.append((d, delay, _animate(d)))
    t0 = time.monotonic()
    for _d, delay, proc in sorted(runs, key=lambda r: r[1]):
        time.sleep(max(0.0, t0 + delay - time.monotonic()))
        if proc.poll() is None:
            proc.send_signal(sig)
    for d, delay, proc in runs:
        out, err = proc.communicate(timeout=HANG_S)
        expected = {signal.SIGINT: 130, signal.SIGTERM: 143}[sig]
        if proc.returncode == -sig:
            # the signal came while Python was starting (nothing written) or after the command
            # had finished and given back the signal handlers (its files complete)
            assert_outputs_sound(d)
            continue
        # the signal may come after the command finished: then it exits 0
        assert proc.returncode in (expected, 0), (delay, err)
        assert "Traceback" not in err, err
        assert_outputs_sound(d)


def test_second_signal_aborts_and_leaves_no_corrupt_file(tmp_path):
    proc = _animate(tmp_path)
    deadline = time.monotonic() + HANG_S
    # wait until the CSV is written (the video is rendering), then signal twice
    while not (tmp_path / "x.csv").exists() and proc.poll() is None:
        assert time.monotonic() < deadline
        time.sleep(0.05)
    proc.send_signal(signal.SIGINT)
    time.sleep(0.2)
    if proc.poll() is None:
        proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=HANG_S)
    assert proc.returncode in (0, 1, 130), err
    assert "Traceback" not in err, err
    assert_outputs_sound(tmp_path)


# ----------------------------------------------------------------------- failing sinks and disks


def test_sink_that_raises_stops_the_graph_with_exit_1_and_finalized_outputs(tmp_path):
    log = tmp_path / "log.jsonl"
    graph = tmp_path / "g.yaml"
    graph.write_text(f"""
nodes:
  src: {{op: source.synthetic, params: {{duration_s: 5, block_ms: 10}}}}
  bad: {{op: test.raising_sink, params: {{after: 20}}}}
  log: {{op: sink.jsonl, params: {{path: {log}}}}}
edges: [src -> bad, src -> log]
""")
    code = "import sys, tests.graph_ops; from audio2anim.cli import main; sys.exit(main())"
    p = subprocess.run(
        [sys.executable, "-c", code, "run", str(graph), "--quiet"], cwd=ROOT, env=_env(),
        capture_output=True, text=True, timeout=HANG_S,
    )  # fmt: skip
    assert p.returncode == 1, p.stderr
    errors = [ln for ln in p.stderr.splitlines() if ln.startswith("error:")]
    assert len(errors) == 1 and "bad" in errors[0] and "deliberate sink failure" in errors[0]
    import json

    lines = [json.loads(ln) for ln in log.read_text().splitlines()]  # finalized: all parse
    assert lines


def test_video_to_a_full_device_is_one_line_and_exit_1(tmp_path):
    cmd = [sys.executable, "-m", "audio2anim", "animate", str(SPEECH), "-o", str(tmp_path / "x.csv"),
           "--video", "/dev/full", "--quiet"]  # fmt: skip
    p = subprocess.run(cmd, cwd=tmp_path, env=_env(), capture_output=True, text=True,
                       timeout=HANG_S)  # fmt: skip
    assert p.returncode == 1, p.stderr
    assert "Traceback" not in p.stderr
    errors = [ln for ln in p.stderr.splitlines() if ln.startswith("error:")]
    assert errors == ["error: /dev/full: cannot write the video (No space left on device)"]


def _limit_file_size():
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (20_000, 20_000))


def _params_csv(path: Path, seconds: float = 4.0, fps: int = 25) -> None:
    import math

    lines = ["time,jawOpen,eyeBlinkLeft"]
    for k in range(int(seconds * fps)):
        t = k / fps
        lines.append(f"{t:.6f},{0.5 + 0.5 * math.sin(7 * t):.6f},{float(k % 20 == 0):.6f}")
    path.write_text("\n".join(lines) + "\n")


def test_file_size_limit_leaves_no_partial_video(tmp_path):
    """``render`` under a file-size limit the MP4 exceeds: one line, exit 1, no file."""
    _params_csv(tmp_path / "x.csv")
    cmd = [sys.executable, "-m", "audio2anim", "render", "x.csv", "--audio", str(SPEECH),
           "-o", "x.mp4", "--size", "256"]  # fmt: skip
    p = subprocess.run(cmd, cwd=tmp_path, env=_env(), capture_output=True, text=True,
                       timeout=HANG_S, preexec_fn=_limit_file_size)  # fmt: skip
    assert p.returncode == 1, p.stderr
    assert "Traceback" not in p.stderr
    errors = [ln for ln in p.stderr.splitlines() if "x.mp4" in ln]
    assert len(errors) == 1 and "cannot write the video" in errors[0], p.stderr
    assert not (tmp_path / "x.mp4").exists()
    assert_outputs_sound(tmp_path)


def test_render_stops_on_sigint_with_a_playable_file(tmp_path):
    _params_csv(tmp_path / "x.csv", seconds=60.0)
    cmd = [sys.executable, "-m", "audio2anim", "render", "x.csv", "-o", "x.mp4",
           "--size", "128"]  # fmt: skip
    proc = subprocess.Popen(cmd, cwd=tmp_path, env=_env(), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)  # fmt: skip
    deadline = time.monotonic() + HANG_S
    # signal once the video is being written (its temporary file exists)
    while not list(tmp_path.glob(".x.mp4.*.tmp")) and proc.poll() is None:
        assert time.monotonic() < deadline
        time.sleep(0.05)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=HANG_S)
    assert proc.returncode in (0, 130), err
    assert "Traceback" not in err
    assert_outputs_sound(tmp_path)
    if proc.returncode == 130:
        assert (tmp_path / "x.mp4").exists() or "stopped before the first frame" in err, err


@pytest.mark.parametrize("size", ["511", "8", "10000"])
def test_bad_video_size_is_refused_before_any_audio(tmp_path, size):
    p = subprocess.run(
        [sys.executable, "-m", "audio2anim", "animate", str(SPEECH), "-o", "x.csv",
         "--video", "x.mp4", "--size", size], cwd=tmp_path, env=_env(),
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert p.returncode == 2 and f"--size {size}" in p.stderr
    assert not list(tmp_path.iterdir())


def test_unwritable_video_folder_is_refused_before_any_audio(tmp_path):
    if os.geteuid() == 0:
        pytest.skip("root writes anywhere")
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o500)
    p = subprocess.run(
        [sys.executable, "-m", "audio2anim", "animate", str(SPEECH), "-o", "x.csv",
         "--video", str(ro / "x.mp4")], cwd=tmp_path, env=_env(),
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert p.returncode == 2 and "not writable" in p.stderr
    assert not (tmp_path / "x.csv").exists()


# ----------------------------------------------------------------------- one call at a time


GRAPH = """
nodes:
  src:  {op: source.synthetic, params: {duration_s: 1, block_ms: 10}}
  hold: {op: test.blocking_sink}
edges: [src -> hold]
"""


def _run_with_held_call(release_after_s: float):
    async def main():
        runner = Runner(parse_graph(GRAPH))
        task = asyncio.ensure_future(runner.run())
        while True:
            try:
                op = runner.operator("hold")
                if op.started.is_set():
                    break
            except (KeyError, AttributeError):
                pass
            await asyncio.sleep(0.01)
        runner.stop()
        loop = asyncio.get_running_loop()
        loop.call_later(release_after_s, op.release.set)
        try:
            await asyncio.wait_for(task, 30)
            return op, None
        except OperatorError as e:
            return op, e
        finally:
            op.release.set()

    return asyncio.run(main())


def test_close_waits_for_the_running_call(monkeypatch):
    monkeypatch.setattr(runner_module, "DRAIN_TIMEOUT_S", 0.2)
    monkeypatch.setattr(runner_module, "CLOSE_WAIT_S", 10.0)
    op, error = _run_with_held_call(release_after_s=0.6)  # released after the drain timeout
    assert error is None
    assert op.closed and not op.overlap


def test_close_is_skipped_when_the_call_does_not_finish(monkeypatch):
    monkeypatch.setattr(runner_module, "DRAIN_TIMEOUT_S", 0.1)
    monkeypatch.setattr(runner_module, "CLOSE_WAIT_S", 0.2)
    op, error = _run_with_held_call(release_after_s=5.0)
    assert error is not None and error.node == "hold"
    assert "close() skipped" in str(error)
    assert not op.closed and not op.overlap


def test_render_stopped_before_its_first_frame_is_a_clean_stop(tmp_path, capsys):
    """A signal that comes before the first frame: one line, exit 130, no file."""
    import argparse

    from audio2anim.face.cli import render_command
    from audio2anim.graph.stopping import StopSignals

    _params_csv(tmp_path / "x.csv")
    stops = StopSignals()
    stops.received.append("SIGINT")
    args = argparse.Namespace(params=tmp_path / "x.csv", audio=None, output=tmp_path / "x.mp4",
                              size=64, fps=None, glb=None, background="#000000", msaa=1,
                              stops=stops)  # fmt: skip
    assert stops.exit_code(render_command(args)) == 130
    assert "SIGINT: stopped before the first frame" in capsys.readouterr().err
    assert_outputs_sound(tmp_path)
    assert not (tmp_path / "x.mp4").exists()
