"""Rhubarb Lip Sync mouth cues: the viseme mapping, cue building, and the four file layouts."""

import json
import os

import numpy as np
import pytest

from audio2anim.formats import rhubarb as rb
from audio2anim.formats.animation import Animation
from audio2anim.visemes import N_VISEMES, VISEME_ID

NAMES = ("jawOpen", "mouthClose", "mouthFunnel")
POSE = {  # jawOpen, mouthClose, mouthFunnel, as a face makes each viseme
    "sil": (0.0, 0.0, 0.0), "PP": (0.05, 0.8, 0.0), "FF": (0.1, 0.2, 0.0),
    "aa": (0.6, 0.0, 0.0), "E": (0.35, 0.0, 0.0), "ou": (0.2, 0.0, 0.7),
    "oh": (0.4, 0.0, 0.5), "SS": (0.1, 0.0, 0.0),
}  # fmt: skip


def speech(seq, fps=50.0, start=0.0, pose=None, source="hi.wav"):
    """An animation of viseme segments ``[(viseme, seconds), ...]`` with matching mouth weights."""
    pose = {**POSE, **(pose or {})}
    values, vis = [], []
    for v, seconds in seq:
        for _ in range(round(seconds * fps)):
            p = np.full(N_VISEMES, 0.01)
            p[VISEME_ID[v]] = 1 - 0.01 * (N_VISEMES - 1)
            vis.append(p)
            values.append(pose[v])
    return Animation(fps, NAMES, np.array(values).reshape(-1, 3), np.array(vis).reshape(-1, 15),
                     start=start, metadata={"source": source})  # fmt: skip


HI = [("sil", 0.2), ("PP", 0.1), ("aa", 0.2), ("ou", 0.2), ("sil", 0.3)]


def cue_list(cues):
    return [(c.start, c.end, c.value) for c in cues]


def test_visemes_map_to_rhubarb_shapes():
    cues = rb.mouth_cues(speech(HI))
    assert cue_list(cues) == [
        (0.0, 0.2, "X"), (0.2, 0.3, "A"), (0.3, 0.5, "D"), (0.5, 0.7, "F"), (0.7, 1.0, "X"),
    ]  # fmt: skip


def test_jaw_openness_splits_open_vowels():
    a = speech([("aa", 0.1), ("E", 0.1), ("oh", 0.1), ("FF", 0.1), ("SS", 0.1)],
               pose={"aa": (0.2, 0, 0)})  # fmt: skip
    assert [c.value for c in rb.mouth_cues(a)] == ["C", "E", "G", "B"]
    wide_e = speech([("E", 0.1)], pose={"E": (0.7, 0, 0)})
    assert [c.value for c in rb.mouth_cues(wide_e)] == ["D"]
    no_jaw = Animation(50, ("mouthClose",), np.zeros((10, 1)), speech([("aa", 0.2)]).visemes)
    assert [c.value for c in rb.mouth_cues(no_jaw)] == ["D"]


def test_summed_posteriors_choose_the_shape():
    # SS and DD (both B) together outweigh aa alone
    vis = np.zeros((5, N_VISEMES))
    vis[:, VISEME_ID["aa"]] = 0.4
    vis[:, VISEME_ID["SS"]] = 0.3
    vis[:, VISEME_ID["DD"]] = 0.3
    a = Animation(50, ("jawOpen",), np.full((5, 1), 0.6), vis)
    assert rb.frame_shapes(a) == ["B"] * 5


def test_without_extended_shapes_they_become_basic_shapes():
    a = speech([("sil", 0.1), ("FF", 0.1), ("aa", 0.1), ("sil", 0.1)])
    assert [c.value for c in rb.mouth_cues(a, extended_shapes="")] == ["A", "D", "A"]
    assert [c.value for c in rb.mouth_cues(a, extended_shapes="X")] == ["X", "A", "D", "X"]
    assert [c.value for c in rb.mouth_cues(a, extended_shapes="GX")] == ["X", "G", "D", "X"]
    assert rb.format_tsv(rb.mouth_cues(a, extended_shapes="G"), "G").endswith("0.40\tA\n")


def test_short_cues_are_absorbed_and_neighbours_merged():
    one_frame = [("aa", 0.1), ("PP", 0.01), ("aa", 0.1)]
    assert [c.value for c in rb.mouth_cues(speech(one_frame, fps=100))] == ["D"]
    assert [c.value for c in rb.mouth_cues(speech(one_frame, fps=100), min_cue=0.01)] == [
        "D", "A", "D",
    ]  # fmt: skip
    first_short = speech([("PP", 0.01), ("aa", 0.1)], fps=100)
    assert cue_list(rb.mouth_cues(first_short)) == [(0.0, 0.11, "D")]
    # at 50 fps every one-frame cue is kept
    kept = speech([("aa", 0.1), ("PP", 0.02), ("aa", 0.1)])
    assert [c.value for c in rb.mouth_cues(kept)] == ["D", "A", "D"]


