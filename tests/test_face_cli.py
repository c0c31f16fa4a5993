"""`audio2anim render` (CSV + WAV -> MP4) and the parameter CSV readers."""

import argparse

import av
import numpy as np
import pytest
import soundfile as sf

from audio2anim import arkit
from audio2anim.face.cli import add_commands
from audio2anim.face.params_csv import read_params_csv


def _run(argv):
    parser = argparse.ArgumentParser()
    add_commands(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    return args.func(args)


def _live_link_csv(path, n, fps=60):
    header = ["Timecode", "BlendShapeCount"] + [n[0].upper() + n[1:] for n in arkit.ALL]
    header += ["HeadYaw", "HeadPitch"]  # Live Link also writes head/eye rotations
    lines = [",".join(header)]
    jaw = arkit.ALL.index("jawOpen")
    for i in range(n):
        vals = np.zeros(len(arkit.ALL))
        vals[jaw] = 0.5 + 0.5 * np.sin(i / 5)
        tc = f"00:00:{i // fps:02d}:{i % fps:02d}.000"
        lines.append(",".join([tc, "61", *(f"{v:.4f}" for v in vals), "0.1", "0.0"]))
    path.write_text("\n".join(lines) + "\n")


def test_live_link_csv_is_read_with_arkit_names(tmp_path):
    _live_link_csv(tmp_path / "take.csv", 90)
    values, names, fps = read_params_csv(tmp_path / "take.csv")
    assert names == arkit.ALL and fps == 60 and values.shape == (90, 52)
    assert values[:, names.index("jawOpen")].max() > 0.9


def test_our_csv_fills_dropped_rows_by_time(tmp_path):
    t = np.array([0.0, 0.04, 0.12, 0.16])  # the row at 0.08 s was dropped
    rows = ["time,jawOpen"] + [f"{x:.2f},{x * 5:.2f}" for x in t]
    (tmp_path / "p.csv").write_text("\n".join(rows))
    values, _, fps = read_params_csv(tmp_path / "p.csv")
    assert fps == 25 and values[:, 0] == pytest.approx([0, 0.2, 0.4, 0.6, 0.8])


def test_our_csv_infers_the_frame_rate(tmp_path):
    t = np.arange(10) / 25
    rows = ["time,jawOpen,eyeBlinkLeft"] + [f"{x:.4f},0.5,0.1" for x in t]
    (tmp_path / "p.csv").write_text("\n".join(rows))
    values, names, fps = read_params_csv(tmp_path / "p.csv")
    assert names == ("jawOpen", "eyeBlinkLeft") and fps == 25 and values.shape == (10, 2)


@pytest.mark.parametrize(
    "text, message",
    [
        ("frame,jawOpen\n0,1\n", "first column"),
        ("time,jawOpen\n0,abc\n", "row 2, column 'jawOpen'"),
        ("time,foo\n0,1\n", "no ARKit"),
    ],
)
def test_bad_csv_is_a_clear_error(tmp_path, text, message):
    (tmp_path / "bad.csv").write_text(text)
    with pytest.raises(ValueError, match=message):
        read_params_csv(tmp_path / "bad.csv")


def test_render_command_writes_video_with_audio(tmp_path):
    _live_link_csv(tmp_path / "take.csv", 60)  # 1 s at 60 fps
    rate = 16000
    tone = 0.3 * np.sin(2 * np.pi * 200 * np.arange(rate) / rate)
    sf.write(tmp_path / "take.wav", tone, rate)
    out = tmp_path / "take.mp4"
    code = _run(["render", str(tmp_path / "take.csv"), "--audio", str(tmp_path / "take.wav"),
                 "-o", str(out), "--size", "128"])  # fmt: skip
    assert code == 0
    with av.open(str(out)) as c:
        assert sorted(s.type for s in c.streams) == ["audio", "video"]
        frames = [f.to_ndarray(format="rgb24") for f in c.decode(video=0)]
    assert len(frames) == 60 and frames[0].shape == (128, 128, 3)
    assert np.abs(frames[0].astype(int) - frames[8].astype(int)).mean() > 0.2  # it moves


def test_render_command_reports_a_bad_file(tmp_path, capsys):
    (tmp_path / "bad.csv").write_text("frame,jawOpen\n0,1\n")
    code = _run(["render", str(tmp_path / "bad.csv"), "-o", str(tmp_path / "x.mp4")])
    assert code == 2
    err = capsys.readouterr().err
    assert "bad.csv" in err and len(err.strip().splitlines()) == 1
