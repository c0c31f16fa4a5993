"""The GPU job's scripts end to end on CPU: train_all.py's synthetic dry run, then
ship_checkpoints.py copying its models and writing the run's record, TRAINING.md (keeping hand-written sections)."""

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
MODELS = ("viseme-frontend", "wav2vec2", "viseme-mlp", "viseme-cnn", "w2v-cnn", "w2v-ar",
          "w2v-attention")  # fmt: skip


def run(*args):
    return subprocess.run(
        [sys.executable, *map(str, args)], cwd=ROOT, capture_output=True, text=True, timeout=600
    )


def test_train_all_then_ship(tmp_path):
    from audio2anim.train.synthetic import write_synthetic_export

    extra = tmp_path / "extra"  # other speakers, train side only
    write_synthetic_export(extra, voices=1, utterances_per_voice=2, seconds=1.0, voice_prefix="rec")
    out = tmp_path / "run"
    r = run("scripts/train_all.py", "--synthetic", "--size", "tiny", "--device", "cpu",
            "--out", out, "--minutes", "0.2", "--epochs", "2", "--steps-per-epoch", "3",
            "--add-train", extra)  # fmt: skip
    assert r.returncode == 0, r.stderr[-2000:]
    summary = json.loads((out / "train_all.json").read_text())
    assert set(summary["models"]) == set(MODELS)
    side = json.loads((out / "w2v-cnn" / "config.json").read_text())
    assert "rec0" in side["data"]["split"]["train"]["voices"]

    dest = tmp_path / "checkpoints"
    dest.mkdir()
    hand = "## Real recorded speech\n\nA table someone measured by hand.\n"
    (dest / "TRAINING.md").write_text(
        "# Shipped checkpoints\n\n## Figures (test voices)\n\nold\n\n" + hand
    )
    r = run("scripts/ship_checkpoints.py", out, "--dest", dest)
    assert r.returncode == 0, r.stderr[-2000:]
    for m in MODELS:
        assert (dest / m / "config.json").is_file() and (dest / m / "model.safetensors").is_file()
    readme = (dest / "TRAINING.md").read_text()
    assert readme.count(hand) == 1  # kept, once
    assert "\nold\n" not in readme  # a section the script writes is rewritten
    assert "scripts/train_all.py --synthetic" in readme  # the call that made the models
    assert "w2v-attention (torch " in readme and " on `cpu`):" in readme  # where it ran
    assert "| viseme-frontend |" in readme and "| w2v-attention |" in readme
    assert f"Added to the train side only (`--add-train`): `{extra}`, 2 utterances" in readme

    # an ensemble front end ships like any: its combine call, and each member's training call
    fe = out / "viseme-frontend"
    r = run("-m", "audio2anim", "combine-frontends", fe, fe, "--out", tmp_path / "ens")
    assert r.returncode == 0, r.stderr[-2000:]
    for f in ("config.json", "model.safetensors"):
        (fe / f).write_bytes((tmp_path / "ens" / f).read_bytes())
    r = run("scripts/ship_checkpoints.py", out, "--dest", dest)
    assert r.returncode == 0, r.stderr[-2000:]
    readme = (dest / "TRAINING.md").read_text()
    assert "audio2anim combine-frontends" in readme and "mean of 2 front ends" in readme
    members = readme.split("The 2 members of viseme-frontend:")[1].split("```")[1].splitlines()
    assert [m for m in members if m] == 2 * [members[1]] and "train_all.py --synthetic" in members[
        1
    ]

    # a wav2vec2 ensemble replaces the single model: member directories in, no stale weights
    import shutil

    w2v = out / "wav2vec2"
    r = run("-m", "audio2anim", "combine-frontends", w2v, w2v, "--out",
            tmp_path / "w2v-ens", "--float16")  # fmt: skip
    assert r.returncode == 0, r.stderr[-2000:]
    shutil.rmtree(w2v)
    shutil.copytree(tmp_path / "w2v-ens", w2v)
    r = run("scripts/ship_checkpoints.py", out, "--dest", dest)
    assert r.returncode == 0, r.stderr[-2000:]
    shipped = dest / "wav2vec2"
    assert not (shipped / "model.safetensors").exists()
    assert all((shipped / f"member-{i}" / "model.safetensors").is_file() for i in (0, 1))
    assert "The 2 members of wav2vec2:" in (dest / "TRAINING.md").read_text()
    assert run("scripts/ship_checkpoints.py", dest, "--dest", dest).returncode == 2
    for m in MODELS:  # every shipped weight file carries the sha256 that loading checks
        dirs = [dest / m, *(p.parent for p in (dest / m).glob("*/config.json"))]
        for d in dirs:
            if (d / "model.safetensors").is_file():
                config = json.loads((d / "config.json").read_text())
                files = config.get("files") or config["audio2anim"]["files"]
                assert files["model.safetensors"].startswith("sha256:")
