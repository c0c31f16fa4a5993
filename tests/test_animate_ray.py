"""``audio2anim animate --ray``: a batch on a Ray cluster gives the outputs and the failure report
of the local run. The test starts a small local Ray instance on 127.0.0.1 (two CPUs, no
dashboard) and submits the batch from a subprocess, as a user does. Starting Ray takes tens
of seconds on a 2-core machine: slow. Without ray installed (the ``ray`` extra) it is skipped.
Also, in the default run: Ray is never imported without ``--ray``."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from tiny_models import speak

from audio2anim.animate.outputs import read_arkit_csv

ROOT = Path(__file__).resolve().parents[1]
HANG_S = 300


def _env() -> dict:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    # every Ray server binds and advertises 127.0.0.1 (Ray's single-machine mode)
    env["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] = "0"
    env["RAY_USAGE_STATS_ENABLED"] = "0"
    return env


@pytest.fixture(scope="module")
def lines(tmp_path_factory):
    """Six espeak-ng lines at two rates and a corrupt WAV, in a folder tree."""
    root = tmp_path_factory.mktemp("lines")
    (root / "act2").mkdir()
    texts = ["Bob made a map.", "Pam bought a boat.", "Where are my keys?",
             "Open the window.", "The moon is blue.", "Please pass the paper."]  # fmt: skip
    for k, text in enumerate(texts):
        audio, sr, _ = speak(text)
        if k % 2:
            import soxr

            audio, sr = soxr.resample(audio, sr, 44100).astype(np.float32), 44100
        sf.write(root / ("act2" if k > 2 else "") / f"line{k}.wav", audio, sr)
    (root / "broken.wav").write_bytes(b"RIFF not really a wav")
    return root


def _animate(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "audio2anim", "animate", *args, "--quiet"],
        env=_env(), capture_output=True, text=True, timeout=HANG_S,
    )  # fmt: skip


@pytest.mark.slow
def test_a_batch_on_ray_writes_what_the_local_run_writes(tmp_path, lines, monkeypatch):
    for key, value in _env().items():  # read by Ray at import
        if key.startswith("RAY_"):
            monkeypatch.setenv(key, value)
    ray = pytest.importorskip("ray", reason="Ray is not installed (pip install 'audio2anim[ray]')")
    from ray._private import ray_constants

    monkeypatch.setattr(ray_constants, "ENABLE_RAY_CLUSTER", False)  # if imported before
    info = ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        address = info.address_info["gcs_address"]
        assert address.startswith("127.0.0.1:")
        fmt = ["--format", "csv,json,tsv"]
        remote = _animate(str(lines), "--out-dir", str(tmp_path / "ray"), *fmt,
                          "--ray", address, "--report", str(tmp_path / "ray.json"))  # fmt: skip
    finally:
        ray.shutdown()
    local = _animate(str(lines), "--out-dir", str(tmp_path / "local"), *fmt, "--workers", "1",
                     "--report", str(tmp_path / "local.json"))  # fmt: skip
    assert remote.returncode == local.returncode == 1, remote.stderr  # the corrupt file
    assert "Traceback" not in remote.stderr
    r_doc = json.loads((tmp_path / "ray.json").read_text())
    l_doc = json.loads((tmp_path / "local.json").read_text())
    assert r_doc == l_doc
    assert r_doc["written"] == 6 and [f["input"] for f in r_doc["failures"]] == [
        str(lines / "broken.wav")
    ]
    r_files = sorted(p.relative_to(tmp_path / "ray") for p in (tmp_path / "ray").rglob("*.*"))
    l_files = sorted(p.relative_to(tmp_path / "local") for p in (tmp_path / "local").rglob("*.*"))
    assert r_files == l_files and len(r_files) == 18  # 6 lines x 3 formats, the tree mirrored
    for rel in r_files:  # the same models on the same audio: the same animation (ONNX Runtime
        # on another thread count rounds differently in the last digits)
        if rel.suffix != ".csv":
            continue
        r, lo = read_arkit_csv(tmp_path / "ray" / rel), read_arkit_csv(tmp_path / "local" / rel)
        assert r.names == lo.names and r.frames == lo.frames
        np.testing.assert_allclose(r.values, lo.values, atol=1e-3)
    assert "6 of 7 files animated" in remote.stderr


def test_ray_is_not_imported_without_the_option(tmp_path):
    audio, sr, _ = speak("Bob made a map.")
    sf.write(tmp_path / "a.wav", audio, sr)
    code = (
        "import sys; from audio2anim.cli import main; "
        f"rc = main(['animate', {str(tmp_path / 'a.wav')!r}, '-o', {str(tmp_path / 'a.csv')!r},"
        " '--quiet']); print(rc, 'ray' in sys.modules)"
    )
    p = subprocess.run([sys.executable, "-c", code], env=_env(), capture_output=True, text=True,
                       timeout=HANG_S)  # fmt: skip
    assert p.stdout.split() == ["0", "False"], p.stderr


def test_ray_without_a_cluster_is_one_line_and_exit_2(tmp_path, lines):
    pytest.importorskip("ray", reason="Ray is not installed (pip install 'audio2anim[ray]')")
    p = _animate(
        str(lines / "line0.wav"), "-o", str(tmp_path / "x.csv"), "--ray", "127.0.0.1:9"
    )  # fmt: skip  (port 9: discard, nothing listens)
    assert p.returncode == 2, p.stderr
    errors = [ln for ln in p.stderr.splitlines() if ln.strip()]
    assert errors[-1].startswith("error: --ray 127.0.0.1:9: cannot connect to the Ray cluster")
    assert "Traceback" not in p.stderr
    assert not (tmp_path / "x.csv").exists()
