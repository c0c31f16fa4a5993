"""A wav2vec2 ensemble is the mean of its members' posteriors: one-shot, streamed, saved and
loaded, in the `feature.wav2vec2` operator, and through `combine-frontends`."""

import json

import numpy as np
import pytest
import torch
from tiny_models import W2V_TINY

from audio2anim.cli import main
from audio2anim.graph.packets import Packet
from audio2anim.models.checkpoint import read_sidecar
from audio2anim.models.wav2vec import build_small, load_wav2vec2, save_ensemble, save_wav2vec2
from audio2anim.models.wav2vec_ensemble import Wav2Vec2Ensemble
from audio2anim.models.wav2vec_stream import open_stream
from audio2anim.streams import Audio


def _speechlike(seconds=1.3, seed=0):
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * 16000)) / 16000
    x = 0.3 * np.sin(2 * np.pi * 170 * t) * (1 + np.sin(2 * np.pi * 3 * t))
    return (x + 0.05 * rng.standard_normal(len(t))).astype(np.float32)


def _member(tmp_path, seed: int, **changes):
    front = build_small(chunk_frames=3, left_chunks=2, seed=seed, **{**W2V_TINY, **changes})
    for p in front.parameters():  # untrained heads are near-uniform: spread them
        p.data.add_(0.2 * torch.randn_like(p))
    path = tmp_path / f"w{seed}"
    side = {"training": {"command": f"train seed {seed}", "options": {"seed": seed}}}
    save_wav2vec2(front.eval(), path, side)
    return path


def test_ensemble_features_are_the_members_mean_one_shot_and_streamed(tmp_path):
    paths = [_member(tmp_path, s) for s in (1, 2)]
    members = [load_wav2vec2(p) for p in paths]
    ens = Wav2Vec2Ensemble(members)
    x = _speechlike()
    mean = np.mean([m.features(x) for m in members], 0)
    assert np.abs(members[0].features(x) - mean).max() > 0.02  # the members do disagree
    np.testing.assert_allclose(ens.features(x), mean, atol=1e-5)
    np.testing.assert_allclose(ens.features(x).sum(-1), 1.0, atol=1e-5)

    stream = open_stream(ens)
    parts = [stream.push(x[i : i + 1000]) for i in range(0, len(x), 1000)]
    np.testing.assert_allclose(np.concatenate([*parts, stream.flush()]), mean, atol=2e-5)

    with torch.no_grad():
        logits, hidden = ens.run(torch.nn.functional.pad(torch.as_tensor(x)[None], (80, 0)))
    assert hidden is None
    np.testing.assert_allclose(torch.softmax(logits, -1)[0].numpy(), mean, atol=1e-5)


def test_saved_ensemble_loads_everywhere_and_float16_halves_its_size(tmp_path):
    paths = [_member(tmp_path, s) for s in (1, 2)]
    full = save_ensemble(paths, tmp_path / "ens32", {"note": "fp32"})
    half = save_ensemble(paths, tmp_path / "ens16", {"note": "fp16"}, float16=True)
    x = _speechlike()
    mean = np.mean([load_wav2vec2(p).features(x) for p in paths], 0)
    np.testing.assert_allclose(load_wav2vec2(tmp_path / "ens32").features(x), mean, atol=1e-5)
    loaded16 = load_wav2vec2(tmp_path / "ens16")
    assert next(loaded16.parameters()).dtype == torch.float32  # stored half, run in float32
    np.testing.assert_allclose(loaded16.features(x), mean, atol=0.02)
    np.testing.assert_allclose(half.features(x), loaded16.features(x), atol=1e-6)

    def weight_bytes(d):
        return sum(f.stat().st_size for f in d.rglob("model.safetensors"))

    assert weight_bytes(tmp_path / "ens16") < 0.55 * weight_bytes(tmp_path / "ens32")
    side = read_sidecar(tmp_path / "ens16")
    assert side["kind"] == "wav2vec2" and side["hparams"]["members"] == 2
    assert full.hparams["members"] == 2


