"""Default outputs go to the working directory: no command writes into the installed package."""

import os

import pytest

from audio2anim.cli import main
from audio2anim.resources import PACKAGE_DIR


def _package_state():
    return {
        p: (p.stat().st_mtime_ns, p.stat().st_size)
        for p in PACKAGE_DIR.rglob("*")
        if p.is_file() and "node_modules" not in p.parts and "__pycache__" not in p.parts
    }


@pytest.fixture
def in_tmp_cwd(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    before = _package_state()
    yield tmp_path
    assert _package_state() == before  # nothing under the package written or added


@pytest.fixture(scope="module")
def export(tmp_path_factory):
    from audio2anim.train.synthetic import write_synthetic_export

    out = tmp_path_factory.mktemp("data") / "export"
    write_synthetic_export(out, voices=2, utterances_per_voice=2, seconds=1.0)
    return out


TINY = ["--device", "cpu", "--size", "tiny", "--epochs", "1", "--steps-per-epoch", "1",
        "--batch", "2", "--crop-s", "1"]  # fmt: skip


def test_train_eval_export_onnx_default_to_the_working_directory(in_tmp_cwd, export):
    cwd = in_tmp_cwd
    assert main(["train", "viseme-mlp", "--data", str(export), *TINY]) == 0
    assert (cwd / "runs" / "viseme-mlp" / "model.safetensors").is_file()
    assert main(["eval", "checkpoints/viseme-mlp", "--data", str(export)]) == 0  # the shipped one
    assert (cwd / "eval-viseme-mlp" / "report.md").is_file()
    assert main(["export-onnx", "checkpoints/viseme-mlp"]) == 0
    assert (cwd / "viseme-mlp.onnx").is_file()


def test_face_build_defaults_to_the_working_directory(in_tmp_cwd):
    assert main(["face", "build"]) == 0
    assert (in_tmp_cwd / "face.glb").is_file()


def test_train_refuses_an_out_inside_the_package(in_tmp_cwd, export, capsys):
    target = PACKAGE_DIR / "checkpoints" / "viseme-mlp"
    assert main(["train", "viseme-mlp", "--data", str(export), "--out", str(target), *TINY]) == 2
    err = capsys.readouterr().err.strip()
    assert "inside the installed package" in err and "\n" not in err
    assert os.path.isdir(target)
