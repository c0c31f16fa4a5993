"""The feature method's predictors on the Whisper encoder: trained on the offline Whisper viseme
head's posteriors (`audio2anim.train.features.feature_frontend`), fed in a graph through
``feature.viseme_probs``, and the shipped ``whisper-w2v-*`` graphs end to end on espeak-ng
speech with silence around it. A stream of another kind or width is refused before start."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from tiny_models import speak

from audio2anim import arkit
from audio2anim.graph.errors import GraphError
from audio2anim.graph.packets import Packet
from audio2anim.graph.testing import run_operator
from audio2anim.streams import Features, Visemes
from audio2anim.visemes import N_VISEMES, VISEME_PROBS

ROOT = Path(__file__).resolve().parents[1]
CKPT = ROOT / "audio2anim" / "checkpoints"
HEAD = CKPT / "whisper-viseme-head"
GRAPHS = ("whisper_w2v_cnn", "whisper_w2v_ar", "whisper_w2v_attention")
NAMES = arkit.MOUTH + arkit.EYES


def _one_line(e: pytest.ExceptionInfo) -> str:
    message = str(e.value)
    assert "\n" not in message
    return message


def test_viseme_probs_passes_the_probabilities_on_as_features():
    rng = np.random.default_rng(0)
    probs = rng.dirichlet(np.ones(N_VISEMES), size=(2, 7)).astype(np.float32)
    packets = [Packet(Visemes(p.argmax(1), p, 50.0), i * 7 / 50.0) for i, p in enumerate(probs)]
    out = run_operator("feature.viseme_probs", packets)["out"]
    feats = [p.payload for p in out]
    assert all(isinstance(f, Features) and f.kind == VISEME_PROBS for f in feats)
    assert [p.media_time for p in out] == [0.0, 7 / 50.0]
    np.testing.assert_array_equal(np.concatenate([f.data for f in feats]), probs.reshape(-1, 15))
    assert feats[0].frame_rate == 50.0


def _refused(text: str) -> str:
    from audio2anim.graph.runner import Runner
    from audio2anim.graph.spec import parse_graph

    runner = Runner(parse_graph(text, source="g.yaml"))
    with pytest.raises(GraphError) as e:
        asyncio.run(runner.run())
    return _one_line(e)


@pytest.mark.skipif(not (CKPT / "whisper-w2v-cnn").is_dir(), reason="not shipped")
def test_wav2vec2_features_are_refused_by_a_whisper_trained_predictor_before_start():
    msg = _refused(f"""
name: g
nodes:
  src:  {{op: source.synthetic, params: {{rate: 16000, duration_s: 0.5}}}}
  feat: {{op: feature.wav2vec2, params: {{model: {CKPT / "wav2vec2"}, feature: posteriors+hidden-4}}}}
  pred: {{op: predictor.w2v_cnn, params: {{checkpoint: {CKPT / "whisper-w2v-cnn"}, backend: onnx}}}}
  out:  {{op: sink.null}}
edges: [src -> feat -> pred -> out]
""")
    assert msg.startswith("g.yaml: feat → pred: the stream is")
    assert "553 values per frame, takes 15" in msg
    assert "features 'w2v2-posteriors+hidden-4', takes 'viseme-probs'" in msg


def test_viseme_probs_are_refused_by_a_wav2vec2_trained_predictor_before_start(tmp_path):
    """The shipped w2v-cnn (553 wav2vec2 dims) fed viseme probabilities (a tiny random
    Whisper and head: the format check needs no real model)."""
    from tiny_models import save_tiny_whisper

    from audio2anim.models.checkpoint import save
    from audio2anim.models.whisper_head import WhisperVisemeHead

    whisper = save_tiny_whisper(tmp_path / "whisper", 16)
    head = save(WhisperVisemeHead(width=16, layers=(-1,), context=1, hidden=8), tmp_path / "head")
    msg = _refused(f"""
name: g
nodes:
  src:   {{op: source.synthetic, params: {{rate: 16000, duration_s: 0.5}}}}
  vis:   {{op: feature.whisper_visemes, params: {{model: {head}, encoder: {whisper}}}}}
  probs: {{op: feature.viseme_probs}}
  pred:  {{op: predictor.w2v_cnn, params: {{checkpoint: {CKPT / "w2v-cnn"}, backend: onnx}}}}
  out:   {{op: sink.null}}
