"""Avatar outputs: CSV layouts on disk, Live Link Face UDP and VMC/OSC packets received back."""

from __future__ import annotations

import socket
import struct

import numpy as np
import pytest

from audio2anim.arkit import ALL
from audio2anim.graph.packets import Packet
from audio2anim.graph.registry import get
from audio2anim.graph.testing import run_operator
from audio2anim.streams import Params

ROTATIONS = [
    "HeadYaw", "HeadPitch", "HeadRoll", "LeftEyeYaw", "LeftEyePitch", "LeftEyeRoll",
    "RightEyeYaw", "RightEyePitch", "RightEyeRoll",
]  # fmt: skip
NAMES = ("jawOpen", "mouthClose", "eyeBlinkLeft", "jawLeft", "jawRight", "mouthLeft")


def make_op(name: str, **params):
    cls = get(name)
    op = cls(cls.Params(**params))
    op.setup()
    return op


def frames(n: int, offset: float = 0.0) -> np.ndarray:
    """[n, len(NAMES)] distinct, recognisable values."""
    base = np.array([0.6, 0.1, 0.9, 0.25, 0.75, 0.33], dtype=np.float32)
    return np.clip(base[None, :] + offset + 0.01 * np.arange(n)[:, None], 0, 1).astype(np.float32)


# ---------------------------------------------------------------------------------- sink.csv


def test_csv_livelink_layout(tmp_path):
    path = tmp_path / "take.csv"
    op = make_op("sink.csv", path=str(path), timecode_fps=60)
    op.process("in", Packet(Params(frames(3), NAMES, 60.0), 1.5))
    # written and flushed before close: a crash now would keep these rows
    assert len(path.read_text().splitlines()) == 4
    op.process("in", Packet(Params(frames(2, 0.05), NAMES, 60.0), 1.55))
    op.close()
    lines = path.read_text().splitlines()
    header = lines[0].split(",")
    assert header[:2] == ["Timecode", "BlendShapeCount"]
    assert header[2:54] == [n[0].upper() + n[1:] for n in ALL]
    assert header[54:] == ROTATIONS
    assert len(header) == 2 + 61
    rows = [line.split(",") for line in lines[1:]]
    assert [r[0] for r in rows] == [
        "00:00:01:30.000", "00:00:01:31.000", "00:00:01:32.000",
        "00:00:01:33.000", "00:00:01:34.000",
    ]  # fmt: skip
    assert all(r[1] == "61" and len(r) == 63 for r in rows)
    col = {name: header.index(name[0].upper() + name[1:]) for name in ALL}
    assert float(rows[0][col["jawOpen"]]) == pytest.approx(0.6, abs=1e-6)
    assert float(rows[0][col["jawLeft"]]) == pytest.approx(0.25, abs=1e-6)
    assert float(rows[4][col["mouthClose"]]) == pytest.approx(0.1 + 0.05 + 0.01, abs=1e-6)
    assert float(rows[0][col["tongueOut"]]) == 0.0  # not in the stream -> 0
    assert float(rows[0][header.index("HeadYaw")]) == 0.0


def test_csv_timecode_subframes_and_hours():
    from audio2anim.sinks.csv_file import livelink_timecode

    assert livelink_timecode(1 / 60, 30) == "00:00:00:00.500"
    assert livelink_timecode(3725.5, 30) == "01:02:05:15.000"
    assert livelink_timecode(0.9999999, 60) == "00:00:01:00.000"  # no frame 60


def test_csv_simple_layout(tmp_path):
    path = tmp_path / "anim.csv"
    run_operator("sink.csv", [Packet(Params(frames(4), NAMES, 50.0), 0.0)],
                 {"path": str(path), "layout": "simple"})  # fmt: skip
    lines = path.read_text().splitlines()
    assert lines[0].split(",") == ["time", *ALL]
    times = [float(line.split(",")[0]) for line in lines[1:]]
    assert times == pytest.approx([0.0, 0.02, 0.04, 0.06])
    jaw = ALL.index("jawOpen") + 1
    assert float(lines[2].split(",")[jaw]) == pytest.approx(0.61, abs=1e-6)


