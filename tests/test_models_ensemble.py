"""`combine-frontends`: an ensemble front end is the mean of its members, in every runtime."""

import json

import numpy as np
import pytest
import torch

from audio2anim.cli import main
from audio2anim.models.checkpoint import build, load, save
from audio2anim.models.logmel import logmel
from audio2anim.models.onnx_export import OnnxModel, export_onnx
from audio2anim.models.viseme_frontend import VisemeStream, combine_frontends, ensemble_members
from audio2anim.train.config import HPARAMS
from audio2anim.train.synthetic import write_synthetic_export


def _frontend(seed: int, **changes):
    torch.manual_seed(seed)
    hp = {**HPARAMS["tiny"]["viseme-frontend"], **changes}
    model = build("viseme-frontend", dict(n_mels=80, **hp))
    model.set_normalization(np.full(80, -6.0), np.full(80, 3.0))
    for p in model.parameters():  # untrained GRUs and heads are near-uniform: spread them
        p.data.add_(0.3 * torch.randn_like(p))
    return model.eval()


def _speech_logmel(seconds=1.5):
    t = np.arange(int(seconds * 16000)) / 16000
    x = np.sin(2 * np.pi * 180 * t) * (1 + np.sin(2 * np.pi * 4 * t)) * 0.2
    x += 0.02 * np.random.default_rng(0).standard_normal(len(t))
    return logmel(x.astype(np.float32))


def test_ensemble_posteriors_are_the_members_mean_one_shot_streamed_and_onnx(tmp_path):
    members = [_frontend(s) for s in (1, 2, 3)]
    ens = combine_frontends(members)
    lm = _speech_logmel()
    mean = np.mean([m.posteriors(lm) for m in members], 0)
    assert np.abs(members[0].posteriors(lm) - mean).max() > 0.05  # the members do disagree
    _, side = _assert_every_runtime_gives(mean, ens, lm, tmp_path)
    assert side["hparams"]["members"] == 3


def _assert_every_runtime_gives(expect, model, lm, tmp_path):
    """``model``'s posteriors of ``lm`` equal ``expect`` one-shot, streamed in odd blocks,
    after a save/load round trip and in its ONNX export → the loaded (model, sidecar)."""
    np.testing.assert_allclose(model.posteriors(lm), expect, atol=1e-5)
    stream = VisemeStream(model)
    parts = [stream.push(lm[i : i + 7]) for i in range(0, len(lm), 7)]
    np.testing.assert_allclose(np.concatenate([*parts, stream.flush()]), expect, atol=1e-5)
    save(model, tmp_path / "ens")
    loaded, side = load(tmp_path / "ens")
    np.testing.assert_allclose(loaded.posteriors(lm), expect, atol=1e-5)
    onnx = OnnxModel(export_onnx(tmp_path / "ens", tmp_path / "ens.onnx"))
    np.testing.assert_allclose(onnx.posteriors(lm), expect, atol=1e-4)
    return loaded, side


def test_viseme_bias_reweights_the_posteriors_in_every_runtime(tmp_path):
    """A bias of b on PP multiplies its posterior by e^b before renormalizing: one-shot,
    streamed, after a save/load round trip and in the ONNX export."""
    ens = combine_frontends([_frontend(s) for s in (1, 2, 3)])
    lm = _speech_logmel()
    plain = ens.posteriors(lm)
    ens.set_viseme_bias({"PP": 1.5, "ou": -0.5})
    expect = plain * np.exp([0, 1.5] + [0] * 12 + [-0.5])
    expect /= expect.sum(-1, keepdims=True)
    assert (expect[:, 1] - plain[:, 1]).min() > 0  # PP is more likely everywhere
    loaded, side = _assert_every_runtime_gives(expect, ens, lm, tmp_path)
    assert side["hparams"]["viseme_bias"] == {"PP": 1.5, "ou": -0.5}

    loaded.set_viseme_bias({})  # removed: the plain posteriors, and no key in the sidecar
    np.testing.assert_allclose(loaded.posteriors(lm), plain, atol=1e-5)
    assert "viseme_bias" not in loaded.hparams
    with pytest.raises(ValueError, match="unknown viseme 'B'"):
        loaded.set_viseme_bias({"B": 1.0})


def test_ensemble_stores_only_its_members_weights(tmp_path):
    members = [_frontend(s) for s in (1, 2, 3)]
    save(members[0], tmp_path / "one")
    save(combine_frontends(members), tmp_path / "ens")
    one = (tmp_path / "one" / "model.safetensors").stat().st_size
    ens = (tmp_path / "ens" / "model.safetensors").stat().st_size
    assert ens < 3.1 * one  # no zero blocks between the members


