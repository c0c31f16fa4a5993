"""The package as installed (a wheel, not the checkout): it carries its graphs and checkpoints and
animates a recording from a directory outside the repository; a missing optional dependency is a
one-line error naming the extra."""

import csv
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest

from audio2anim import arkit
from audio2anim.resources import (
    OPTIONAL,
    checkpoint_candidates,
    find_checkpoint,
    find_graph,
    missing_dependency,
    set_checkpoint_folder,
)
from tests.conftest import ROOT

SPEECH = ROOT / "audio2anim" / "assets" / "speech.wav"


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> Path:
    """A wheel built from a copy of the sources, installed with pip into a folder of its own."""
    tmp = tmp_path_factory.mktemp("install")
    src = tmp / "src"
    src.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, src / name)
    shutil.copytree(
        ROOT / "audio2anim",
        src / "audio2anim",
        ignore=shutil.ignore_patterns("node_modules", "__pycache__", "*.pyc"),
    )
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check", "-q"]
    r = subprocess.run(
        [*pip, "wheel", "--no-deps", "--no-build-isolation", "-w", str(tmp / "dist"), str(src)],
        capture_output=True, text=True, timeout=180,
    )  # fmt: skip
    assert r.returncode == 0, r.stderr
    (wheel,) = (tmp / "dist").glob("audio2anim-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    assert "audio2anim/graphs/viseme_cnn.yaml" in names
    assert "audio2anim/checkpoints/viseme-cnn/model.safetensors" in names
    assert "audio2anim/checkpoints/wav2vec2/member-0/config.json" in names
    assert "audio2anim/checkpoints/README.md" in names
    assert not any("node_modules" in n for n in names)
    site = tmp / "site"
    r = subprocess.run(
        [*pip, "install", "--no-deps", "--no-index", "--target", str(site), str(wheel)],
        capture_output=True, text=True, timeout=180,
    )  # fmt: skip
    assert r.returncode == 0, r.stderr
    return site


def _run(site: Path, cwd: Path, *args: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=str(site))
    env.pop("AUDIO2ANIM_CHECKPOINTS", None)
    return subprocess.run(
        [sys.executable, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=240
    )


def test_the_installed_package_animates_a_recording_from_any_directory(installed, tmp_path):
    work = tmp_path / "elsewhere"
    work.mkdir()
    shutil.copy(SPEECH, work / "rec.wav")
    r = _run(installed, work, "-c", "import audio2anim; print(audio2anim.__file__)")
    assert r.returncode == 0, r.stderr
    assert Path(r.stdout.strip()).is_relative_to(installed)  # not the checkout
    r = _run(installed, work, "-m", "audio2anim", "animate", "rec.wav", "-o", "rec.csv", "--quiet")
    assert r.returncode == 0, r.stderr
    assert "graphs/whisper_w2v_attention.yaml" in r.stderr  # the default graph
    with open(work / "rec.csv", newline="") as f:
        rows = list(csv.reader(f))
    assert rows[0] == ["time", *arkit.ALL]
    values = np.array(rows[1:], dtype=np.float64)
    seconds = 240_000 / 2 / 16_000  # speech.wav: 16-bit mono 16 kHz
    assert abs(len(values) - int(seconds * 50)) <= 2  # every 20 ms frame
    jaw = values[:, rows[0].index("jawOpen")]
    assert jaw.max() > 0.1 and jaw.std() > 0.02  # the mouth moves


def test_graph_and_checkpoint_lookup_order(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("AUDIO2ANIM_CHECKPOINTS", raising=False)
    shipped = find_checkpoint("checkpoints/viseme-cnn")
    assert shipped is not None and shipped.parts[-3:] == ("audio2anim", "checkpoints", "viseme-cnn")
    assert find_checkpoint("viseme-cnn") == shipped
    assert find_graph("graphs/viseme_cnn.yaml").parent.parts[-2:] == ("audio2anim", "graphs")
    assert find_graph("viseme_cnn.yaml") == find_graph("graphs/viseme_cnn.yaml")
    # a user checkpoint folder comes before the shipped checkpoints
    user = tmp_path / "mine"
    shutil.copytree(shipped, user / "viseme-cnn")
    monkeypatch.setenv("AUDIO2ANIM_CHECKPOINTS", str(user))
    assert find_checkpoint("checkpoints/viseme-cnn") == user / "viseme-cnn"
    monkeypatch.setenv("AUDIO2ANIM_CHECKPOINTS", "")
    set_checkpoint_folder(user)  # --checkpoints DIR
    assert find_checkpoint("viseme-cnn") == user / "viseme-cnn"
    # and the current directory before both
    shutil.copytree(shipped, tmp_path / "checkpoints" / "viseme-cnn")
    assert find_checkpoint("checkpoints/viseme-cnn") == tmp_path / "checkpoints" / "viseme-cnn"
    (tmp_path / "graphs").mkdir()
    (tmp_path / "graphs" / "viseme_cnn.yaml").write_text("nodes: {}\n")
    assert find_graph("graphs/viseme_cnn.yaml") == tmp_path / "graphs" / "viseme_cnn.yaml"
    assert len(checkpoint_candidates("checkpoints/nope")) == 3


def test_missing_graph_and_checkpoint_errors_say_where_they_looked(tmp_path, monkeypatch, capsys):
    from audio2anim.cli import main
    from audio2anim.resources import require_checkpoint

    monkeypatch.chdir(tmp_path)
    assert main(["run", "graphs/nope.yaml"]) == 2
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert "graphs/nope.yaml: cannot read graph file: no such file (looked for" in line
    assert str(tmp_path / "graphs" / "nope.yaml") in line
    with pytest.raises(FileNotFoundError, match=r"no checkpoint directory 'checkpoints/nope'.*"):
        require_checkpoint("checkpoints/nope", "predictor.viseme_cnn: checkpoint")


def test_a_missing_optional_dependency_names_its_extra(monkeypatch):
    from audio2anim.graph.errors import GraphError
    from audio2anim.graph.spec import parse_graph

    assert missing_dependency("sink.video", "av") is None  # installed here
    monkeypatch.setitem(OPTIONAL, "no_such_module_a2a", ("PyAV", "render"))
    message = missing_dependency("sink.video", "no_such_module_a2a")
    assert message == "sink.video needs PyAV: pip install 'audio2anim[render]'"
    from audio2anim.sinks.video import VideoSink

    monkeypatch.setattr(VideoSink, "requires", ("no_such_module_a2a",))
    text = "nodes:\n  src: {op: source.synthetic}\n  out: {op: sink.video, params: {path: x.mp4}}\n"
    text += "edges: [src -> out]\n"
    with pytest.raises(GraphError) as e:
        parse_graph(text, source="g.yaml")
    assert str(e.value) == (
        "g.yaml: node 'out' (sink.video) needs PyAV: pip install 'audio2anim[render]'"
    )
