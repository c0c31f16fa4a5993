"""ONNX export + onnxruntime inference equal the torch models."""

import numpy as np
import pytest
import torch

from audio2anim.models.checkpoint import build, load, save
from audio2anim.models.onnx_export import OnnxModel, export_onnx
from audio2anim.train.config import HPARAMS

PREDICTORS = ("viseme-mlp", "viseme-cnn", "w2v-cnn", "w2v-ar", "w2v-attention")


def _perturbed(model):
    for p in model.parameters():
        p.data.add_(0.05 * torch.randn_like(p))
    return model.eval()


@pytest.mark.parametrize("kind", PREDICTORS)
def test_predictor_onnx_equals_torch(kind, tmp_path):
    torch.manual_seed(0)
    dim = 15 if kind.startswith("viseme") else 20
    model = build(kind, dict(in_dim=dim, out_dim=30, **HPARAMS["tiny"][kind]))
    rng = np.random.default_rng(0)
    model.set_normalization(
        rng.normal(0, 1, dim), rng.uniform(0.5, 2, dim), np.full(30, 0.3), np.full(30, 0.2)
    )
    model = _perturbed(model)
    save(
        model,
        tmp_path / kind,
        {"normalization": {"in_mean": model.in_mean.numpy(), "in_std": model.in_std.numpy()}},
    )
    onnx_path = export_onnx(tmp_path / kind, tmp_path / f"{kind}.onnx")
    ort_model = OnnxModel(onnx_path)
    loaded, _ = load(tmp_path / kind)
    for t in (7, 63):  # dynamic length, shorter and longer than the export example
        x = rng.normal(0, 1, (t, dim)).astype(np.float32)
        np.testing.assert_allclose(ort_model.predict(x), loaded.predict(x), atol=1e-4)


def test_viseme_frontend_onnx_equals_torch(tmp_path):
    torch.manual_seed(0)
    model = build("viseme-frontend", dict(n_mels=80, **HPARAMS["tiny"]["viseme-frontend"]))
    model.set_normalization(np.full(80, -6.0), np.full(80, 3.0))
    model = _perturbed(model)
    save(model, tmp_path / "fe")
    ort_model = OnnxModel(export_onnx(tmp_path / "fe", tmp_path / "fe.onnx"))
    lm = np.random.default_rng(1).normal(-6, 3, (91, 80)).astype(np.float32)
    np.testing.assert_allclose(ort_model.posteriors(lm), model.posteriors(lm), atol=1e-4)