def test_cue_times_are_centiseconds_of_media_time_from_zero():
    a = speech(HI, fps=30, start=0.5)
    cues = rb.mouth_cues(a)
    assert cues[0].start == 0 and cues[0].value == "X"
    assert cues[-1].end == pytest.approx(1.5)
    for prev, nxt in zip(cues, cues[1:], strict=False):
        assert prev.end == nxt.start and prev.value != nxt.value
        assert round(nxt.start * 100) == pytest.approx(nxt.start * 100)
    # the PP onset (0.7 s media time) within one 30 fps frame
    onset = next(c.start for c in cues if c.value == "A")
    assert abs(onset - 0.7) <= 1 / 30


def test_layouts_match_rhubarbs_documented_example(tmp_path):
    """The README's 'Hi' example, byte for byte (soundFile as an absolute POSIX path)."""
    cues = [rb.MouthCue(*c) for c in [(0.0, 0.05, "X"), (0.05, 0.27, "D"), (0.27, 0.31, "C"),
                                      (0.31, 0.43, "B"), (0.43, 0.47, "X")]]  # fmt: skip
    assert rb.format_tsv(cues) == "0.00\tX\n0.05\tD\n0.27\tC\n0.31\tB\n0.43\tX\n0.47\tX\n"
    assert rb.format_xml(cues, "/home/d/hi.wav") == (
        '<?xml version="1.0" encoding="utf-8"?>\n'
        "<rhubarbResult>\n"
        "  <metadata>\n"
        "    <soundFile>/home/d/hi.wav</soundFile>\n"
        "    <duration>0.47</duration>\n"
        "  </metadata>\n"
        "  <mouthCues>\n"
        '    <mouthCue start="0.00" end="0.05">X</mouthCue>\n'
        '    <mouthCue start="0.05" end="0.27">D</mouthCue>\n'
        '    <mouthCue start="0.27" end="0.31">C</mouthCue>\n'
        '    <mouthCue start="0.31" end="0.43">B</mouthCue>\n'
        '    <mouthCue start="0.43" end="0.47">X</mouthCue>\n'
        "  </mouthCues>\n"
        "</rhubarbResult>\n"
    )
    assert rb.format_json(cues, "/home/d/hi.wav") == (
        "{\n"
        '  "metadata": {\n'
        '    "soundFile": "/home/d/hi.wav",\n'
        '    "duration": 0.47\n'
        "  },\n"
        '  "mouthCues": [\n'
        '    { "start": 0.00, "end": 0.05, "value": "X" },\n'
        '    { "start": 0.05, "end": 0.27, "value": "D" },\n'
        '    { "start": 0.27, "end": 0.31, "value": "C" },\n'
        '    { "start": 0.31, "end": 0.43, "value": "B" },\n'
        '    { "start": 0.43, "end": 0.47, "value": "X" }\n'
        "  ]\n"
        "}\n"
    )
    # Moho frames are 1 + int(rate * start)
    assert rb.format_dat(cues) == "MohoSwitch1\n1 X\n2 D\n7 C\n8 B\n11 X\n12 X\n"
    assert rb.format_dat(cues, 30) == "MohoSwitch1\n1 X\n2 D\n9 C\n10 B\n13 X\n15 X\n"
    assert rb.format_dat(cues, 24, preston_blair=True).splitlines()[1:3] == ["1 rest", "2 AI"]


