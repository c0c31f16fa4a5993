"""The on-disk cache of ONNX exports (`audio2anim.models.onnx_export.cached_export`): a cold
export writes one entry, a new process with the cache warm runs the default graph without
importing torch and gives the same animation, a corrupt entry is rebuilt with a warning, and the
cache lives in ``$AUDIO2ANIM_CACHE`` (else the user cache folder), never inside the package."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import audio2anim
from audio2anim.models import onnx_export
from audio2anim.models.onnx_export import cache_dir, cache_key, cached_export

PACKAGE = Path(audio2anim.__file__).parent
CKPT = PACKAGE / "checkpoints" / "viseme-cnn"
REPO = PACKAGE.parent


@pytest.fixture
def cache(tmp_path, monkeypatch) -> Path:
    monkeypatch.setenv("AUDIO2ANIM_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache" / "onnx"


def _entries(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir()) if folder.is_dir() else []


def _package_files() -> set[Path]:
    return {p for p in PACKAGE.rglob("*") if "__pycache__" not in p.parts}


def test_cold_export_writes_one_entry_and_a_second_call_reads_it(cache, monkeypatch):
    before = _package_files()
    model = cached_export(CKPT)
    key = cache_key(CKPT)
    assert _entries(cache) == [f"{key}.json", f"{key}.onnx"]
    assert model.path == cache / f"{key}.onnx"
    assert model.meta["onnx_bytes"] == model.path.stat().st_size
    assert _package_files() == before  # nothing written under the package

    def no_export(*a, **k):
        raise AssertionError("exported again")

    monkeypatch.setattr(onnx_export, "export_onnx", no_export)
    x = np.random.default_rng(0).random((30, model.hp["in_dim"]), np.float32)
    np.testing.assert_array_equal(cached_export(CKPT).predict(x), model.predict(x))


def test_cache_dir_honours_the_environment(tmp_path, monkeypatch):
    monkeypatch.setenv("AUDIO2ANIM_CACHE", str(tmp_path / "c"))
    assert cache_dir() == tmp_path / "c" / "onnx"
    monkeypatch.delenv("AUDIO2ANIM_CACHE")
    monkeypatch.delenv("XDG_CACHE_HOME", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert cache_dir() == tmp_path / "home" / ".cache" / "audio2anim" / "onnx"
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert cache_dir() == tmp_path / "xdg" / "audio2anim" / "onnx"


@pytest.mark.parametrize("damage", ["truncated", "garbage of the same size"])
def test_a_corrupt_entry_is_rebuilt_with_a_warning(cache, capsys, damage):
    path = cached_export(CKPT).path
    good = path.read_bytes()
    if damage == "truncated":
        path.write_bytes(good[: len(good) // 2])
    else:
        path.write_bytes(b"\0" * len(good))
    capsys.readouterr()
    model = cached_export(CKPT)
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "corrupt" in err[0] and "rebuilding" in err[0], err
    assert model.path == path and path.stat().st_size == len(good)
    assert len(_entries(cache)) == 2  # the entry replaced, no temporary left behind


def test_a_changed_sidecar_gets_a_new_key(tmp_path):
    import shutil

    ckpt = tmp_path / "ckpt"
    shutil.copytree(CKPT, ckpt)
    key = cache_key(ckpt)
    assert key == cache_key(CKPT)  # the same weights and sidecar, wherever they are
    side = json.loads((ckpt / "config.json").read_text())
    side["hparams"]["lookahead"] += 1
    (ckpt / "config.json").write_text(json.dumps(side))
    assert cache_key(ckpt) != key


RUN = """
import sys, numpy as np
from audio2anim import Animator
anim = Animator("graphs/viseme_cnn.yaml").animate(sys.argv[1])  # the ONNX graph (no Whisper)
np.save(sys.argv[2], anim.values)
print("torch imported:", "torch" in sys.modules)
"""


def test_a_new_process_with_a_warm_cache_runs_without_torch(cache, tmp_path):
    env = {**os.environ, "PYTHONPATH": str(REPO), "AUDIO2ANIM_CACHE": str(cache.parent)}
    wav = PACKAGE / "assets" / "speech.wav"

    def run(out):
        r = subprocess.run(
            [sys.executable, "-c", RUN, str(wav), str(out)],
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )
        assert r.returncode == 0, r.stderr
        return r.stdout.strip().splitlines()[-1], np.load(out)

    said, cold = run(tmp_path / "cold.npy")
    assert said == "torch imported: True"  # it exported
    assert len(_entries(cache)) == 4  # the front end and the predictor
    said, warm = run(tmp_path / "warm.npy")
    assert said == "torch imported: False"
    np.testing.assert_array_equal(warm, cold)
