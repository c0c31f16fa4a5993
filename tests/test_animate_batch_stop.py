"""A batch as a studio runs it: inputs at mixed sample rates and channel counts in one call, and
SIGTERM/SIGINT to the parent of a worker pool: every output present is complete, no temporary
file and no worker process is left behind, and the report names the inputs not done.
espeak-ng speech, the shipped viseme CNN graph. Each subprocess has its own timeout (a hang
guard, not a timing assertion)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from tiny_models import speak

from audio2anim.animate.outputs import read_arkit_csv
from audio2anim.cli import main

ROOT = Path(__file__).resolve().parents[1]
HANG_S = 180


@pytest.fixture(scope="module")
def line():
    audio, sr, _ = speak("Pam made a map of the boat.")
    return audio, sr


def test_mixed_rates_and_channels_in_one_batch(tmp_path, line):
    """The models resample and mix down every input: 8 kHz stereo, 22.05 kHz mono, 44.1 kHz
    stereo FLAC and 48 kHz 4-channel WAV animate in one call, each for its own duration."""
    import soxr

    audio, sr = line
    (tmp_path / "in").mkdir()
    made = {}
    for name, rate, channels in (("a.wav", 8000, 2), ("b.wav", 22050, 1), ("c.flac", 44100, 2),
                                 ("d.wav", 48000, 4)):  # fmt: skip
        x = soxr.resample(audio, sr, rate).astype(np.float32)
        x = np.stack([x * (0.5 + 0.5 * k / channels) for k in range(channels)], axis=1)
        sf.write(tmp_path / "in" / name, x, rate)
        made[Path(name).stem] = len(x) / rate
    rc = main(["animate", str(tmp_path / "in"), "--out-dir", str(tmp_path / "out"),
               "--workers", "2", "--quiet", "--report", str(tmp_path / "r.json")])  # fmt: skip
    assert rc == 0
    report = json.loads((tmp_path / "r.json").read_text())
    assert report["written"] == 4 and report["failures"] == []
    first = None
    for stem, seconds in made.items():
        anim = read_arkit_csv(tmp_path / "out" / f"{stem}.csv")
        assert abs(anim.frames - seconds * 50) <= 1.5
        jaw = anim.values[:, anim.names.index("jawOpen")]
        first = jaw if first is None else first
        n = min(len(first), len(jaw))  # the same speech at every rate: the jaw moves alike
        assert np.corrcoef(first[:n], jaw[:n])[0, 1] > 0.8


def _env() -> dict:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    return env


def _group_alive(pgid: int) -> list[int]:
    """Processes still in the process group ``pgid`` (the batch and its workers)."""
    alive = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[2]) == pgid and fields[0] != "Z":
            alive.append(int(stat.parent.name))
    return alive


@pytest.fixture(scope="module")
def many_lines(tmp_path_factory, line):
    audio, sr = line
    root = tmp_path_factory.mktemp("many")
    for k in range(40):
        sf.write(root / f"line{k:02d}.wav", np.roll(audio, 97 * k), sr)
    return root


@pytest.mark.parametrize(
    "workers, signals",
    [(2, [signal.SIGTERM]), (2, [signal.SIGINT]), (1, [signal.SIGTERM]),
     (2, [signal.SIGTERM, signal.SIGTERM])],
)  # fmt: skip
def test_signal_stops_a_batch_cleanly(tmp_path, many_lines, workers, signals):
    out, report = tmp_path / "out", tmp_path / "report.json"
    proc = subprocess.Popen(
        [sys.executable, "-m", "audio2anim", "animate", str(many_lines), "--out-dir", str(out),
         "--format", "csv,json", "--workers", str(workers), "--quiet", "--report", str(report)],
        cwd=tmp_path, env=_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        start_new_session=True,  # its own process group: workers are found by it afterwards
    )  # fmt: skip
    deadline = time.monotonic() + HANG_S
    while not list(out.glob("*.json")) and proc.poll() is None:  # a file is done: signal
        assert time.monotonic() < deadline
        time.sleep(0.02)
    for k, sig in enumerate(signals):
        if k:
            time.sleep(0.1)
        proc.send_signal(sig)
    _, err = proc.communicate(timeout=HANG_S)
    assert "Traceback" not in err, err
    time.sleep(0.5)  # a terminated worker is reaped by the parent's pool before it exits
    assert _group_alive(proc.pid) == [], "worker processes left behind"
    aborted = len(signals) > 1
    stopped = {15: 143, 2: 130}[signals[0]]
    if aborted:
        # the second signal aborts (1); a stop that drains faster than the second signal
        # comes has finished already: exited (143), or handed the signal back, whose default
        # action then ends the finished process (-signal)
        assert proc.returncode in (1, stopped, -signals[1]), err
    else:
        assert proc.returncode == stopped, err
    names = sorted(p.name for p in out.rglob("*"))
    assert not [n for n in names if n.endswith(".tmp")], names
    doc = json.loads(report.read_text())
    written = {p.stem for p in out.glob("*.csv")}
    assert doc["failures"] == []
    assert doc["written"] == len(written) if not aborted else doc["written"] <= len(written)
    assert doc["stopped_by"] == signals[0].name
    not_done = {Path(p).stem for p in doc["not_done"]}
    assert not_done  # stopped early: some files left
    if not aborted:  # a file is done with all its outputs, or not started
        assert not (not_done & written) and len(written) + len(not_done) == 40
    for stem in written:  # every output present is complete
        assert read_arkit_csv(out / f"{stem}.csv").frames > 50
    for path in out.glob("*.json"):
        assert json.loads(path.read_text())
    assert f"{len(not_done)} not done" in err