def test_csv_rejects_unknown_parameter_and_missing_folder(tmp_path):
    op = make_op("sink.csv", path=str(tmp_path / "x.csv"))
    with pytest.raises(ValueError, match="'smile'"):
        op.process("in", Packet(Params(np.zeros((1, 1), np.float32), ("smile",), 60.0), 0.0))
    op.close()
    cls = get("sink.csv")
    bad = cls(cls.Params(path=str(tmp_path / "nope" / "x.csv")))
    with pytest.raises(FileNotFoundError, match="nope"):
        bad.setup()


# ----------------------------------------------------------------------------- sink.livelink


@pytest.fixture
def udp_receiver():
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    sock.settimeout(2.0)
    yield sock
    sock.close()


def parse_livelink(data: bytes) -> dict:
    """Independent decoder of the Live Link Face v6 datagram (see sink.livelink's docstring)."""
    off = 0
    (version,) = struct.unpack_from(">B", data, off)
    off += 1
    strings = []
    for _ in range(2):
        (n,) = struct.unpack_from(">i", data, off)
        off += 4
        strings.append(data[off : off + n].decode())
        off += n
    frame, sub, num, den, count = struct.unpack_from(">ifiiB", data, off)
    off += 17
    values = struct.unpack_from(f">{count}f", data, off)
    off += 4 * count
    assert off == len(data), "trailing bytes"
    return dict(version=version, device=strings[0], subject=strings[1], frame=frame,
                subframe=sub, rate=(num, den), count=count, values=values)  # fmt: skip


def test_livelink_packets_decode_to_the_values_sent(udp_receiver):
    port = udp_receiver.getsockname()[1]
    params = {"port": port, "subject": "Mia", "device_id": "test-device"}
    run_operator("sink.livelink", [Packet(Params(frames(3), NAMES, 60.0), 2.0)], params)
    got = [parse_livelink(udp_receiver.recvfrom(2048)[0]) for _ in range(3)]
    assert [g["frame"] for g in got] == [120, 121, 122]
    for i, g in enumerate(got):
        assert g["version"] == 6 and g["count"] == 61 and g["rate"] == (60, 1)
        assert g["device"] == "test-device" and g["subject"] == "Mia"
        assert g["subframe"] == pytest.approx(0.0, abs=1e-3)
        v = g["values"]
        # Unreal's EARFaceBlendShape order: JawLeft = 15, JawRight = 16, MouthLeft = 21
        assert v[17] == pytest.approx(0.6 + 0.01 * i, abs=1e-6)  # JawOpen
        assert v[18] == pytest.approx(0.1 + 0.01 * i, abs=1e-6)  # MouthClose
        assert v[0] == pytest.approx(0.9 + 0.01 * i, abs=1e-6)  # EyeBlinkLeft
        assert v[15] == pytest.approx(0.25 + 0.01 * i, abs=1e-6)  # JawLeft
        assert v[16] == pytest.approx(0.75 + 0.01 * i, abs=1e-6)  # JawRight
        assert v[21] == pytest.approx(0.33 + 0.01 * i, abs=1e-6)  # MouthLeft
        assert v[22] == 0.0 and v[51] == 0.0 and v[52:] == (0.0,) * 9


def test_livelink_bad_host_is_one_clear_error():
    cls = get("sink.livelink")
    op = cls(cls.Params(host="no-such-host.invalid"))
    with pytest.raises(ValueError, match="cannot resolve host 'no-such-host.invalid'"):
        op.setup()


# ---------------------------------------------------------------------------------- sink.vmc


def parse_osc_frames(sock: socket.socket, n: int) -> list[list[tuple[str, list]]]:
    """Receive ``n`` OSC bundles and return each as [(address, params), ...]."""
    from pythonosc.osc_bundle import OscBundle

    out = []
    for _ in range(n):
        data = sock.recvfrom(65536)[0]
        assert OscBundle.dgram_is_bundle(data)
        bundle = OscBundle(data)
        out.append([(m.address, list(m.params)) for m in bundle])
    return out


def test_vmc_arkit_names(udp_receiver):
    port = udp_receiver.getsockname()[1]
    run_operator("sink.vmc", [Packet(Params(frames(2), NAMES, 60.0), 0.0)], {"port": port})
    got = parse_osc_frames(udp_receiver, 2)
    for i, msgs in enumerate(got):
        assert msgs[-1] == ("/VMC/Ext/Blend/Apply", [])
        vals = msgs[:-1]
        assert all(addr == "/VMC/Ext/Blend/Val" for addr, _ in vals)
        assert [p[0] for _, p in vals] == list(NAMES)
        expected = frames(2)[i]
        np.testing.assert_allclose([p[1] for _, p in vals], expected, atol=1e-6)


