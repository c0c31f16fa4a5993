import numpy as np
import pytest
import torch
from tiny_models import swelling_tone

from audio2anim.models.logmel import DEFAULT, LogMelStream, logmel, logmel_torch


def _speechlike(seconds=1.3, seed=0):
    return swelling_tone(int(seconds * 16000), noise=0.01, seed=seed)


def test_shape_and_frame_count():
    x = _speechlike()
    out = logmel(x)
    assert out.shape == (len(x) // 160, 80)
    assert out.dtype == np.float32
    # a 220 Hz tone (HTK mel ≈ 305, band 8 of 80 over 0..2840 mel) dominates its band
    assert int(out[50:].mean(0).argmax()) in (7, 8, 9)


@pytest.mark.parametrize("blocks", [[1], [160], [777], [3, 500, 17, 2000], [7919]])
def test_streaming_equals_one_shot(blocks):
    x = _speechlike()
    stream = LogMelStream()
    parts, i, k = [], 0, 0
    while i < len(x):
        n = blocks[k % len(blocks)]
        parts.append(stream.push(x[i : i + n]))
        i, k = i + n, k + 1
    streamed = np.concatenate(parts)
    np.testing.assert_allclose(streamed, logmel(x), atol=1e-4)
    assert stream.frames_out == len(x) // 160


def test_causal_framing():
    # frame i only depends on samples before (i + 1) * hop
    x = _speechlike()
    y = x.copy()
    y[1600:] = 0.5
    a, b = logmel(x), logmel(y)
    np.testing.assert_array_equal(a[:10], b[:10])
    assert not np.allclose(a[10], b[10])


def test_torch_matches_numpy_batched():
    x = _speechlike()
    ref = logmel(x)
    batch = torch.as_tensor(np.stack([x, x[::-1].copy()]))
    out = logmel_torch(batch).numpy()
    assert out.shape == (2, *ref.shape)
    np.testing.assert_allclose(out[0], ref, atol=2e-3)
    np.testing.assert_allclose(logmel_torch(torch.as_tensor(x)).numpy(), ref, atol=2e-3)


def test_silence_floor_and_bad_input():
    out = logmel(np.zeros(1600, np.float32))
    np.testing.assert_allclose(out, np.log(DEFAULT.floor), rtol=1e-6)
    with pytest.raises(ValueError, match="mono"):
        logmel(np.zeros((2, 1600), np.float32))


def test_vtlp_filterbank_reads_a_tone_as_a_stretched_one():
    """Under a warp by alpha, a 1 kHz tone peaks in the mel band of an alpha kHz tone; alpha 1 is
    the plain filterbank, and the top of the spectrum stays put."""
    from audio2anim.models.logmel import mel_filterbank, vtlp_filterbank

    np.testing.assert_array_equal(vtlp_filterbank(1.0), mel_filterbank())
    t = np.arange(16000) / 16000

    def peak(freq, fb=None):
        x = torch.as_tensor(0.3 * np.sin(2 * np.pi * freq * t), dtype=torch.float32)[None]
        return int(logmel_torch(x, filterbank=fb)[0, 10:].mean(0).argmax())

    for alpha in (0.85, 0.92, 1.08, 1.15):
        assert peak(1000, vtlp_filterbank(alpha)) == peak(1000 * alpha)
        assert peak(7800, vtlp_filterbank(alpha)) == peak(7800)
    # one filterbank per example
    fbs = torch.as_tensor(np.stack([vtlp_filterbank(0.9), vtlp_filterbank(1.1)]))
    x = torch.as_tensor(0.3 * np.sin(2 * np.pi * 1000 * t), dtype=torch.float32)
    both = logmel_torch(torch.stack([x, x]), filterbank=fbs)[:, 10:].mean(1).argmax(-1)
    assert both.tolist() == [peak(900), peak(1100)]
