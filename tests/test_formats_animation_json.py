"""The animation JSON (ARKit and viseme weights per frame) and the Oculus viseme CSV."""

import json
import os

import numpy as np
import pytest

from audio2anim import arkit
from audio2anim.formats import animation_json as aj
from audio2anim.formats.animation import VISEME_MORPHS, Animation
from audio2anim.visemes import N_VISEMES


def random_animation(frames=40, fps=30.0, start=0.75, visemes=True, seed=0):
    rng = np.random.default_rng(seed)
    vis = rng.dirichlet(np.ones(N_VISEMES), frames) if visemes else None
    meta = {"source": "clips/line 01.wav", "model": "wav2vec-mouth", "voice": ["en", 3]}
    return Animation(fps, arkit.ALL, rng.random((frames, 52)), vis, start, meta)


def test_viseme_names_are_the_oculus_morph_targets():
    assert VISEME_MORPHS[0] == "viseme_sil" and VISEME_MORPHS[-1] == "viseme_U"


def test_json_round_trips_within_float32_precision(tmp_path):
    a = random_animation()
    path = tmp_path / "line.json"
    aj.write_animation_json(path, a)
    b = aj.read_animation_json(path)
    assert (b.fps, b.start, b.names, b.frames) == (30.0, 0.75, arkit.ALL, 40)
    assert b.metadata == a.metadata
    np.testing.assert_allclose(b.values, a.values, atol=1e-7, rtol=0)
    np.testing.assert_allclose(b.visemes, a.visemes, atol=1e-7, rtol=0)
    assert os.listdir(tmp_path) == ["line.json"]


def test_json_layout_has_metadata_and_per_frame_weights():
    a = random_animation(frames=3, fps=25, start=0.0)
    doc = json.loads(aj.format_animation_json(a))
    assert doc["format"] == "audio2anim.animation" and doc["version"] == 1
    assert doc["metadata"]["fps"] == 25 and doc["metadata"]["duration"] == pytest.approx(0.12)
    assert doc["metadata"]["frames"] == 3 and doc["metadata"]["model"] == "wav2vec-mouth"
    assert doc["metadata"]["source"] == "clips/line 01.wav"
    assert doc["names"] == list(arkit.ALL) and doc["visemeNames"] == list(VISEME_MORPHS)
    assert [f["time"] for f in doc["frames"]] == [0, 0.04, 0.08]
    frame = doc["frames"][1]
    assert len(frame["weights"]) == 52 and len(frame["visemes"]) == 15
    assert frame["weights"][arkit.ALL.index("jawOpen")] == pytest.approx(
        float(a.column("jawOpen")[1]), abs=1e-7
    )
    assert sum(frame["visemes"]) == pytest.approx(1, abs=1e-5)


def test_json_without_visemes_and_empty():
    a = random_animation(visemes=False)
    doc = json.loads(aj.format_animation_json(a))
    assert "visemeNames" not in doc and "visemes" not in doc["frames"][0]
    assert aj.parse_animation_json(aj.format_animation_json(a)).visemes is None
    empty = Animation(50, ("jawOpen",), np.zeros((0, 1)))
    back = aj.parse_animation_json(aj.format_animation_json(empty))
    assert back.frames == 0 and back.names == ("jawOpen",)


def test_viseme_csv_round_trips_real_posteriors(tmp_path):
    a = random_animation(fps=50, start=0.5)
    path = tmp_path / "visemes.csv"
    aj.write_viseme_csv(path, a)
    header = path.read_text().splitlines()[0]
    assert header == "time," + ",".join(VISEME_MORPHS)
    times, post = aj.read_viseme_csv(path)
    np.testing.assert_allclose(times, a.times, atol=1e-6)
    np.testing.assert_allclose(post, a.visemes, atol=1e-7, rtol=0)
    assert post.max() > 0.2 and aj.fps_of(times) == pytest.approx(50)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("nope", "not JSON"),
        ('{"format": "other"}', "not an audio2anim animation"),
        ('{"format": "audio2anim.animation", "metadata": {}}', "bad animation JSON"),
        (
            '{"format": "audio2anim.animation", "metadata": {"fps": 50}, "names": ["jawOpen"],'
            ' "frames": [{"time": 0, "weights": [0.1, 0.2]}]}',
            "bad animation JSON",
        ),
        (
            '{"format": "audio2anim.animation", "metadata": {"fps": -1}, "names": ["jawOpen"],'
            ' "frames": []}',
            "fps must be a positive number",
        ),
    ],
)
def test_bad_json_gives_one_line_errors(text, message):
    with pytest.raises(ValueError) as e:
        aj.parse_animation_json(text, "x.json")
    assert message in str(e.value) and str(e.value).startswith("x.json: ")
    assert "\n" not in str(e.value)


def test_bad_csv_and_missing_visemes_give_one_line_errors(tmp_path):
    with pytest.raises(ValueError, match="needs viseme posteriors"):
        aj.format_viseme_csv(random_animation(visemes=False))
    bad = tmp_path / "v.csv"
    bad.write_text("time,viseme_sil\n0,1\n")
    with pytest.raises(ValueError, match="v.csv: header must be"):
        aj.read_viseme_csv(bad)
    with pytest.raises(ValueError, match="not JSON-serialisable"):
        aj.format_animation_json(Animation(50, ("jawOpen",), [[0]], metadata={"x": object()}))


def test_json_streams_in_pieces_that_join_to_the_document():
    a = random_animation(frames=40)
    pieces = list(aj.animation_json_pieces(a, frames_per_piece=7))
    assert len(pieces) == 1 + 6 + 1
    assert "".join(pieces) == aj.format_animation_json(a)
    assert aj.parse_animation_json("".join(pieces)).frames == 40


def test_fixed_rows_format_seven_decimals_exactly():
    rows = aj.fixed_rows(np.array([[0, 1, 0.5, 1e-8, 0.99999999, 0.12345675]]))
    assert rows == ["0.0000000, 1.0000000, 0.5000000, 0.0000000, 1.0000000, 0.1234568"]
    assert aj.fixed_rows(np.array([[2.5, -1]]), ",") == ["2.5000000,-1.0000000"]
    assert aj.fixed_rows(np.zeros((0, 15))) == []
    x = np.random.default_rng(1).random((200, 9))
    back = np.array([[float(v) for v in r.split(", ")] for r in aj.fixed_rows(x)])
    np.testing.assert_allclose(back, x, atol=5.1e-8, rtol=0)
