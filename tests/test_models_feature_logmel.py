import numpy as np
import pytest

from audio2anim.graph.packets import Packet
from audio2anim.graph.registry import get
from audio2anim.models.logmel import logmel
from audio2anim.streams import Audio, Features


def _run(op, blocks, rate=16000, t0=0.0):
    out, t = [], t0
    for b in blocks:
        out += list(op.process("in", Packet(Audio(b, rate), t)) or [])
        t += len(b) / rate
    out += list(op.flush() or [])
    return out


def test_logmel_operator_equals_one_shot():
    cls = get("feature.logmel")
    op = cls(cls.Params(min_frames=3))
    op.setup()
    rng = np.random.default_rng(0)
    x = (0.2 * rng.standard_normal(16000)).astype(np.float32)
    sizes = [320, 17, 1000, 4000, 163, 10500]
    blocks = np.split(x, np.cumsum(sizes)[:-1])
    packets = _run(op, blocks, t0=2.0)
    assert all(isinstance(p.payload, Features) and p.payload.kind == "logmel" for p in packets)
    assert all(p.payload.frame_rate == 100 for p in packets)
    data = np.concatenate([p.payload.data for p in packets])
    np.testing.assert_allclose(data, logmel(x), atol=1e-4)
    # media times count frames from the first packet's media time
    n = 0
    for p in packets:
        assert p.media_time == pytest.approx(2.0 + n / 100)
        n += len(p.payload.data)
    assert all(len(p.payload.data) >= 3 for p in packets[:-1])
    op.close()


def test_logmel_operator_rejects_wrong_rate():
    cls = get("feature.logmel")
    op = cls(cls.Params())
    op.setup()
    with pytest.raises(ValueError, match="48000 Hz, needs 16000 Hz"):
        op.process("in", Packet(Audio(np.zeros(480, np.float32), 48000), 0.0))
