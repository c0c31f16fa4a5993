"""predictor.keras: legacy .h5 Keras models load through Keras 3 on torch and predict."""

import numpy as np
import pytest

from audio2anim.models.keras_h5 import _import_keras, load_keras_h5


@pytest.fixture(scope="module")
def keras():
    return _import_keras()


def _numpy_mlp(model, flat):
    (w1, b1), (w2, b2) = [layer.get_weights() for layer in model.layers if layer.get_weights()]
    return np.maximum(flat @ w1 + b1, 0) @ w2 + b2


def test_windowed_h5_model(keras, tmp_path):
    assert keras.backend.backend() == "torch"
    keras.utils.set_random_seed(0)
    model = keras.Sequential(
        [
            keras.Input((5, 15)),
            keras.layers.Flatten(),
            keras.layers.Dense(8, activation="relu"),
            keras.layers.Dense(19),
        ]
    )
    path = tmp_path / "visemeID-param-mlp.h5"
    model.save(path)
    assert path.read_bytes()[:8] == b"\x89HDF\r\n\x1a\n"  # a real HDF5 file
    pred = load_keras_h5(path, out_scale=np.full(19, 0.5), out_offset=np.full(19, 0.5))
    rng = np.random.default_rng(0)
    x = np.eye(15, dtype=np.float32)[rng.integers(0, 15, 12)]
    y = pred.predict(x)
    assert y.shape == (12, 19)
    # independent reference: centred windows (t-2 … t+2), zero-padded, through numpy
    padded = np.concatenate([np.zeros((2, 15)), x, np.zeros((2, 15))])
    flat = np.stack([padded[t : t + 5].reshape(-1) for t in range(12)])
    ref = np.clip(_numpy_mlp(pred.model, flat) * 0.5 + 0.5, 0, 1)
    np.testing.assert_allclose(y, ref, atol=1e-5)


def test_flat_window_and_past_alignment(keras, tmp_path):
    keras.utils.set_random_seed(1)
    model = keras.Sequential(
        [keras.Input((3 * 4,)), keras.layers.Dense(6, activation="relu"), keras.layers.Dense(11)]
    )
    path = tmp_path / "flat.h5"
    model.save(path)
    pred = load_keras_h5(path, alignment="past")
    x = np.random.default_rng(2).uniform(0, 1, (9, 4)).astype(np.float32)
    padded = np.concatenate([np.zeros((2, 4)), x])
    flat = np.stack([padded[t : t + 3].reshape(-1) for t in range(9)])
    np.testing.assert_allclose(
        pred.predict(x), np.clip(_numpy_mlp(pred.model, flat), 0, 1), atol=1e-5
    )


def test_bad_files(keras, tmp_path):
    with pytest.raises(FileNotFoundError, match="no such Keras model file"):
        load_keras_h5(tmp_path / "missing.h5")
    bad = tmp_path / "bad.h5"
    bad.write_bytes(b"not hdf5")
    with pytest.raises(ValueError, match="bad.h5: Keras could not load it"):
        load_keras_h5(bad)
