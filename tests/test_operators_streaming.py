"""Streaming equals offline: wav2vec2 features, the viseme front end, all five predictors.

Tiny randomly initialized models (built here from the tiny configs): these tests check the
streaming code, not what a model learned.
"""

from __future__ import annotations

import numpy as np
import pytest
from tiny_models import PREDICTORS, W2V_TINY, make_tiny_checkpoints, speak

from audio2anim.graph.packets import Packet
from audio2anim.graph.testing import run_operator
from audio2anim.streams import Audio, Features, Visemes


@pytest.fixture(autouse=True)
def one_torch_thread():
    """As the operators do (`models.torch_threads`): with torch's default two OpenMP
    threads, the many small ops of a stream stall whenever another process holds a core
    (30 s instead of 0.3 s for one test here)."""
    from audio2anim.models.torch_threads import configure_torch_threads

    configure_torch_threads()


@pytest.fixture(scope="module")
def ckpts(tmp_path_factory):
    return make_tiny_checkpoints(tmp_path_factory.mktemp("tiny-ckpts"))


@pytest.fixture(scope="module")
def sentence():
    import soxr

    audio, sr, _ = speak("Bob made a map of the moon.")
    return soxr.resample(audio, sr, 16000).astype(np.float32)


def _noise(seconds: float, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return (0.1 * rng.standard_normal(int(16000 * seconds))).astype(np.float32)


def _stream(stream, x: np.ndarray, block: int) -> np.ndarray:
    outs = [stream.push(x[i : i + block]) for i in range(0, len(x), block)] + [stream.flush()]
    return np.concatenate([o for o in outs if len(o)])


def _run_op(op, packets) -> list[Packet]:
    return run_operator(op, packets)["out"]


# -- wav2vec2 ------------------------------------------------------------------------------


@pytest.mark.parametrize("feature", ["posteriors", "hidden-1", "hidden-2"])
@pytest.mark.parametrize("block", [37, 320, 1000, 4800])
def test_wav2vec2_chunked_stream_equals_full_utterance(feature, block):
    from audio2anim.models.wav2vec import build_small
    from audio2anim.models.wav2vec_stream import Wav2Vec2Stream

    front = build_small(chunk_frames=4, left_chunks=2, **W2V_TINY).eval()
    front.feature = feature
    x = _noise(2.3)
    full = front.features(x)
    stream = Wav2Vec2Stream(front)
    got = _stream(stream, x, block)
    assert got.shape == full.shape == (len(x) // 320, front.feature_dim)
    # exact everywhere, the last chunk included (its right padding is the stream's end)
    np.testing.assert_allclose(got, full, atol=2e-5)
    # bounded lookahead: chunk of 4 frames + 1 frame of positional conv
    assert stream.lookahead == 3 + 1


def test_wav2vec2_stream_emits_each_chunk_once_its_lookahead_arrived():
    from audio2anim.models.wav2vec import build_small
    from audio2anim.models.wav2vec_stream import Wav2Vec2Stream

    front = build_small(chunk_frames=4, left_chunks=2, **W2V_TINY).eval()
    stream = Wav2Vec2Stream(front)
    x = _noise(1.0)
    emitted = 0
    for i in range(0, len(x), 320):
        emitted += len(stream.push(x[i : i + 320]))
        frames_in = (i + 320) // 320
        # everything whose chunk and right context are complete has left, nothing else
        complete = max(0, (frames_in - stream.pos_right)) // 4 * 4
        assert emitted == complete


@pytest.mark.parametrize("feature", ["hidden-2", "posteriors+hidden-2"])
def test_wav2vec2_windowed_stream_approximates_full_attention(feature):
    """Full-attention models (foreign checkpoints) stream through a sliding window: exact when
    the window holds the whole utterance, close with a bounded one."""
    from audio2anim.models.wav2vec import build_small
    from audio2anim.models.wav2vec_stream import Wav2Vec2Stream

    front = build_small(chunk_frames=None, **W2V_TINY).eval()
    front.feature = feature
    x = _noise(3.0, seed=1)
    full = front.features(x)
    whole = _stream(Wav2Vec2Stream(front, context_frames=500, lookahead_frames=500), x, 320)
    np.testing.assert_allclose(whole, full, atol=2e-5)
    bounded = _stream(Wav2Vec2Stream(front, context_frames=50, lookahead_frames=10), x, 320)
    assert bounded.shape == full.shape
    scale = np.abs(full).mean()
    err = np.abs(bounded - full).max(axis=1)
    # away from the lookahead edge the error is a small fraction of the feature scale
    assert err.max() < 0.05 * scale
    tiny_ctx = _stream(Wav2Vec2Stream(front, context_frames=2, lookahead_frames=0), x, 320)
    assert np.abs(tiny_ctx - full).max(axis=1).mean() > err.mean()  # less context, worse


def test_feature_wav2vec2_operator_streams_with_media_times(ckpts):
    from audio2anim.models.wav2vec import load_wav2vec2
    from audio2anim.operators.feature_wav2vec2 import Wav2Vec2Features

    x = _noise(1.5, seed=2)
    full = load_wav2vec2(ckpts["wav2vec2"]).features(x)
    op = Wav2Vec2Features(Wav2Vec2Features.Params(model=str(ckpts["wav2vec2"]), hop_ms=40))
    pkts = [Packet(Audio(x[i : i + 480], 16000), i / 16000) for i in range(0, len(x), 480)]
    out = _run_op(op, pkts)
    got = np.concatenate([p.payload.data for p in out])
    np.testing.assert_allclose(got, full, atol=2e-5)
    times = np.array([p.media_time for p in out])
    starts = np.cumsum([0] + [len(p.payload.data) for p in out[:-1]]) * 0.02
    np.testing.assert_allclose(times, starts, atol=1e-9)
    assert out[0].payload.frame_rate == 50 and out[0].payload.kind == "w2v2-posteriors"
    # tiny config: chunk of 4 frames + 1 frame positional conv = 80 ms
    assert op.latency() == pytest.approx(0.08)


def test_feature_wav2vec2_rejects_other_rates(ckpts):
    from audio2anim.operators.feature_wav2vec2 import Wav2Vec2Features

    op = Wav2Vec2Features(Wav2Vec2Features.Params(model=str(ckpts["wav2vec2"])))
    with pytest.raises(ValueError, match="needs 16000 Hz"):
        _run_op(op, [Packet(Audio(np.zeros(480, np.float32), 48000), 0.0)])


# -- viseme front end and pocketsphinx -------------------------------------------------


@pytest.mark.parametrize("backend", ["torch", "onnx"])
def test_feature_visemes_streams_like_the_offline_front_end(ckpts, sentence, backend):
    from audio2anim.models.checkpoint import load
    from audio2anim.models.logmel import logmel
    from audio2anim.models.viseme_frontend import downsample_posteriors
    from audio2anim.operators.feature_visemes import VisemeFeatures

    model, _ = load(ckpts["viseme-frontend"])
    offline = downsample_posteriors(model.posteriors(logmel(sentence)))
    for block in (487, 3200):
        op = VisemeFeatures(
            VisemeFeatures.Params(model=str(ckpts["viseme-frontend"]), backend=backend)
        )
        pkts = [
            Packet(Audio(sentence[i : i + block], 16000), i / 16000)
            for i in range(0, len(sentence), block)
        ]
        out = _run_op(op, pkts)
        probs = np.concatenate([p.payload.probs for p in out])
        np.testing.assert_allclose(probs, offline, atol=1e-5)
        ids = np.concatenate([p.payload.ids for p in out])
        assert (ids == offline.argmax(1)).all()
        assert all(isinstance(p.payload, Visemes) and p.payload.frame_rate == 50 for p in out)
    assert op.latency() == pytest.approx(0.02 + 0.01)  # tiny lookahead 2 frames + pairing


@pytest.mark.parametrize("backend", ["torch", "onnx"])
def test_feature_visemes_viseme_bias_replaces_the_checkpoints(ckpts, sentence, backend, tmp_path):
    """A checkpoint saved with viseme_bias {PP: 1}: by default the operator gives its biased
    posteriors; viseme_bias {} gives the plain model's; {PP: 2} that of a model biased by 2."""
    from audio2anim.models.checkpoint import load, save
    from audio2anim.models.logmel import logmel
    from audio2anim.models.viseme_frontend import downsample_posteriors
    from audio2anim.operators.feature_visemes import VisemeFeatures

    model, side = load(ckpts["viseme-frontend"])
    lm = logmel(sentence)
    expected = {}
    for key, bias in (("plain", {}), ("two", {"PP": 2.0}), ("stored", {"PP": 1.0})):
        model.set_viseme_bias(bias)
        expected[key] = downsample_posteriors(model.posteriors(lm))
    save(model, tmp_path / "biased", side)  # stored with PP: 1.0
    pkts = [
        Packet(Audio(sentence[i : i + 800], 16000), i / 16000) for i in range(0, len(sentence), 800)
    ]
    for key, bias in (("stored", None), ("plain", {}), ("two", {"PP": 2.0})):
        params = VisemeFeatures.Params(
            model=str(tmp_path / "biased"), backend=backend, viseme_bias=bias
        )
        probs = np.concatenate([p.payload.probs for p in _run_op(VisemeFeatures(params), pkts)])
        np.testing.assert_allclose(probs, expected[key], atol=1e-5)
    assert (expected["two"][:, 1] > expected["plain"][:, 1]).all()

    with pytest.raises(ValueError, match="unknown viseme 'P'"):
        VisemeFeatures.Params(viseme_bias={"P": 1.0})
    with pytest.raises(ValueError, match="viseme_bias applies to the trained front end"):
        VisemeFeatures.Params(backend="pocketsphinx", viseme_bias={"PP": 1.0})


def test_feature_visemes_pocketsphinx_backend(sentence):
    from audio2anim.operators.feature_visemes import VisemeFeatures

    lead = np.zeros(8000, np.float32)  # 0.5 s of silence before the sentence
    x = np.concatenate([lead, sentence])
    op = VisemeFeatures(VisemeFeatures.Params(backend="pocketsphinx", stable_ms=100))
    pkts = [Packet(Audio(x[i : i + 320], 16000), i / 16000) for i in range(0, len(x), 320)]
    out = _run_op(op, pkts)
    ids = np.concatenate([p.payload.ids for p in out])
    probs = np.concatenate([p.payload.probs for p in out])
    assert len(ids) == len(x) // 320  # every 20 ms frame, once
    assert np.allclose(probs.sum(1), 1) and set(np.unique(probs)) <= {0.0, 0.5, 1.0}
    assert (ids[:20] == 0).mean() > 0.8  # the leading silence is sil
    speech = ids[25:]
    assert len(set(speech.tolist()) - {0}) >= 3  # several non-silent visemes in the sentence
    assert op.latency() == pytest.approx(0.11)


# -- predictors ------------------------------------------------------------------------


@pytest.mark.parametrize("kind", PREDICTORS)
@pytest.mark.parametrize("backend", ["torch", "onnx"])
def test_predictor_operator_streams_like_offline_predict(ckpts, kind, backend):
    from audio2anim.graph import registry
    from audio2anim.models.checkpoint import load

    model, side = load(ckpts[kind])
    rng = np.random.default_rng(3)
    n, dim = 173, side["hparams"]["in_dim"]
    if kind.startswith("viseme"):
        x = rng.dirichlet(np.ones(15) * 0.3, n).astype(np.float32)
    else:
        x = rng.dirichlet(np.ones(dim), n).astype(np.float32)
    offline = model.predict(x)
    op_cls = registry.get("predictor." + kind.replace("-", "_"))
    for block in (1, 7, 50):
        op = op_cls(op_cls.Params(checkpoint=str(ckpts[kind]), backend=backend))
        pkts = []
        for i in range(0, n, block):
            chunk = x[i : i + block]
            payload = (
                Visemes(chunk.argmax(1), chunk, 50.0)
                if kind.startswith("viseme")
                else Features(chunk, 50.0, "w2v2-posteriors")
            )
            pkts.append(Packet(payload, 1.0 + i / 50))
        out = _run_op(op, pkts)
        got = np.concatenate([p.payload.values for p in out])
        # the autoregressive model included: its state carries across packets
        np.testing.assert_allclose(got, offline, atol=1e-5)
        assert got.min() >= 0 and got.max() <= 1
        names = out[0].payload.names
        from audio2anim import arkit

        assert names == arkit.MOUTH + arkit.EYES
        t = np.array([p.media_time for p in out])
        starts = 1.0 + np.cumsum([0] + [len(p.payload.values) for p in out[:-1]]) / 50
        np.testing.assert_allclose(t, starts, atol=1e-9)
    assert op.latency() == pytest.approx(side["hparams"]["lookahead"] / 50)


def test_predictor_rejects_a_checkpoint_of_another_kind(ckpts):
    from audio2anim.operators.predictor import W2vCNN

    op = W2vCNN(W2vCNN.Params(checkpoint=str(ckpts["w2v-ar"])))
    with pytest.raises(ValueError, match="use predictor.w2v_ar"):
        op.setup()


def test_predictor_rejects_features_of_the_wrong_size(ckpts):
    from audio2anim.operators.predictor import W2vCNN

    op = W2vCNN(W2vCNN.Params(checkpoint=str(ckpts["w2v-cnn"])))
    bad = Packet(Features(np.zeros((3, 7), np.float32), 50.0), 0.0)
    with pytest.raises(ValueError, match="input has 7 dims"):
        _run_op(op, [bad])


def test_missing_checkpoint_is_one_clear_error(tmp_path):
    from audio2anim.operators.predictor import VisemeMLP

    op = VisemeMLP(VisemeMLP.Params(checkpoint=str(tmp_path / "nope")))
    with pytest.raises(FileNotFoundError, match="predictor.viseme_mlp: checkpoint: no checkpoint"):
        op.setup()


def test_feature_wav2vec2_runs_a_foreign_hugging_face_checkpoint(tmp_path):
    """A plain HF Wav2Vec2ForCTC directory (group-norm feature encoder, post-norm layers, no
    audio2anim sidecar, preprocessor normalization): windowed streaming, close to the
    whole-utterance features."""
    import json

    import torch
    from transformers import Wav2Vec2Config, Wav2Vec2ForCTC

    from audio2anim.models.wav2vec import load_wav2vec2
    from audio2anim.operators.feature_wav2vec2 import Wav2Vec2Features

    torch.manual_seed(0)
    cfg = Wav2Vec2Config(
        vocab_size=12, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
        intermediate_size=64, conv_dim=(16,) * 7, num_conv_pos_embeddings=16,
        num_conv_pos_embedding_groups=4, feat_extract_norm="group", do_stable_layer_norm=False,
    )  # fmt: skip
    Wav2Vec2ForCTC(cfg).save_pretrained(str(tmp_path))
    (tmp_path / "preprocessor_config.json").write_text(json.dumps({"do_normalize": True}))
    x = _noise(2.0, seed=4)
    full = load_wav2vec2(tmp_path, feature="hidden-2").features(x)
    params = dict(model=str(tmp_path), feature="hidden-2", context_ms=2000, lookahead_ms=200)
    op = Wav2Vec2Features(Wav2Vec2Features.Params(**params))
    pkts = [Packet(Audio(x[i : i + 320], 16000), i / 16000) for i in range(0, len(x), 320)]
    out = _run_op(op, pkts)
    got = np.concatenate([p.payload.data for p in out])
    assert got.shape == full.shape == (100, 32)
    assert not op.stream.chunked and not op.stream.incremental_encoder
    # group norm and input normalization see only the window: close, not equal
    assert np.abs(got - full).mean() < 0.1 * np.abs(full).mean()
    assert op.latency() == pytest.approx(0.2)  # lookahead_ms + one 20 ms hop - 20 ms


def test_feature_wav2vec2_never_downloads(tmp_path, monkeypatch):
    from audio2anim.operators.feature_wav2vec2 import Wav2Vec2Features

    monkeypatch.setenv("HF_HOME", str(tmp_path))  # an empty cache
    op = Wav2Vec2Features(Wav2Vec2Features.Params(model="someone/wav2vec2-not-here"))
    with pytest.raises(FileNotFoundError, match="not in the local Hugging Face cache"):
        op.setup()


def test_wav2vec2_stream_in_half_precision():
    """The fp16 path the operator takes on cuda (run here on the CPU): same frames, fp16
    rounding only."""
    import torch

    from audio2anim.models.wav2vec import build_small
    from audio2anim.models.wav2vec_stream import Wav2Vec2Stream

    front = build_small(chunk_frames=4, left_chunks=2, **W2V_TINY).eval()
    front.feature = "hidden-2"
    x = _noise(2.0, seed=5)
    full = front.features(x)
    half = _stream(Wav2Vec2Stream(front.to(torch.float16), dtype=torch.float16), x, 320)
    assert half.dtype == np.float32 and half.shape == full.shape
    assert np.abs(half - full).max() < 0.05 * np.abs(full).mean()


def test_w2v_predictor_names_the_feature_it_was_trained_on(ckpts, tmp_path):
    import json
    import shutil

    from audio2anim.operators.predictor import W2vCNN

    ck = tmp_path / "w2v-cnn"
    shutil.copytree(ckpts["w2v-cnn"], ck)
    cfg = json.loads((ck / "config.json").read_text())
    cfg["feature"] = {"feature": "hidden-1"}
    (ck / "config.json").write_text(json.dumps(cfg))
    op = W2vCNN(W2vCNN.Params(checkpoint=str(ck)))
    dim = cfg["hparams"]["in_dim"]
    pkt = Packet(Features(np.zeros((3, dim), np.float32), 50.0, "w2v2-posteriors"), 0.0)
    with pytest.raises(ValueError, match="set feature: hidden-1 on the feature.wav2vec2 node"):
        _run_op(op, [pkt])
