"""Each architecture learns on a tiny generated dataset; checkpoints round-trip exactly."""

import json

import numpy as np
import pytest
import torch
from torch.nn import functional as F

from audio2anim.models.checkpoint import CheckpointError, build, load, save
from audio2anim.models.logmel import logmel
from audio2anim.train.config import HPARAMS
from audio2anim.train.synthetic import _poses, synthetic_utterance

PREDICTORS = ("viseme-mlp", "viseme-cnn", "w2v-cnn", "w2v-ar", "w2v-attention")


@pytest.fixture(scope="module")
def utts():
    rng = np.random.default_rng(0)
    poses = _poses(rng)
    return [synthetic_utterance(rng, poses, 1.0, 2.0) for _ in range(4)]


def _batch(utts, feature_dim=None):
    """(x [B, T, D], y [B, T, 30]) — one-hots of the visemes, or a fixed random projection of
    them into ``feature_dim`` dims (standing in for wav2vec2 features)."""
    eye = np.eye(15, dtype=np.float32)
    x = np.stack([eye[u["vis50"]] for u in utts])
    if feature_dim:
        proj = np.random.default_rng(1).standard_normal((15, feature_dim)).astype(np.float32)
        x = x @ proj
    y = np.stack([u["targets"] for u in utts])
    return torch.as_tensor(x), torch.as_tensor(y)


def _model(kind, in_dim):
    torch.manual_seed(0)
    return build(kind, dict(in_dim=in_dim, out_dim=30, **HPARAMS["tiny"][kind]))


def _fit(model, loss_fn, steps=60, lr=3e-3):
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    losses = []
    for _ in range(steps):
        loss = loss_fn()
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(float(loss.detach()))
    return losses


@pytest.mark.parametrize("kind", PREDICTORS)
def test_predictor_loss_falls(kind, utts):
    dim = 15 if kind.startswith("viseme") else 24
    x, y = _batch(utts, None if dim == 15 else dim)
    model = _model(kind, dim)
    model.set_normalization(x.mean((0, 1)), x.std((0, 1)), y.mean((0, 1)), y.std((0, 1)))
    yn = model.normalize_out(y)
    model.train()

    def loss_fn():
        pred = model(x, yn) if kind == "w2v-ar" else model(x)
        assert pred.shape == y.shape
        return F.mse_loss(pred, yn)

    losses = _fit(model, loss_fn)
    assert np.mean(losses[-5:]) < 0.6 * np.mean(losses[:3]), losses[::10]
    model.eval()
    out = model.predict(x[0].numpy())
    assert out.shape == (x.shape[1], 30) and out.min() >= 0 and out.max() <= 1


def test_viseme_frontend_loss_falls(utts):
    torch.manual_seed(0)
    model = build("viseme-frontend", dict(n_mels=80, **HPARAMS["tiny"]["viseme-frontend"]))
    lm = torch.as_tensor(np.stack([logmel(u["audio"]) for u in utts]))
    lab = torch.as_tensor(np.stack([u["vis100"] for u in utts]))
    model.set_normalization(lm.mean((0, 1)), lm.std((0, 1)))
    lk = model.lookahead
    model.train()

    def loss_fn():
        logits = model(lm)
        return F.cross_entropy(
            logits[:, lk:].reshape(-1, 15), lab[:, : lab.shape[1] - lk].reshape(-1)
        )

    losses = _fit(model, loss_fn, steps=60, lr=1e-2)
    assert np.mean(losses[-5:]) < 0.7 * np.mean(losses[:3]), losses[::10]
    model.eval()
    post = model.posteriors(lm[0].numpy())
    assert post.shape == (lm.shape[1], 15)
    np.testing.assert_allclose(post.sum(-1), 1, atol=1e-5)


