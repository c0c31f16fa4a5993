"""The training and evaluation CLIs end to end on a tiny synthetic export."""

import json
import math

import numpy as np
import pytest

from audio2anim.cli import main
from audio2anim.train.data import load_data, mulaw_decode, mulaw_encode
from audio2anim.train.synthetic import write_synthetic_export

TINY = [
    "--size",
    "tiny",
    "--epochs",
    "2",
    "--steps-per-epoch",
    "4",
    "--batch",
    "4",
    "--crop-s",
    "1",
]


@pytest.fixture(scope="module")
def export(tmp_path_factory):
    path = tmp_path_factory.mktemp("export")
    write_synthetic_export(path, voices=3, utterances_per_voice=3, seconds=2.0)
    return path


def test_mulaw_round_trip():
    x = np.linspace(-1, 1, 2001, dtype=np.float32)
    y = mulaw_decode(mulaw_encode(x))
    # µ-law: error grows with amplitude, under 3 % of the value, tiny near zero
    assert np.all(np.abs(y - x) <= 0.03 * np.abs(x) + 2e-4)


def test_export_loads_and_splits_by_voice(export):
    data = load_data(export)
    assert len(data.utterances) == 9 and data.voices == ["synth0", "synth1", "synth2"]
    train, val, test = data.split(0)
    voices = [{u.voice for u in s} for s in (train, val, test)]
    assert (
        not (voices[0] & voices[1]) and not (voices[0] & voices[2]) and not (voices[1] & voices[2])
    )
    u = data.utterances[0]
    assert len(u.audio) == 320 * u.frames and u.targets.shape == (u.frames, 30)
    assert len(u.vis100) == 2 * u.frames
    labels = u.ctc_labels()
    assert len(labels) and labels[0] != 1 and labels[-1] != 1


def test_add_train_joins_the_train_side_only(export, tmp_path, capsys):
    extra = tmp_path / "extra"
    write_synthetic_export(extra, voices=2, utterances_per_voice=2, seconds=1.0, seed=1,
                           voice_prefix="real")  # fmt: skip
    plain, mixed = load_data(export), load_data(export, [extra])
    for a, b in zip(plain.split(0), mixed.split(0), strict=True):
        assert [u.id for u in a] == [u.id for u in b][: len(a)]  # the same val and test voices
    assert len(mixed.split(0)[0]) == len(plain.split(0)[0]) + 4
    assert mixed.split_summary(0)["train"]["voices"][:2] == ["real0", "real1"]
    with pytest.raises(ValueError, match="voice 'synth0' is also in"):
        load_data(export, [export])

    fe = tmp_path / "fe"
    args = ["train", "viseme-frontend", "--data", str(export), "--add-train", str(extra)]
    assert main([*args, "--out", str(fe), "--lipsync-frontend", *TINY]) == 0
    side = json.loads((fe / "config.json").read_text())
    assert side["training"]["options"]["lipsync_frontend"] is True
    assert side["data"]["train_only"][0]["export"] == str(extra)
    assert side["data"]["split"]["train"]["utterances"] == len(plain.split(0)[0]) + 4
    assert "--add-train" in side["training"]["command"]
    assert main([*args[:-1], str(export), "--out", str(fe), *TINY]) == 2
    assert "needs voices of its own" in capsys.readouterr().err