edges: [src -> vis -> probs -> pred -> out]
""")
    assert msg.startswith("g.yaml: probs → pred: the stream is")
    assert "15 values per frame, takes 553" in msg
    assert "features 'viseme-probs', takes 'w2v2-posteriors+hidden-4'" in msg


def test_a_w2v_predictor_trains_and_evaluates_on_the_whisper_heads_posteriors(tmp_path, capsys):
    from audio2anim.cli import main
    from audio2anim.train.synthetic import write_synthetic_export

    export = tmp_path / "export"
    write_synthetic_export(export, voices=3, utterances_per_voice=2, seconds=2.0)
    tiny = ["--size", "tiny", "--epochs", "1", "--steps-per-epoch", "3", "--batch", "4",
            "--crop-s", "1"]  # fmt: skip
    out = tmp_path / "w2v-cnn"
    args = ["train", "w2v-cnn", "--data", str(export), "--frontend", str(HEAD), *tiny]
    assert main([*args, "--out", str(out)]) == 0
    side = json.loads((out / "config.json").read_text())
    assert side["feature"]["kind"] == VISEME_PROBS and side["feature"]["dim"] == N_VISEMES
    assert side["hparams"]["in_dim"] == N_VISEMES
    assert side["feature"]["encoder"]["width"] == 384  # the packaged tiny.en's
    assert "from_audio" in side["metrics"]  # evaluated end to end through the same head
    capsys.readouterr()
    assert main([*args, "--out", str(tmp_path / "x"), "--w2v-feature", "hidden-2"]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "gives its viseme posteriors only" in err


@pytest.fixture(scope="module")
def padded_sentence(tmp_path_factory):
    """An espeak-ng sentence with 0.6 s of silence before and after, and where speech is."""
    audio, sr, _ = speak("Bob made a map of the moon. Pam bought a big blue boat.")
    pad = np.zeros(int(0.6 * sr), np.float32)
    path = tmp_path_factory.mktemp("speech") / "sentence.wav"
    sf.write(path, np.concatenate([pad, audio, pad]), sr, subtype="FLOAT")
    return path, 0.6, 0.6 + len(audio) / sr


@pytest.mark.parametrize("graph", GRAPHS)
def test_the_shipped_graph_animates_speech_and_rests_in_silence(graph, padded_sentence, tmp_path):
    """Loads the packaged Whisper tiny.en (a few seconds) and runs the graph as shipped."""
    from audio2anim.animate.graph_edit import offline_graph
    from audio2anim.graph.runner import Runner

    wav, start, end = padded_sentence
    g = offline_graph(
        ROOT / "audio2anim" / "graphs" / f"{graph}.yaml", wav,
        {"csv": ("sink.csv", {"path": str(tmp_path / "out.csv"), "layout": "simple"})},
    )  # fmt: skip
    runner = Runner(g)
    report = asyncio.run(runner.run())
    assert report.stopped == "eos"
    rows = np.loadtxt(tmp_path / "out.csv", delimiter=",", skiprows=1)
    header = (tmp_path / "out.csv").read_text().split("\n", 1)[0].split(",")
    values = rows[:, [header.index(n) for n in NAMES]]
    assert abs(len(values) - round((end + start) * 50)) <= 1
    assert np.isfinite(values).all() and values.min() >= 0 and values.max() <= 1
    jaw = values[:, NAMES.index("jawOpen")]
    t = np.arange(len(jaw)) / 50.0
    # the silences, less their first and last 0.1 s (the clip's edges) and the lip movements
    # the teacher anticipates or lets settle around the speech
    silence = ((t > 0.1) & (t < start - 0.15)) | ((t > end + 0.25) & (t < t[-1] - 0.1))
    speech = (t > start) & (t < end)
    assert jaw[silence].max() < 0.1, "the jaw stays open in silence"
    assert jaw[speech].max() > 0.3 and (jaw[speech] > 0.15).mean() > 0.3, "the jaw hardly opens"