def test_sound_file_is_absolute_and_escaped_as_rhubarb_escapes_it(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    cues = rb.mouth_cues(speech(HI))
    text = rb.format_json(cues, 'say "hé".wav')
    assert '"soundFile": "' + str(tmp_path) + '/say \\"h\\u00e9\\".wav",' in text
    assert json.loads(text)["metadata"] == {
        "soundFile": str(tmp_path / 'say "hé".wav'),
        "duration": 1.0,
    }
    xml = rb.format_xml(cues, "a&b<c>'d\".wav")
    assert f"<soundFile>{tmp_path}/a&amp;b&lt;c&gt;&apos;d&quot;.wav</soundFile>" in xml
    cues_x, meta = rb.parse_xml(xml)
    assert meta == {"soundFile": str(tmp_path / "a&b<c>'d\".wav"), "duration": 1.0}
    assert cues_x == cues


def test_duration_is_truncated_to_centiseconds():
    a = speech([("aa", 0.5)], fps=60)  # 30 frames
    a = Animation(
        60, a.names, np.vstack([a.values, a.values[:1]]), np.vstack([a.visemes, a.visemes[:1]])
    )
    assert a.end == pytest.approx(0.51667, abs=1e-5)
    cues = rb.mouth_cues(a)
    assert cues[-1].end == 0.51 and rb.format_tsv(cues).endswith("0.51\tX\n")


def test_empty_animation_writes_one_zero_length_idle_cue():
    a = Animation(50, NAMES, np.zeros((0, 3)), np.zeros((0, N_VISEMES)))
    cues = rb.mouth_cues(a)
    assert cues == []
    assert rb.format_tsv(cues) == "0.00\tX\n"
    assert rb.parse_json(rb.format_json(cues))[0] == [rb.MouthCue(0.0, 0.0, "X")]
    assert rb.parse_xml(rb.format_xml(cues, extended_shapes=""))[0] == [rb.MouthCue(0, 0, "A")]


@pytest.mark.parametrize("fmt", rb.FORMATS)
def test_every_layout_round_trips_through_its_reader(tmp_path, fmt):
    a = speech(HI + [("FF", 0.12), ("oh", 0.25), ("sil", 0.1)], fps=60)
    path = tmp_path / f"hi.{fmt}"
    written = rb.write_rhubarb(path, a)
    assert cue_list(written)[:5] == [
        (0.0, 0.2, "X"), (0.2, 0.3, "A"), (0.3, 0.5, "D"), (0.5, 0.7, "F"), (0.7, 1.0, "X"),
    ]  # fmt: skip
    read = rb.read_rhubarb(path)
    if fmt == "dat":  # frames at 24 fps: starts floor to a frame, shapes and order kept
        assert [c.value for c in read] == [c.value for c in written]
        for r, w in zip(read, written, strict=True):
            assert 0 <= w.start - r.start < 1 / 24
    else:
        assert read == written
    assert os.listdir(tmp_path) == [path.name]  # no temporary file left beside it


def test_dat_skips_cues_that_start_on_the_previous_lines_frame():
    cues = [rb.MouthCue(0.0, 0.3, "X"), rb.MouthCue(0.3, 0.32, "A"), rb.MouthCue(0.32, 0.34, "D")]
    # 0.30 s and 0.32 s are both frame 8 at 24 fps; the end 0.34 is frame 9
    assert rb.format_dat(cues) == "MohoSwitch1\n1 X\n8 A\n9 X\n"
    # the end on the last line's frame moves one frame on
    assert rb.format_dat(cues[:2]) == "MohoSwitch1\n1 X\n8 A\n9 X\n"
    assert rb.parse_dat("MohoSwitch1\n1 MBP\n5 AI\n9 rest\n") == [
        rb.MouthCue(0, 4 / 24, "A"), rb.MouthCue(4 / 24, 8 / 24, "D"),
    ]  # fmt: skip


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: rb.mouth_cues(Animation(50, ("jawOpen",), np.zeros((3, 1)))), "need viseme"),
        (lambda: rb.mouth_cues(speech(HI), extended_shapes="GQ"), "only G, H and X"),
        (lambda: rb.mouth_cues(speech(HI), min_cue=-1), "min_cue"),
        (lambda: rb.format_dat([], 20), "between 24 and 100"),
        (lambda: rb.format_cues([], "srt"), "unknown Rhubarb format 'srt'"),
        (lambda: rb.format_for("cues.txt"), "cues.txt: no Rhubarb format"),
        (lambda: rb.parse_tsv("0.00 X\n"), "TSV line 1"),
        (lambda: rb.parse_tsv("0.00\tQ\n0.10\tX\n"), "unknown mouth shape 'Q'"),
        (lambda: rb.parse_tsv(""), "no mouth cues"),
        (lambda: rb.parse_json("{}"), "not Rhubarb JSON"),
        (lambda: rb.parse_xml("<other/>"), "not Rhubarb XML"),
        (lambda: rb.parse_dat("1 X\n"), "MohoSwitch1"),
        (lambda: rb.parse_dat("MohoSwitch1\nX 1\n"), "DAT line 2"),
    ],
)
def test_bad_input_gives_one_line_errors(call, message):
    with pytest.raises(ValueError) as e:
        call()
    assert message in str(e.value) and "\n" not in str(e.value)


def test_reader_errors_name_the_file(tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text("not json")
    with pytest.raises(ValueError, match="bad.json: not Rhubarb JSON"):
        rb.read_rhubarb(bad)