def test_distillation_targets_are_the_teachers_mean_posteriors(export, tmp_path):
    from audio2anim.models.checkpoint import load
    from audio2anim.models.logmel import logmel
    from audio2anim.train.targets import teacher_posteriors

    teachers = []
    for seed in ("0", "1"):
        teachers.append(tmp_path / f"t{seed}")
        args = ["train", "viseme-frontend", "--data", str(export), "--seed", seed]
        assert main([*args, "--split-seed", "0", "--out", str(teachers[-1]), *TINY]) == 0
    utts = load_data(export).utterances[:2]
    soft = teacher_posteriors(teachers, utts, "cpu").numpy()
    assert soft.shape == (sum(2 * u.frames for u in utts), 15)
    n = 2 * utts[0].frames
    mean = np.mean([load(t)[0].posteriors(logmel(utts[0].audio))[:n] for t in teachers], axis=0)
    np.testing.assert_allclose(soft[:n], mean, atol=1e-5)
    assert (
        np.abs(soft[:n] - load(teachers[0])[0].posteriors(logmel(utts[0].audio))[:n]).max() > 1e-3
    )

    student = tmp_path / "student"
    args = ["train", "viseme-frontend", "--data", str(export), "--out", str(student)]
    assert (
        main([*args, "--distill-from", str(teachers[0]), "--distill-from", str(teachers[1]), *TINY])
        == 0
    )
    side = json.loads((student / "config.json").read_text())
    assert side["training"]["options"]["distill_from"] == [str(t) for t in teachers]


def test_split_seed_keeps_the_voices_while_the_seed_changes(export, tmp_path):
    data = load_data(export)
    assert data.split_summary(0) != data.split_summary(1)  # the seed alone moves the voices
    out = tmp_path / "fe"
    args = ["train", "viseme-frontend", "--data", str(export), "--out", str(out)]
    assert main([*args, "--seed", "1", "--split-seed", "0", *TINY]) == 0
    side = json.loads((out / "config.json").read_text())
    assert side["data"]["split"] == data.split_summary(0)
    assert side["training"]["options"]["seed"] == 1
    # eval picks the checkpoint's own split: its test voices, not seed 1's
    assert main(["eval", str(out), "--data", str(export), "--out", str(tmp_path / "ev")]) == 0
    metrics = json.loads((tmp_path / "ev" / "metrics.json").read_text())
    assert metrics["utterances"] == data.split_summary(0)["test"]["utterances"]
    assert metrics["per_voice"].keys() == set(data.split_summary(0)["test"]["voices"])


def test_train_and_eval_viseme_models(export, tmp_path, capsys):
    fe = tmp_path / "viseme-frontend"
    args = ["train", "viseme-frontend", "--data", str(export), "--out", str(fe), "--lookahead", "3"]
    assert main([*args, *TINY]) == 0
    side = json.loads((fe / "config.json").read_text())
    assert side["kind"] == "viseme-frontend" and side["lookahead_frames"] == 3
    assert side["hparams"]["lookahead"] == 3 and side["lookahead_ms"] == 30
    assert side["training"]["command"].startswith("audio2anim train viseme-frontend")
    assert side["training"]["epochs_run"] == 2 and len(side["training"]["history"]) == 2
    assert 0 <= side["metrics"]["viseme_frame_accuracy"] <= 1
    assert np.array(side["metrics"]["confusion_matrix"]).shape == (15, 15)
    assert side["data"]["split"]["test"]["voices"]

    cnn = tmp_path / "viseme-cnn"
    args = [
        "train",
        "viseme-cnn",
        "--data",
        str(export),
        "--out",
        str(cnn),
        "--frontend",
        str(fe),
        *TINY,
    ]
    assert main(args) == 0
    side = json.loads((cnn / "config.json").read_text())
    assert side["frontend"] == "../viseme-frontend"  # relative: the pair moves together
    assert side["feature"]["train_input"] == "mixed"  # one-hots and front-end posteriors
    assert side["param_names"][:2] == ["jawOpen", "mouthClose"] and len(side["param_names"]) == 30
    assert len(side["normalization"]["out_mean"]) == 30
    for mode in ("oracle", "from_audio"):
        m = side["metrics"][mode]
        assert 0 < m["mae"]["mouth"] < 1 and 0 < m["mae"]["eyes"] < 1
        assert m["segments"]["open"] > 0 and not math.isnan(m["open_vowel_openness"])

    out = tmp_path / "report"
    assert main(["eval", str(cnn), "--data", str(export), "--out", str(out)]) == 0
    report = (out / "report.md").read_text()
    assert "bilabial closure recall" in report and "end to end from audio" in report
    assert (out / "plot.png").read_bytes()[:4] == b"\x89PNG"
    assert "report:" in capsys.readouterr().out

    # all three voices: figures per voice too, adding up to the overall counts
    out = tmp_path / "report-all"
    assert main(["eval", str(cnn), "--data", str(export), "--split", "all", "--out", str(out)]) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert sorted(metrics["per_voice"]) == ["synth0", "synth1", "synth2"]
    for mode in ("oracle", "from_audio"):
        for key in ("bilabial", "rounded", "open"):
            per_voice = [v[mode]["segments"][key] for v in metrics["per_voice"].values()]
            assert sum(per_voice) == metrics[mode]["segments"][key]
    assert "## Per voice" in (out / "report.md").read_text()