def test_vmc_vrm_presets_without_bundles(udp_receiver):
    from pythonosc.osc_message import OscMessage

    port = udp_receiver.getsockname()[1]
    names = ("jawOpen", "mouthSmileLeft", "mouthSmileRight", "eyeBlinkRight")
    values = np.array([[0.6, 0.4, 0.2, 1.0]], dtype=np.float32)
    params = {"port": port, "names": "vrm", "bundle": False}
    run_operator("sink.vmc", [Packet(Params(values, names, 30.0), 0.0)], params)
    msgs = []
    while True:
        m = OscMessage(udp_receiver.recvfrom(65536)[0])
        msgs.append((m.address, list(m.params)))
        if m.address == "/VMC/Ext/Blend/Apply":
            break
    sent = {p[0]: p[1] for addr, p in msgs if addr == "/VMC/Ext/Blend/Val"}
    assert set(sent) == {"A", "Blink_R", "Joy"}  # presets whose sources the stream carries
    assert sent["A"] == pytest.approx(0.6, abs=1e-6)
    assert sent["Joy"] == pytest.approx(0.3, abs=1e-6)
    assert sent["Blink_R"] == pytest.approx(1.0, abs=1e-6)


# ------------------------------------------------------------------- viseme weights outputs

VISEME_MORPHS = [
    "viseme_sil", "viseme_PP", "viseme_FF", "viseme_TH", "viseme_DD", "viseme_kk", "viseme_CH",
    "viseme_SS", "viseme_nn", "viseme_RR", "viseme_aa", "viseme_E", "viseme_I", "viseme_O",
    "viseme_U",
]  # fmt: skip


def viseme_payload(n: int, rate: float, first_id: int = 0):
    from audio2anim.streams import Visemes

    ids = (np.arange(n) + first_id) % 15
    probs = np.full((n, 15), 0.01, dtype=np.float32)
    probs[np.arange(n), ids] = 0.86
    return Visemes(ids, probs, rate)


def test_csv_viseme_columns_align_by_time(tmp_path):
    path = tmp_path / "v.csv"
    op = make_op("sink.csv", path=str(path), layout="simple", viseme_columns=True)
    op.process("in", Packet(Params(frames(6), NAMES, 60.0), 0.0))  # rows at 0 .. 5/60 s
    assert len(path.read_text().splitlines()) == 1  # rows wait for the viseme stream
    op.process("visemes", Packet(viseme_payload(5, 100.0), 0.0))  # frames cover [0, 0.05)
    lines = path.read_text().splitlines()
    assert len(lines) == 1 + 3  # rows at 0, 1/60, 2/60 (< 0.05) are complete now
    op.process("visemes", Packet(viseme_payload(5, 100.0, first_id=5), 0.05))  # to 0.1 s
    op.flush()
    op.close()
    lines = path.read_text().splitlines()
    header = lines[0].split(",")
    assert header == ["time", *ALL, *VISEME_MORPHS]
    rows = np.array([[float(c) for c in ln.split(",")] for ln in lines[1:]])
    assert len(rows) == 6
    for r in rows:
        t = r[0]
        k = int(np.floor(t * 100 + 1e-6))  # the 100 Hz viseme frame covering t
        vis = r[1 + len(ALL) :]
        assert int(np.argmax(vis)) == k % 15 and vis.max() == pytest.approx(0.86, abs=1e-6)
    assert rows[2, 1 + ALL.index("jawOpen")] == pytest.approx(0.62, abs=1e-6)


def test_vmc_sends_viseme_weights(udp_receiver):
    port = udp_receiver.getsockname()[1]
    visemes = Packet(viseme_payload(2, 100.0, first_id=10), 0.0)
    run_operator("sink.vmc", [("visemes", visemes)], {"port": port})
    got = parse_osc_frames(udp_receiver, 2)
    for i, msgs in enumerate(got):
        assert msgs[-1] == ("/VMC/Ext/Blend/Apply", [])
        sent = {p[0]: p[1] for addr, p in msgs[:-1]}
        assert list(sent) == VISEME_MORPHS
        top = max(sent, key=sent.get)
        assert top == VISEME_MORPHS[10 + i] and sent[top] == pytest.approx(0.86, abs=1e-6)
