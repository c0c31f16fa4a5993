"""Streaming equivalences and bounded receptive fields."""

import numpy as np
import pytest
import torch

from audio2anim.models.checkpoint import build
from audio2anim.models.predictors import ARStream
from audio2anim.models.viseme_frontend import VisemeStream, downsample_posteriors

PREDICTORS = ("viseme-mlp", "viseme-cnn", "w2v-cnn", "w2v-ar", "w2v-attention")
HP = {
    "viseme-mlp": dict(past=6, lookahead=2, hidden=32),
    "viseme-cnn": dict(lookahead=2, channels=16, layers=3, kernel=3),
    "w2v-cnn": dict(lookahead=2, channels=16, layers=3, kernel=3),
    "w2v-ar": dict(lookahead=2, channels=16, layers=3, kernel=3, prev_frames=3),
    "w2v-attention": dict(
        lookahead=2, channels=16, layers=3, kernel=3, attn_layers=2, heads=2, attn_window=6
    ),
}


def _model(kind, in_dim=12):
    torch.manual_seed(0)
    m = build(kind, dict(in_dim=in_dim, out_dim=30, **HP[kind]))
    m.set_normalization(
        np.full(in_dim, 0.1), np.full(in_dim, 0.8), np.full(30, 0.3), np.full(30, 0.2)
    )
    return m.eval()


def _run(model, x):
    with torch.no_grad():
        xt = torch.as_tensor(x)[None]
        return (model.generate(xt) if hasattr(model, "generate") else model(xt))[0].numpy()


@pytest.mark.parametrize("kind", PREDICTORS)
def test_receptive_field_is_bounded(kind):
    """Changing input frame k changes outputs only in [k - lookahead, k + past] — except the
    attention model, whose reach grows by the attention window per attention layer."""
    model = _model(kind)
    rng = np.random.default_rng(0)
    x = rng.standard_normal((60, 12)).astype(np.float32)
    base = _run(model, x)
    k = 40
    x2 = x.copy()
    x2[k] += 3.0
    changed = np.abs(_run(model, x2) - base).max(axis=1) > 1e-6
    first = int(np.argmax(changed))
    assert first == k - model.lookahead, (first, k, model.lookahead)
    if kind not in ("w2v-ar", "w2v-attention"):
        assert not changed[k + model.past + 1 :].any()
    if kind == "w2v-attention":
        reach = model.past + len(model.blocks) * model.attn_window  # windows stack per layer
        assert not changed[k + reach + 1 :].any()


def test_ar_step_by_step_equals_full_pass():
    model = _model("w2v-ar")
    rng = np.random.default_rng(1)
    x = rng.standard_normal((45, 12)).astype(np.float32)
    full = model.predict(x)
    stream = ARStream(model)
    parts, i = [], 0
    for n in (1, 5, 2, 13, 1, 1, 30):
        parts.append(stream.push(x[i : i + n]))
        i += n
    parts.append(stream.flush())
    stepped = np.concatenate(parts)
    assert stepped.shape == full.shape
    np.testing.assert_allclose(stepped, full, atol=1e-5)
    # outputs arrive `lookahead` frames behind the input
    assert len(parts[0]) == 0 and sum(map(len, parts[:-1])) == len(x) - model.lookahead


def test_ar_generate_is_a_fixed_point_of_teacher_forcing():
    """Feeding the generated outputs back (clamped, as generate does) as `prev` in the parallel
    pass reproduces them: the training and inference paths are the same function."""
    model = _model("w2v-ar")
    x = torch.as_tensor(np.random.default_rng(2).standard_normal((1, 30, 12)).astype(np.float32))
    with torch.no_grad():
        gen = model.generate(x)
        again = model(x, model.feedback(gen))
    torch.testing.assert_close(again, gen, atol=1e-5, rtol=1e-5)


def test_viseme_stream_equals_posteriors():
    torch.manual_seed(0)
    model = build(
        "viseme-frontend", dict(channels=16, hidden=16, conv_layers=2, kernel=3, lookahead=3)
    ).eval()
    model.set_normalization(np.full(80, -5.0), np.full(80, 3.0))
    lm = np.random.default_rng(0).normal(-5, 3, (57, 80)).astype(np.float32)
    full = model.posteriors(lm)
    stream = VisemeStream(model)
    parts, i = [], 0
    for n in (1, 2, 10, 4, 40):
        parts.append(stream.push(lm[i : i + n]))
        i += n
    parts.append(stream.flush())
    np.testing.assert_allclose(np.concatenate(parts), full, atol=1e-5)
    # the front end is causal up to its lookahead: future frames beyond it change nothing
    lm2 = lm.copy()
    lm2[30:] += 5
    np.testing.assert_allclose(
        model.posteriors(lm2)[: 30 - model.lookahead], full[: 30 - model.lookahead], atol=1e-6
    )
    assert not np.allclose(model.posteriors(lm2)[30 - model.lookahead], full[30 - model.lookahead])


def test_lookahead_limit():
    with pytest.raises(ValueError, match="60 ms"):
        build("viseme-frontend", dict(lookahead=7))
    with pytest.raises(ValueError, match="receptive field"):
        build("viseme-cnn", dict(in_dim=15, out_dim=30, lookahead=9, layers=2, kernel=3))


def test_downsample_posteriors():
    p = np.zeros((5, 15), np.float32)
    p[[0, 1, 2, 3, 4], [1, 2, 4, 4, 5]] = 1  # the odd last 10 ms frame is dropped
    out = downsample_posteriors(p)
    assert out.shape == (2, 15)
    assert out[0, 1] == 0.5 and out[0, 2] == 0.5 and out[1, 4] == 1