def test_wav2vec2_ctc_loss_falls(utts):
    from audio2anim.models.wav2vec import LEFT_PAD, build_small
    from audio2anim.train.data import Utterance

    hp = dict(HPARAMS["tiny"]["wav2vec2"])
    front = build_small(
        chunk_frames=hp.pop("chunk_frames"), left_chunks=hp.pop("left_chunks"), **hp
    )
    audio = torch.as_tensor(np.stack([u["audio"] for u in utts]))
    labels = []
    for u in utts:
        fields = {
            k: u[k]
            for k in (
                "audio",
                "targets",
                "vis100",
                "vis50",
                "seg_start",
                "seg_end",
                "seg_class",
                "seg_label",
            )
        }
        labels.append(Utterance(id="x", voice="v", **fields).ctc_labels())
    flat = torch.as_tensor(np.concatenate(labels))
    tgt_len = torch.as_tensor([len(lab) for lab in labels])
    front.train()

    def loss_fn():
        logits, _ = front.run(F.pad(audio, (LEFT_PAD, 0)))
        logp = torch.log_softmax(logits, -1).transpose(0, 1)
        in_len = torch.full((len(utts),), logits.shape[1])
        return F.ctc_loss(logp, flat, in_len, tgt_len, blank=0, zero_infinity=True)

    losses = _fit(front, loss_fn, steps=25, lr=3e-3)
    assert np.mean(losses[-3:]) < 0.7 * np.mean(losses[:2]), losses[::5]


@pytest.mark.parametrize("kind", PREDICTORS)
def test_predictor_checkpoint_round_trip(kind, utts, tmp_path):
    dim = 15 if kind.startswith("viseme") else 24
    x, y = _batch(utts, None if dim == 15 else dim)
    model = _model(kind, dim)
    model.set_normalization(x.mean((0, 1)), x.std((0, 1)), y.mean((0, 1)), y.std((0, 1)))
    for p in model.parameters():  # move off the init so a missed tensor would show
        p.data.add_(0.01 * torch.randn_like(p))
    model.eval()
    save(model, tmp_path / kind, {"metrics": {"mae": np.float32(0.5)}, "param_names": ["a"]})
    loaded, side = load(tmp_path / kind)
    assert side["kind"] == kind and side["metrics"]["mae"] == 0.5
    assert side["hparams"] == model.hparams
    np.testing.assert_array_equal(loaded.predict(x[0].numpy()), model.predict(x[0].numpy()))
    # the weights are safetensors: loadable without torch.load / pickle
    from safetensors.numpy import load_file

    assert "out_mean" in load_file(str(tmp_path / kind / "model.safetensors"))


def test_frontend_checkpoints_round_trip(utts, tmp_path):
    from audio2anim.models.wav2vec import build_small

    torch.manual_seed(0)
    vis = build("viseme-frontend", dict(n_mels=80, **HPARAMS["tiny"]["viseme-frontend"])).eval()
    lm = logmel(utts[0]["audio"])
    save(vis, tmp_path / "vis", {"lookahead_frames": vis.lookahead})
    vis2, side = load(tmp_path / "vis")
    np.testing.assert_array_equal(vis2.posteriors(lm), vis.posteriors(lm))
    assert side["lookahead_frames"] == vis.lookahead

    hp = dict(HPARAMS["tiny"]["wav2vec2"])
    front = build_small(
        chunk_frames=hp.pop("chunk_frames"), left_chunks=hp.pop("left_chunks"), **hp
    ).eval()
    save(front, tmp_path / "w2v", {"metrics": {"per": 0.3}})
    front2, side = load(tmp_path / "w2v")
    assert side["kind"] == "wav2vec2" and side["metrics"]["per"] == 0.3
    assert front2.chunk_frames == front.chunk_frames and front2.vocab == front.vocab
    np.testing.assert_allclose(
        front2.features(utts[0]["audio"]), front.features(utts[0]["audio"]), atol=1e-6
    )
    assert json.loads((tmp_path / "w2v" / "vocab.json").read_text())["sil"] == 1


def test_bad_checkpoints_fail_clearly(tmp_path):
    with pytest.raises(CheckpointError, match="config.json: missing"):
        load(tmp_path)
    (tmp_path / "config.json").write_text(
        '{"format": "audio2anim-model/1", "kind": "nope", "hparams": {}}'
    )
    with pytest.raises(CheckpointError, match="unknown model kind 'nope'"):
        load(tmp_path)
    (tmp_path / "config.json").write_text('{"format": "other"}')
    with pytest.raises(CheckpointError, match="field 'format'"):
        load(tmp_path)
    (tmp_path / "config.json").write_text(
        '{"format": "audio2anim-model/1", "kind": "viseme-cnn", "hparams": {"in_dim": 15, "out_dim": 30}}'
    )
    with pytest.raises(CheckpointError, match="model.safetensors: missing"):
        load(tmp_path)