@pytest.mark.slow
def test_train_w2v_models(export, tmp_path):
    w2v = tmp_path / "wav2vec2"
    assert main(["train", "wav2vec2", "--data", str(export), "--out", str(w2v), *TINY]) == 0
    for model in ("w2v-cnn", "w2v-ar", "w2v-attention"):
        out = tmp_path / model
        assert (
            main(
                [
                    "train",
                    model,
                    "--data",
                    str(export),
                    "--out",
                    str(out),
                    "--frontend",
                    str(w2v),
                    *TINY,
                ]
            )
            == 0
        )
        side = json.loads((out / "config.json").read_text())
        assert side["feature"]["dim"] == 41 and "from_audio" in side["metrics"]
    out = tmp_path / "w2v-cnn-hidden"
    args = ["train", "w2v-cnn", "--data", str(export), "--out", str(out), "--frontend", str(w2v)]
    assert main([*args, "--w2v-feature", "hidden-1", *TINY]) == 0
    side = json.loads((out / "config.json").read_text())
    assert side["feature"]["feature"] == "hidden-1" and side["feature"]["dim"] == 32
    assert "from_audio" in side["metrics"]  # eval used the same hidden-state features


def test_w2v_predictor_needs_frontend(export, tmp_path, capsys):
    assert (
        main(["train", "w2v-cnn", "--data", str(export), "--out", str(tmp_path / "x"), *TINY]) == 2
    )
    assert "needs --frontend" in capsys.readouterr().err


def test_bad_data_dir(tmp_path, capsys):
    assert main(["train", "viseme-cnn", "--data", str(tmp_path), "--out", str(tmp_path / "x")]) == 2
    assert "neither a training-data export" in capsys.readouterr().err


