"""The dataset steps chain into training: a corpus → `data` steps → `train` and `eval` on the
dataset directory, its `data split` deciding which utterances train and which are held out."""

import json

import numpy as np

from audio2anim.cli import main
from audio2anim.data.dataset import Dataset


def test_corpus_dataset_steps_train_and_eval(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    corpus, ds = tmp_path / "corpus", tmp_path / "ds"
    assert main(["data", "synth", "--out", str(corpus), "--hours", "0.004", "--workers", "1",
                 "--voices", "espeak:en-us,festival:kal", "--quiet"]) == 0  # fmt: skip
    assert main(["data", "make-viseme-ids", str(corpus), "--out", str(ds), "--quiet"]) == 0
    assert main(["data", "teach", str(corpus), "--out", str(ds), "--workers", "1", "--quiet"]) == 0
    assert main(["data", "split", str(ds), "--by", "voice", "--test", "0.5", "--seed", "0"]) == 0
    assert main(["data", "normalize", str(ds), "--array", "mouth", "--method", "zscore",
                 "--part", "train"]) == 0  # fmt: skip
    # softmax turns logits stored in the dataset (here: random, [T, 15]) into probabilities
    d = Dataset(ds)
    rng = np.random.default_rng(0)
    for u in d.utterances:
        d.put(u["id"], {"logits": rng.normal(size=(u["frames"], 15)).astype(np.float32)})
    d.declare("logits", {})
    assert main(["data", "softmax", str(ds), "--array", "logits"]) == 0
    p = Dataset(ds).array(d.ids[0], "logits_softmax")
    np.testing.assert_allclose(p.sum(-1), 1.0, rtol=1e-5)
    assert main(["data", "append", str(ds), "--array", "mouth_norm", "--part", "train",
                 "--out", str(tmp_path / "train_mouth.npz")]) == 0  # fmt: skip

    split = json.loads((ds / "split.json").read_text())
    assert main(["train", "viseme-mlp", "--data", str(ds), "--device", "cpu", "--size", "tiny",
                 "--epochs", "1", "--steps-per-epoch", "2", "--batch", "2",
                 "--crop-s", "1"]) == 0  # fmt: skip
    ckpt = tmp_path / "runs" / "viseme-mlp"
    side = json.loads((ckpt / "config.json").read_text())
    held = side["data"]["split"]
    assert held["test"]["voices"] == split["test_voices"]
    assert held["test"]["utterances"] == len(split["test"])
    assert held["train"]["utterances"] == len(split["train"])
    capsys.readouterr()
    assert main(["eval", str(ckpt), "--data", str(ds)]) == 0
    metrics = json.loads((tmp_path / "eval-viseme-mlp" / "metrics.json").read_text())
    assert metrics["split"] == "test" and "oracle" in metrics


def test_dataset_targets_are_its_teach_arrays(tmp_path):
    from audio2anim.train.data import load_data

    corpus, ds = tmp_path / "corpus", tmp_path / "ds"
    assert main(["data", "synth", "--out", str(corpus), "--hours", "0.002", "--workers", "1",
                 "--voices", "espeak:en-us", "--quiet"]) == 0  # fmt: skip
    assert main(["data", "teach", str(corpus), "--out", str(ds), "--workers", "1", "--quiet"]) == 0
    d = Dataset(ds)
    uid = d.ids[0]
    d.put(uid, {"mouth": np.full_like(d.array(uid, "mouth"), 0.25)})
    data = load_data(ds)
    u = next(u for u in data.utterances if u.id == uid)
    np.testing.assert_allclose(u.targets[:, :19], 0.25)
    assert {u.id for u in data.utterances} == set(d.ids)
