"""Checkpoint integrity: the sha256 of each weight file in its sidecar, checked on load."""

import json
import shutil

import pytest

from audio2anim.models import sidecar as sidecar_mod
from audio2anim.models.checkpoint import MODELS, load
from audio2anim.models.sidecar import ChecksumError, verify_files
from audio2anim.resources import PACKAGE_CHECKPOINTS


def _weight_dirs(root):
    return sorted(p.parent for p in root.rglob("model.safetensors"))


def _files(directory):
    config = json.loads((directory / "config.json").read_text())
    return config.get("files") or (config.get("audio2anim") or {}).get("files")


def test_every_shipped_weight_file_carries_a_sha256_that_verifies():
    dirs = _weight_dirs(PACKAGE_CHECKPOINTS)
    # the wav2vec2 ensemble has two members; the two Whisper viseme heads (offline, live), the
    # three w2v predictors on the Whisper head's posteriors and the live graph's predictor are
    # not among MODELS
    assert len(dirs) == len(MODELS) + 7
    for d in dirs:
        files = _files(d)
        assert files and files["model.safetensors"].startswith("sha256:"), d
        verify_files(d, files)


@pytest.mark.parametrize("model", ["viseme-cnn", "wav2vec2"])
def test_one_flipped_byte_is_a_one_line_error_naming_the_file(tmp_path, model):
    copy = tmp_path / model
    shutil.copytree(PACKAGE_CHECKPOINTS / model, copy)
    weights = next(iter(_weight_dirs(copy))) / "model.safetensors"
    data = bytearray(weights.read_bytes())
    data[len(data) // 2] ^= 0x01
    weights.write_bytes(bytes(data))
    with pytest.raises(ChecksumError) as err:
        load(copy)
    message = str(err.value)
    assert message == f"{weights}: sha256 mismatch — file corrupted or replaced"
    assert "\n" not in message


def test_a_checkpoint_without_the_field_loads_unchecked(tmp_path):
    copy = tmp_path / "viseme-mlp"
    shutil.copytree(PACKAGE_CHECKPOINTS / "viseme-mlp", copy)
    config = json.loads((copy / "config.json").read_text())
    del config["files"]
    (copy / "config.json").write_text(json.dumps(config))
    data = bytearray((copy / "model.safetensors").read_bytes())
    data[-1] ^= 0x01  # inside the last tensor: still a valid safetensors file
    (copy / "model.safetensors").write_bytes(bytes(data))
    model, side = load(copy)
    assert side["kind"] == "viseme-mlp" and "files" not in side


def test_saved_checkpoints_record_the_sha256_and_repeated_loads_do_not_rehash(
    tmp_path, monkeypatch
):
    from audio2anim.models.checkpoint import save

    model, side = load(PACKAGE_CHECKPOINTS / "viseme-mlp")
    out = save(model, tmp_path / "mine", {k: v for k, v in side.items() if k != "files"})
    assert _files(out)["model.safetensors"].startswith("sha256:")
    load(out)
    calls = []
    real = sidecar_mod.sha256_file
    monkeypatch.setattr(sidecar_mod, "sha256_file", lambda p: calls.append(p) or real(p))
    load(out)
    assert calls == []  # verified once per (path, mtime, size) in this process