def test_speed_perturb_moves_pitch_and_labels_together():
    """A 200 Hz tone starting at frame 50 (of 100): sped up by r, its pitch is 200 r and the
    frame labels follow the onset to about 50 / r."""
    import torch

    from audio2anim.train.augmentation import speed_perturb, stretch_frames

    sr, hop = 16000, 320
    t = np.arange(100 * hop) / sr
    x = np.where(t >= 50 * hop / sr, np.sin(2 * np.pi * 200 * t), 0.0).astype(np.float32)
    labels = torch.as_tensor((np.arange(100) >= 50).astype(np.int64))[None]
    for seed in range(4):
        gen = torch.Generator().manual_seed(seed)
        y, r = speed_perturb(torch.as_tensor(x)[None], 0.1, gen)
        assert 0.9 <= r <= 1.1 and y.shape[1] % hop == 0
        n = y.shape[1] // hop
        assert n == round(100 / r)
        tail = y[0, -sr // 2 :].numpy()
        freq = np.argmax(np.abs(np.fft.rfft(tail * np.hanning(len(tail))))) * sr / len(tail)
        assert abs(freq - 200 * r) <= 3  # 2 Hz bins
        onset_samples = int(np.argmax(np.abs(y[0].numpy()) > 0.05))
        lab = stretch_frames(labels, r, n)[0].numpy()
        assert abs(int(np.argmax(lab)) - onset_samples / hop) <= 1
    assert speed_perturb(torch.as_tensor(x)[None], 0.0, gen)[1] == 1.0


def test_lipsync_classes_cover_the_metric_windows(export):
    from audio2anim.train import metrics as M
    from audio2anim.train.targets import lipsync_classes

    u = next(u for u in load_data(export).utterances if (u.seg_class == 1).any())
    cls = lipsync_classes(u)
    assert cls.shape == (u.frames,)
    for s, e, c in zip(u.seg_start, u.seg_end, u.seg_class, strict=True):
        if c == 1:
            assert (cls[M.segment_frames(float(s), float(e), u.frames)] == 1).all()
    assert set(np.unique(cls)) <= {0, 1, 2, 3} and (cls == 0).any()


def test_fit_skips_non_finite_steps_and_stops_when_they_persist():
    import torch

    from audio2anim.train.config import TrainOptions
    from audio2anim.train.loop import MAX_BAD_STEPS, fit

    opts = TrainOptions(model="viseme-mlp", out="", epochs=2, steps_per_epoch=10, patience=5)
    torch.manual_seed(0)
    model = torch.nn.Linear(4, 1)
    x, y = torch.randn(32, 4), torch.randn(32, 1)
    calls = {"n": 0}

    def step_fn(progress):
        calls["n"] += 1
        if calls["n"] % 5 == 0:  # a NaN loss
            return model(x).sum() * float("nan")
        if calls["n"] % 5 == 1:  # a finite loss with an infinite gradient (d sqrt(u)/du at 0)
            w = model.weight.sum()
            return torch.sqrt(w - w.detach())
        return torch.nn.functional.mse_loss(model(x), y)

    def val_fn():
        return float(torch.nn.functional.mse_loss(model(x), y)), {}

    result = fit(model, step_fn, val_fn, opts, lr=1e-2)
    assert all(torch.isfinite(p).all() for p in model.parameters())
    assert [h["skipped_steps"] for h in result["history"]] == [4, 4]
    assert all(math.isfinite(h["train_loss"]) for h in result["history"])

    def always_nan(progress):
        return model(x).sum() * float("nan")

    with pytest.raises(RuntimeError, match=f"not finite for {MAX_BAD_STEPS} steps in a row"):
        fit(model, always_nan, val_fn, TrainOptions(model="viseme-mlp", out="", epochs=100))


def test_spec_augment_masks_bands_and_spans_only():
    """Masked cells take the fill value; every other cell is untouched; at most 2 bands of 8 mels
    and 2 spans of 4 frames per crop."""
    import torch

    from audio2anim.train.augmentation import spec_augment

    gen = torch.Generator().manual_seed(0)
    lm = torch.randn(16, 100, 80) + 50  # no cell equals the fill by chance
    fill = torch.arange(80, dtype=torch.float32)
    out = spec_augment(lm, fill, gen)
    hit = out != lm
    assert torch.equal(out[hit], fill.expand_as(lm)[hit])
    band = hit.all(1)  # [B, M] masked over all frames
    span = hit.all(2)  # [B, T] masked over all bands
    assert torch.equal(hit, band[:, None, :] | span[:, :, None])
    assert int(band.sum(-1).max()) <= 16 and int(span.sum(-1).max()) <= 8
    assert band.any() and span.any()


def test_vtlp_and_spec_augment_train_the_front_end_only(export, tmp_path, capsys):
    import torch

    from audio2anim.train.augmentation import vtlp_filterbanks

    fbs = vtlp_filterbanks(0.1, 5, torch.Generator().manual_seed(0), "cpu")
    assert fbs.shape == (5, 257, 80) and len({float(f.sum()) for f in fbs}) == 5

    fe = tmp_path / "fe"
    base = ["train", "viseme-frontend", "--data", str(export), "--out", str(fe), *TINY]
    assert main([*base, "--vtlp", "0.1", "--spec-augment"]) == 0
    opts = json.loads((fe / "config.json").read_text())["training"]["options"]
    assert opts["vtlp"] == 0.1 and opts["spec_augment"] is True
    args = ["train", "viseme-mlp", "--data", str(export), "--out", str(tmp_path / "m"), *TINY]
    assert main([*args, "--vtlp", "0.1"]) == 2
    assert "viseme-frontend only" in capsys.readouterr().err
    assert main([*base, "--vtlp", "0.7"]) == 2
    assert "--vtlp must be in [0, 0.5)" in capsys.readouterr().err


def test_augment_audio_gain_and_eq_ranges_are_the_options(export, tmp_path, capsys):
    """The level of a tone after `augment_audio` falls in the gain range asked for (EQ off, noise
    ≤ -5 dB of the signal), and `train --gain-db/--eq-db` record and check their ranges."""
    import torch

    from audio2anim.train.augmentation import augment_audio

    t = torch.arange(16000) / 16000
    tone = (0.01 * torch.sin(2 * torch.pi * 440 * t)).repeat(64, 1)
    out = augment_audio(tone, torch.Generator().manual_seed(0), gain_db=(-30.0, -20.0), eq_db=0.0)
    db = 20 * torch.log10(out.pow(2).mean(-1).sqrt() / tone.pow(2).mean(-1).sqrt())
    assert float(db.min()) > -30.5 and float(db.max()) < -18.5  # noise adds at most 1.2 dB
    assert float(db.max() - db.min()) > 5  # spread over the range, not one value

    fe = tmp_path / "fe"
    base = ["train", "viseme-frontend", "--data", str(export), "--out", str(fe), *TINY]
    assert main([*base, "--gain-db=-30:15", "--eq-db", "12"]) == 0
    opts = json.loads((fe / "config.json").read_text())["training"]["options"]
    assert opts["gain_db"] == [-30.0, 15.0] and opts["eq_db"] == 12.0
    assert main([*base, "--gain-db=10:-10"]) == 2
    assert "--gain-db must be LO:HI" in capsys.readouterr().err


def refuses(capsys, argv: list[str], message: str) -> None:
    """``main(argv)`` exits 2 with ``message`` in its one-line error."""
    capsys.readouterr()
    assert main(argv) == 2
    assert message in capsys.readouterr().err


def test_posterior_temperature_flattens_the_front_ends_posteriors_keeping_their_ranking(
    export, tmp_path, capsys
):
    """`soften` keeps each frame's arg-max and brings the runner-up nearer; `train
    --posterior-temperature` records its range, refuses a reversed one and models that read no
    viseme posteriors."""
    import torch

    from audio2anim.train.targets import soften

    gen = torch.Generator().manual_seed(0)
    post = torch.softmax(torch.randn(8, 50, 15, generator=gen) * 4, -1)
    assert soften(post, (1.0, 1.0), gen) is post
    soft = soften(post, (2.0, 3.0), gen)
    assert torch.equal(soft.argmax(-1), post.argmax(-1))
    assert torch.allclose(soft.sum(-1), torch.ones(8, 50))
    assert bool((soft.max(-1).values <= post.max(-1).values + 1e-6).all())
    ratio = lambda p: p.topk(2, -1).values[..., 1] / p.max(-1).values  # noqa: E731
    assert bool((ratio(soft) > ratio(post)).all())  # the runner-up nearer the winner
    assert float(post.max(-1).values.mean() - soft.max(-1).values.mean()) > 0.2

    fe = tmp_path / "fe"
    assert main(["train", "viseme-frontend", "--data", str(export), "--out", str(fe), *TINY]) == 0
    mlp = tmp_path / "mlp"
    base = ["train", "viseme-mlp", "--data", str(export), "--out", str(mlp), "--frontend", str(fe)]
    assert main([*base, *TINY, "--posterior-temperature", "1:3"]) == 0
    opts = json.loads((mlp / "config.json").read_text())["training"]["options"]
    assert opts["posterior_temperature"] == [1.0, 3.0]
    refuses(capsys, [*base, *TINY, "--posterior-temperature", "3:1"], "must be LO:HI")
    other = ["train", "viseme-frontend", "--data", str(export), "--out", str(tmp_path / "x")]
    refuses(capsys, [*other, *TINY, "--posterior-temperature", "1:2"], "viseme-mlp/-cnn only")
    alone = ["train", "viseme-mlp", "--data", str(export), "--out", str(tmp_path / "y")]
    refuses(capsys, [*alone, *TINY, "--posterior-temperature", "1:2"], "posteriors of --frontend")


def test_reverb_adds_a_decaying_tail_after_the_direct_sound_and_keeps_the_level(
    export, tmp_path, capsys
):
    """`add_reverb` keeps a click where it was and rings after it; `augment_audio(reverb=0)`
    draws nothing more from the generator (runs without reverb are unaffected); `train --reverb` is
    for the front ends only."""
    import torch

    from audio2anim.train.augmentation import add_reverb, augment_audio

    x = torch.zeros(4, 16000)
    x[:, 4000] = 1.0
    y = add_reverb(x, torch.Generator().manual_seed(0))
    assert bool((y.abs().argmax(-1) == 4000).all())  # the direct sound, not shifted
    assert float(y[:, :4000].abs().max()) < 1e-6  # nothing before it (FFT rounding aside)
    tail = y[:, 4000 + 160 : 4000 + 1600].pow(2).sum(-1)  # 10–100 ms after the click
    late = y[:, 4000 + 9600 : 4000 + 11200].pow(2).sum(-1)  # 600–700 ms after
    assert bool((tail > 0).all()) and bool((late < tail).all())
    ratio = y.pow(2).mean(-1) / x.pow(2).mean(-1)
    assert torch.allclose(ratio, torch.ones(4), rtol=1e-3)

    tone = torch.sin(torch.arange(16000) / 16000 * 2 * torch.pi * 300).repeat(2, 1) * 0.1
    a = augment_audio(tone, torch.Generator().manual_seed(3))
    b = augment_audio(tone, torch.Generator().manual_seed(3), reverb=0.0)
    assert torch.equal(a, b)

    mlp = ["train", "viseme-mlp", "--data", str(export), "--out", str(tmp_path / "m")]
    refuses(capsys, [*mlp, *TINY, "--reverb", "0.5"], "--reverb augments the front ends'")
    fe = ["train", "viseme-frontend", "--data", str(export), "--out", str(tmp_path / "fe")]
    refuses(capsys, [*fe, *TINY, "--reverb", "1.5"], "--reverb must be a fraction in [0, 1]")
    assert main([*fe, *TINY, "--reverb", "0.5"]) == 0
    opts = json.loads((tmp_path / "fe" / "config.json").read_text())["training"]["options"]
    assert opts["reverb"] == 0.5


def test_voice_weights_set_how_often_crops_come_from_each_voice(tmp_path, capsys):
    import torch

    from audio2anim.train.batching import FrameSet

    export = tmp_path / "export"
    write_synthetic_export(export, voices=6, utterances_per_voice=2, seconds=1.0)
    train = load_data(export).split(0)[0]
    voices = sorted({u.voice for u in train})  # synthetic export: synth0 … (engine "synth0")
    gen = torch.Generator().manual_seed(0)
    plain = FrameSet(train, "cpu")
    weighted = FrameSet(train, "cpu", voice_weights={voices[0]: 0.0})
    drawn = {train[int(i)].voice for i in weighted.crop(200, 10, gen)[0]}
    assert voices[0] not in drawn and drawn == set(voices[1:])
    assert {train[int(i)].voice for i in plain.crop(200, 10, gen)[0]} == set(voices)

    out = tmp_path / "fe"
    args = ["train", "viseme-frontend", "--data", str(export), "--out", str(out), *TINY]
    assert main([*args, "--voice-weight", f"{voices[0]}=0.5"]) == 0
    side = json.loads((out / "config.json").read_text())
    assert side["training"]["options"]["voice_weights"] == {voices[0]: 0.5}
    for bad, message in [
        ("festival=2", "matches no training voice"),
        (f"{voices[0]}=x", "expected VOICE=WEIGHT"),
        (f"{voices[0]}=-1", "is negative"),
    ]:
        assert main([*args, "--voice-weight", bad]) == 2
        assert message in capsys.readouterr().err


def test_w2v_augment_learns_from_features_of_augmented_audio(export, tmp_path, capsys):
    from audio2anim.train.features import w2v_features
    from audio2anim.train.random_checkpoints import make_random_checkpoints

    w2v = str(make_random_checkpoints(tmp_path / "ck", size="tiny")["wav2vec2"])
    utts = load_data(export).utterances[:2]
    clean, _ = w2v_features(w2v, utts, "cpu", "hidden-1")
    noisy, _ = w2v_features(w2v, utts, "cpu", "hidden-1", augment_seed=1)
    again, _ = w2v_features(w2v, utts, "cpu", "hidden-1", augment_seed=1)
    assert all(a.shape == b.shape for a, b in zip(clean, noisy, strict=True))
    assert min(float(np.abs(a - b).mean()) for a, b in zip(clean, noisy, strict=True)) > 1e-2
    assert all(np.array_equal(a, b) for a, b in zip(noisy, again, strict=True))

    out = tmp_path / "w2v-cnn"
    args = ["train", "w2v-cnn", "--data", str(export), "--frontend", w2v, *TINY]
    assert main([*args, "--out", str(out), "--w2v-feature", "hidden-1", "--w2v-augment"]) == 0
    side = json.loads((out / "config.json").read_text())
    assert side["feature"]["train_input"] == "augmented" and "from_audio" in side["metrics"]
    args = ["train", "viseme-mlp", "--data", str(export), "--out", str(tmp_path / "m"), *TINY]
    assert main([*args, "--w2v-augment"]) == 2
    assert "--w2v-augment is for the w2v-* predictors" in capsys.readouterr().err


def test_hparam_overrides_a_preset_and_names_unknown_keys(export, tmp_path, capsys):
    out = tmp_path / "fe"
    args = ["train", "viseme-frontend", "--data", str(export), "--out", str(out), *TINY]
    assert main([*args, "--hparam", "hidden=24", "--hparam", "conv_layers=2"]) == 0
    hp = json.loads((out / "config.json").read_text())["hparams"]
    assert hp["hidden"] == 24 and hp["conv_layers"] == 2
    assert main([*args, "--hparam", "width=3"]) == 2
    assert "--hparam width: not a hyper-parameter of viseme-frontend" in capsys.readouterr().err
    assert main([*args, "--hparam", "hidden"]) == 2
    assert "expected KEY=VALUE" in capsys.readouterr().err


def test_frame_accuracy_within_forgives_boundaries_only_as_far_as_asked():
    from audio2anim.train.metrics import frame_accuracy, frame_accuracy_within

    true = np.array([0, 0, 0, 0, 5, 5, 5, 5, 9, 9])
    late = np.array([0, 0, 0, 0, 0, 0, 5, 5, 5, 5])  # both boundaries 2 frames late
    assert frame_accuracy_within(late, true, 0) == frame_accuracy(late, true) == 0.6
    assert frame_accuracy_within(late, true, 1) == 0.8
    assert frame_accuracy_within(late, true, 2) == 1.0
    wrong = np.full(10, 7)  # a viseme that is nowhere: no tolerance helps
    assert frame_accuracy_within(wrong, true, 3) == 0.0