def test_an_ensemble_saved_with_one_dense_gru_still_loads(tmp_path):
    """Ensembles combined before per-member GRUs stored one GRU and one head with zero
    off-diagonal blocks; loading one rewrites it and keeps its posteriors."""
    from safetensors.torch import save_file

    members = [_frontend(s) for s in (1, 2)]
    ens = combine_frontends(members)
    save(ens, tmp_path / "ens")
    state = {k: v for k, v in ens.state_dict().items() if ".grus." not in k and ".heads." not in k}
    h = members[0].hparams["hidden"]
    for name in ("weight_ih_l0", "weight_hh_l0", "bias_ih_l0", "bias_hh_l0"):
        parts = [getattr(m.gru, name) for m in members]
        big = torch.zeros(6 * h, *([2 * parts[0].shape[1]] if parts[0].dim() == 2 else []))
        for i, part in enumerate(parts):
            for g in range(3):
                rows = slice(g * 2 * h + i * h, g * 2 * h + (i + 1) * h)
                if part.dim() == 2:
                    cols = slice(i * part.shape[1], (i + 1) * part.shape[1])
                    big[rows, cols] = part[g * h : (g + 1) * h]
                else:
                    big[rows] = part[g * h : (g + 1) * h]
        state[f"gru.{name}"] = big
    state["out.weight"] = torch.block_diag(*[m.out.weight for m in members])
    state["out.bias"] = torch.cat([m.out.bias for m in members])
    save_file({k: t.contiguous() for k, t in state.items()}, tmp_path / "ens" / "model.safetensors")
    config = json.loads((tmp_path / "ens" / "config.json").read_text())
    config.pop("files")  # such a checkpoint records no sha256: it loads unchecked
    (tmp_path / "ens" / "config.json").write_text(json.dumps(config))

    loaded, _ = load(tmp_path / "ens")
    lm = _speech_logmel()
    mean = np.mean([m.posteriors(lm) for m in members], 0)
    np.testing.assert_allclose(loaded.posteriors(lm), mean, atol=1e-5)


def test_members_must_match():
    a = _frontend(1)
    with pytest.raises(ValueError, match="at least two"):
        combine_frontends([a])
    with pytest.raises(ValueError, match="front end 1: lookahead 1 differs"):
        combine_frontends([a, _frontend(2, lookahead=1)])
    with pytest.raises(ValueError, match="front end 1: channels 8 differs"):
        combine_frontends([a, _frontend(2, channels=8)])


def test_an_ensemble_comes_apart_into_its_members_and_recombines_with_others(tmp_path):
    """`ensemble_members` inverts `combine_frontends`; an ensemble given to it counts as its
    members, each weighted like a single front end."""
    a, b, c = (_frontend(s) for s in (1, 2, 3))
    lm = _speech_logmel()
    ab = combine_frontends([a, b])
    for mine, theirs in zip(ensemble_members(ab), (a, b), strict=True):
        np.testing.assert_allclose(mine.posteriors(lm), theirs.posteriors(lm), atol=1e-6)
    mean = np.mean([m.posteriors(lm) for m in (a, b, c)], 0)
    abc = combine_frontends([ab, c])
    assert abc.members == 3
    np.testing.assert_allclose(abc.posteriors(lm), mean, atol=1e-5)
    ab.set_viseme_bias({"PP": 2.0})  # an ensemble's own bias stays with it
    np.testing.assert_allclose(combine_frontends([ab, c]).posteriors(lm), mean, atol=1e-5)


def test_members_normalized_differently_are_folded_onto_the_first(tmp_path):
    """Front ends trained on different audio have their own input normalization; the ensemble
    keeps the first's and folds the others' into their first conv: the same posteriors in
    every runtime, up to the stream start's left padding, which then stands for the first's
    mean log-mel (these untrained GRUs never quite forget it)."""
    a, b = _frontend(1), _frontend(2)
    b.set_normalization(np.linspace(-7, -4, 80), np.linspace(2, 4, 80))
    lm = _speech_logmel()
    mean = np.mean([m.posteriors(lm) for m in (a, b)], 0)
    ens = combine_frontends([a, b])
    torch.testing.assert_close(ens.in_mean, a.in_mean)
    got = ens.posteriors(lm)
    assert 1e-4 < np.abs(got - mean).max() < 0.01
    unfolded = np.mean([a.posteriors(lm), _frontend(2).posteriors(lm)], 0)  # b read as a's input
    assert np.abs(unfolded - mean).max() > 0.1
    stream = VisemeStream(ens)
    parts = [stream.push(lm[i : i + 7]) for i in range(0, len(lm), 7)]
    np.testing.assert_allclose(np.concatenate([*parts, stream.flush()]), got, atol=1e-5)
    save(ens, tmp_path / "ens")
    onnx = OnnxModel(export_onnx(tmp_path / "ens", tmp_path / "ens.onnx"))
    np.testing.assert_allclose(onnx.posteriors(lm), got, atol=1e-4)