@pytest.mark.parametrize("feature", ["hidden-1", "posteriors+hidden-1"])
def test_hidden_features_of_an_ensemble_sit_side_by_side(tmp_path, feature):
    paths = [_member(tmp_path, s) for s in (1, 2)]
    save_ensemble(paths, tmp_path / "ens", {})
    ens = load_wav2vec2(tmp_path / "ens", feature=feature)
    x = _speechlike()
    post = np.mean([load_wav2vec2(p).features(x) for p in paths], 0)
    hidden = [load_wav2vec2(p, feature="hidden-1").features(x) for p in paths]
    want = np.concatenate(([post] if feature.startswith("posteriors") else []) + hidden, -1)
    assert ens.feature_dim == want.shape[1] == (41 if "posteriors" in feature else 0) + 2 * 32
    post_ens = load_wav2vec2(tmp_path / "ens")
    post_ens.feature = feature  # switches every member
    np.testing.assert_allclose(post_ens.features(x), want, atol=1e-5)
    np.testing.assert_allclose(ens.features(x), want, atol=1e-5)
    stream = open_stream(ens)
    parts = [stream.push(x[i : i + 700]) for i in range(0, len(x), 700)]
    np.testing.assert_allclose(np.concatenate([*parts, stream.flush()]), want, atol=2e-5)


def test_feature_wav2vec2_operator_streams_an_ensemble(tmp_path):
    from audio2anim.operators.feature_wav2vec2 import Wav2Vec2Features

    paths = [_member(tmp_path, s) for s in (1, 2)]
    save_ensemble(paths, tmp_path / "ens", {})
    x = _speechlike(seed=3)
    mean = np.mean([load_wav2vec2(p).features(x) for p in paths], 0)
    op = Wav2Vec2Features(Wav2Vec2Features.Params(model=str(tmp_path / "ens")))
    assert op.latency() == pytest.approx(0.06)  # known before setup: chunk 3 + 1 frame
    op.setup()
    assert op.latency() == pytest.approx(0.06)
    out = []
    for i in range(0, len(x), 480):
        out += list(op.process("in", Packet(Audio(x[i : i + 480], 16000), i / 16000)) or ())
    out += list(op.flush() or ())
    op.close()
    got = np.concatenate([p.payload.data for p in out])
    np.testing.assert_allclose(got, mean, atol=2e-5)
    assert out[0].payload.kind == "w2v2-posteriors"


