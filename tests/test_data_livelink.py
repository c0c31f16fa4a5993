"""Live Link Face CSV takes: parse the app's layout, import with audio, resample, round-trip."""

import numpy as np
import pytest
import soundfile as sf

from audio2anim import arkit
from audio2anim.data import livelink
from audio2anim.data.corpus import Corpus
from audio2anim.data.dataset import Dataset, make_viseme_ids, teach
from audio2anim.formats import livelink_csv

FPS = 60
START = 12 * 3600 + 34 * 60 + 56 + 7 / FPS  # 12:34:56:07


def jaw(t):
    return 0.5 + 0.4 * np.sin(2 * np.pi * 1.5 * t)


def write_take(path, seconds=2.0, drop_every=0):
    """A take in the app's layout, written here independently of livelink_csv.write_csv."""
    header = ["Timecode", "BlendShapeCount"] + [n[0].upper() + n[1:] for n in arkit.ALL] + [
        "HeadYaw", "HeadPitch", "HeadRoll", "LeftEyeYaw", "LeftEyePitch", "LeftEyeRoll",
        "RightEyeYaw", "RightEyePitch", "RightEyeRoll"]  # fmt: skip
    lines = [",".join(header)]
    rows = []
    for k in range(int(seconds * FPS)):
        if drop_every and k % drop_every == drop_every - 1:
            continue
        t = k / FPS
        tod = START + t
        whole = int(tod + 1e-9)
        frame = round((tod - whole) * FPS)
        tc = f"{whole // 3600:02d}:{whole // 60 % 60:02d}:{whole % 60:02d}:{frame:02d}.000"
        values = np.zeros(52 + 9)
        values[arkit.ALL.index("jawOpen")] = jaw(t + 0.5 / FPS)  # a row stands for its frame centre
        values[arkit.ALL.index("eyeBlinkLeft")] = 1.0 if 0.5 <= t < 0.6 else 0.0
        values[52] = 0.1 * t  # HeadYaw
        rows.append(values)
        lines.append(",".join([tc, "52", *(f"{v:.6f}" for v in values)]))
    path.write_text("\n".join(lines) + "\n")
    return np.array(rows)


def write_audio(path, seconds=2.0, sr=44100):
    t = np.arange(int(seconds * sr)) / sr
    sf.write(path, 0.2 * np.sin(2 * np.pi * 200 * t), sr)


def test_read_csv_parses_timecodes_and_names(tmp_path):
    rows = write_take(tmp_path / "take.csv")
    times, names, values, fps = livelink_csv.read_csv(tmp_path / "take.csv")
    assert fps == 60  # inferred from the frame numbers
    assert names[: len(arkit.ALL)] == list(arkit.ALL) and names[-9:] == list(livelink_csv.ROTATIONS)
    assert np.allclose(times, np.arange(len(rows)) / FPS, atol=1e-6)
    assert np.allclose(values, rows, atol=1e-6)


def test_import_same_rate_is_exact_and_other_rates_follow_the_signal(tmp_path):
    rows = write_take(tmp_path / "take.csv")
    write_audio(tmp_path / "take.wav")
    info = livelink.import_take(
        tmp_path / "take.csv", tmp_path / "take.wav", tmp_path / "c60", frame_rate=60
    )
    params = Corpus(tmp_path / "c60").params(info["id"])
    assert params["frame_rate"] == 60 and params["values"].shape == (120, 61)
    assert np.allclose(params["values"], rows[:120], atol=1e-6)

    write_take(tmp_path / "gappy.csv", drop_every=7)  # dropped frames
    livelink.import_take(
        tmp_path / "gappy.csv", tmp_path / "take.wav", tmp_path / "c50", frame_rate=50
    )
    corpus = Corpus(tmp_path / "c50")
    utt = corpus.utterances[0]
    assert (
        utt.source == "livelink"
        and utt.augment["phones"] == "none"
        and abs(utt.duration - 2.0) < 1e-3
    )
    p = corpus.params("gappy")
    centres = (np.arange(100) + 0.5) / 50
    j = p["names"].index("jawOpen")
    assert np.abs(p["values"][2:-2, j] - jaw(centres[2:-2])).max() < 0.01
    assert len(corpus.audio("gappy")) == 32000


def test_round_trip_through_write_csv(tmp_path):
    write_take(tmp_path / "take.csv")
    write_audio(tmp_path / "take.wav")
    livelink.import_take(
        tmp_path / "take.csv", tmp_path / "take.wav", tmp_path / "c", frame_rate=60
    )
    p = Corpus(tmp_path / "c").params("take")
    livelink_csv.write_csv(tmp_path / "out.csv", p["names"], p["values"], 60, start=START)
    original = (tmp_path / "take.csv").read_text().splitlines()
    exported = (tmp_path / "out.csv").read_text().splitlines()
    assert exported[0] == original[0]  # the app's header, column for column
    assert [r.split(",")[0] for r in exported] == [r.split(",")[0] for r in original]
    times, names, values, _ = livelink_csv.read_csv(tmp_path / "out.csv")
    assert names == p["names"] and np.allclose(values, p["values"], atol=1e-6)


def test_captured_params_feed_the_dataset(tmp_path):
    write_take(tmp_path / "take.csv")
    write_audio(tmp_path / "take.wav")
    livelink.import_take(
        tmp_path / "take.csv", tmp_path / "take.wav", tmp_path / "c", frame_rate=50
    )
    assert teach(tmp_path / "c", tmp_path / "ds", 50.0, progress=False) == {
        "teacher": 0,
        "captured": 1,
    }
    make_viseme_ids(tmp_path / "c", tmp_path / "ds", 50.0, progress=False)
    ds = Dataset(tmp_path / "ds")
    mouth = ds.array("take", "mouth")
    p = Corpus(tmp_path / "c").params("take")
    assert np.allclose(
        mouth[:, arkit.MOUTH.index("jawOpen")], p["values"][:, p["names"].index("jawOpen")]
    )
    assert (ds.array("take", "viseme_ids") == -1).all()  # no transcript: no viseme labels


def test_bad_csv_errors_name_file_line_and_column(tmp_path):
    bad = tmp_path / "bad.csv"
    bad.write_text("Time,EyeBlinkLeft\n")
    with pytest.raises(ValueError, match=r"bad.csv:1: first column must be 'Timecode'"):
        livelink_csv.read_csv(bad)
    write_take(tmp_path / "take.csv", seconds=0.2)
    text = (tmp_path / "take.csv").read_text().splitlines()
    cells = text[3].split(",")
    cells[5] = "oops"
    text[3] = ",".join(cells)
    bad.write_text("\n".join(text))
    with pytest.raises(ValueError, match=r"bad.csv:4: column EyeLookOutLeft is not a number"):
        livelink_csv.read_csv(bad, fps=60)