def test_combine_frontends_cli_writes_an_evaluated_checkpoint(tmp_path, capsys):
    export = tmp_path / "export"
    write_synthetic_export(export, voices=3, utterances_per_voice=2, seconds=1.0)
    tiny = ["--size", "tiny", "--epochs", "1", "--steps-per-epoch", "2", "--batch", "2"]
    dirs = []
    for seed in (0, 1):
        out = tmp_path / f"fe{seed}"
        args = ["train", "viseme-frontend", "--data", str(export), "--out", str(out)]
        assert main([*args, "--seed", str(seed), "--split-seed", "0", "--crop-s", "1", *tiny]) == 0
        dirs.append(str(out))
    ens = tmp_path / "ens"
    assert main(["combine-frontends", *dirs, "--out", str(ens), "--data", str(export)]) == 0
    side = json.loads((ens / "config.json").read_text())
    assert [m["seed"] for m in side["ensemble"]["members"]] == [0, 1]
    assert side["training"]["stop_reason"] == "mean of 2 front ends"
    assert side["training"]["options"] == {"split_seed": 0}  # what `eval` splits by
    assert 0 <= side["metrics"]["viseme_frame_accuracy"] <= 1
    assert side["feature"]["kind"] == "logmel" and side["lookahead_frames"] == 2
    assert "viseme_bias" not in side["hparams"]

    biased = tmp_path / "biased"
    assert main(["combine-frontends", *dirs, "--out", str(biased), "--viseme-bias", "PP=1"]) == 0
    assert load(biased)[1]["hparams"]["viseme_bias"] == {"PP": 1.0}
    assert main(["combine-frontends", *dirs, "--out", str(biased), "--viseme-bias", "PP"]) == 2
    assert "--viseme-bias 'PP': expected VISEME=LOGIT, e.g. PP=1.0" in capsys.readouterr().err
    assert main(["combine-frontends", *dirs, "--out", str(biased), "--viseme-bias", "XX=1"]) == 2
    assert "unknown viseme 'XX'" in capsys.readouterr().err

    # an ensemble's members recombine: the second of `ens` with both single ones
    re = tmp_path / "re"
    assert main(["combine-frontends", f"{ens}#1", *dirs, "--out", str(re)]) == 0
    side = json.loads((re / "config.json").read_text())
    assert [m["seed"] for m in side["ensemble"]["members"]] == [1, 0, 1]
    assert side["training"]["stop_reason"] == "mean of 3 front ends"
    assert side["training"]["epochs_run"] == "1+1+1"
    lm = _speech_logmel()
    fronts = [load(d)[0] for d in (dirs[1], *dirs)]
    mean = np.mean([m.posteriors(lm) for m in fronts], 0)
    np.testing.assert_allclose(load(re)[0].posteriors(lm), mean, atol=1e-5)
    for bad, why in ((f"{ens}#2", "members are numbered 0…1, each once; got 2"),
                     (f"{ens}#x", "expected DIR#i,j,… with member numbers from 0")):  # fmt: skip
        assert main(["combine-frontends", bad, dirs[0], "--out", str(re)]) == 2
        assert f"{bad}: {why}" in capsys.readouterr().err

    mlp = tmp_path / "mlp"
    args = ["train", "viseme-mlp", "--data", str(export), "--out", str(mlp), *tiny]
    assert main([*args, "--crop-s", "1"]) == 0
    assert main(["combine-frontends", dirs[0], str(mlp), "--out", str(tmp_path / "x")]) == 2
    assert "a viseme-mlp checkpoint; combine viseme-frontend or wav2vec2" in capsys.readouterr().err


def test_an_ensemble_worse_than_every_member_is_flagged():
    """Two wav2vec2 seeds whose CTC spikes fall on different frames average badly: the pair
    reads PER 0.238 where each alone reads 0.128 and 0.124 (another pair averages fine)."""
    from audio2anim.train.combine import averaging_warning

    def sidecar(own, members, key="phone_error_rate"):
        return {"metrics": {key: own},
                "ensemble": {"members": [{f"test_{key}": m} for m in members]}}  # fmt: skip

    warning = averaging_warning(sidecar(0.238, [0.128, 0.124]))
    assert warning.startswith("the ensemble's test phone error rate 0.238 is worse than every ")
    assert "(0.128, 0.124)" in warning and "\n" not in warning
    assert averaging_warning(sidecar(0.125, [0.128, 0.125])) is None
    assert averaging_warning(sidecar(0.80, [0.82, 0.83], "viseme_frame_accuracy")) is not None
    assert averaging_warning(sidecar(0.85, [0.82, 0.83], "viseme_frame_accuracy")) is None
    assert averaging_warning({"ensemble": {"members": []}}) is None  # not evaluated: no figure