@pytest.mark.parametrize("feature", ["posteriors", "posteriors+hidden-1"])
def test_phone_bias_reweights_the_posteriors_features_but_not_ctc(tmp_path, feature):
    """A stored phone_bias multiplies each member's P/B/M posteriors by e^bias before they
    are averaged: one-shot, streamed and in the operator, whose {} removes it. CTC decoding
    (`run`) and hidden states are untouched."""
    from audio2anim.models.wav2vec import PHONE_VOCAB
    from audio2anim.operators.feature_wav2vec2 import Wav2Vec2Features

    paths = [_member(tmp_path, s) for s in (1, 2)]
    bias = {"P": 2.0, "B": 2.0, "M": 2.0}
    assert main(["combine-frontends", *map(str, paths), "--out", str(tmp_path / "ens"),
                 *[a for p in "PBM" for a in ("--phone-bias", f"{p}=2")]]) == 0  # fmt: skip
    ens = load_wav2vec2(tmp_path / "ens", feature=feature)
    assert read_sidecar(tmp_path / "ens")["hparams"]["phone_bias"] == bias
    x = _speechlike()
    weight = np.ones(len(PHONE_VOCAB))
    weight[[PHONE_VOCAB.index(p) for p in "PBM"]] = np.exp(2.0)
    parts = []
    for m in ens.members:
        post = m.features(x)[:, : len(PHONE_VOCAB)]
        m.set_phone_bias({})
        plain = m.features(x)
        m.set_phone_bias(bias)
        want = plain[:, : len(PHONE_VOCAB)] * weight
        np.testing.assert_allclose(post, want / want.sum(-1, keepdims=True), atol=1e-5)
        parts.append(plain)
    got = ens.features(x)
    v = len(PHONE_VOCAB)
    assert (got[:, [PHONE_VOCAB.index(p) for p in "PBM"]] > 0).all()
    if feature != "posteriors":  # the hidden states are the unbiased members' own
        np.testing.assert_allclose(
            got[:, v:], np.concatenate([p[:, v:] for p in parts], -1), atol=1e-5
        )
    stream = open_stream(ens)
    chunks = [stream.push(x[i : i + 900]) for i in range(0, len(x), 900)]
    np.testing.assert_allclose(np.concatenate([*chunks, stream.flush()]), got, atol=2e-5)

    plain_ens = load_wav2vec2(tmp_path / "ens", feature=feature)
    plain_ens.set_phone_bias({})
    with torch.no_grad():  # CTC decoding reads `run`, which the offsets never touch
        audio = torch.nn.functional.pad(torch.as_tensor(x)[None], (80, 0))
        np.testing.assert_allclose(ens.run(audio)[0].numpy(), plain_ens.run(audio)[0].numpy())
    op = Wav2Vec2Features(
        Wav2Vec2Features.Params(model=str(tmp_path / "ens"), feature=feature, phone_bias={})
    )
    op.setup()
    out = [*(op.process("in", Packet(Audio(x, 16000), 0.0)) or ()), *(op.flush() or ())]
    op.close()
    got_op = np.concatenate([p.payload.data for p in out])
    np.testing.assert_allclose(got_op, plain_ens.features(x), atol=2e-5)
    bad = Wav2Vec2Features(
        Wav2Vec2Features.Params(model=str(tmp_path / "ens"), phone_bias={"PP": 1})
    )
    with pytest.raises(ValueError, match="feature.wav2vec2: phone_bias: unknown phone 'PP'"):
        bad.setup()


def test_members_must_match(tmp_path):
    a = load_wav2vec2(_member(tmp_path, 1))
    with pytest.raises(ValueError, match="at least two"):
        Wav2Vec2Ensemble([a])
    with pytest.raises(ValueError, match="member 1: chunk_frames differs"):
        Wav2Vec2Ensemble([a, load_wav2vec2(_member(tmp_path, 2), chunk_frames=None)])
    b = load_wav2vec2(_member(tmp_path, 3), feature="hidden-1")
    with pytest.raises(ValueError, match="member 1: feature 'hidden-1' differs"):
        Wav2Vec2Ensemble([a, b])


def test_combine_frontends_cli_makes_a_wav2vec2_ensemble(tmp_path, capsys):
    from audio2anim.train.synthetic import write_synthetic_export

    export = tmp_path / "export"
    write_synthetic_export(export, voices=3, utterances_per_voice=2, seconds=1.0)
    paths = [str(_member(tmp_path, s)) for s in (1, 2)]
    out = tmp_path / "ens"
    args = ["combine-frontends", *paths, "--out", str(out), "--float16", "--data", str(export)]
    assert main(args) == 0
    side = json.loads((out / "config.json").read_text())["audio2anim"]
    assert side["metrics"]["phone_error_rate"] >= 0  # evaluated on the export's test voices
    assert [m["seed"] for m in side["ensemble"]["members"]] == [1, 2]
    assert side["ensemble"]["weights"] == "float16"
    assert side["training"]["stop_reason"] == "mean of 2 front ends"
    assert isinstance(load_wav2vec2(out), Wav2Vec2Ensemble)

    again = ["combine-frontends", str(out), paths[0], "--out", str(tmp_path / "x")]
    assert main(again) == 2
    assert "already an ensemble" in capsys.readouterr().err
    visemes = ["combine-frontends", *paths, "--out", str(tmp_path / "y"), "--viseme-bias", "PP=1"]
    assert main(visemes) == 2
    assert "--viseme-bias applies to viseme-frontend members only" in capsys.readouterr().err
