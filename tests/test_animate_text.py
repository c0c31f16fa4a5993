"""``audio2anim animate --text/--dialog/--dialog-dir`` and ``Animator.animate(text=...)`` with
the shipped viseme CNN graph over espeak-ng speech: the aligned words close the lips at the
bilabials, the output has the frames and format of a run without text, a transcript that does
not fit is a one-line warning and the recognized animation, a missing dialog file is a usage
error before any audio is read; `feature.visemes_given` paces its frames like `feature.visemes`."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from tiny_models import speak

from audio2anim import arkit
from audio2anim.animate.text import aligned_posteriors, fit_score
from audio2anim.cli import main
from audio2anim.train.metrics import CLOSED, lip_gap
from audio2anim.visemes import VISEMES, phone_class

SENTENCE = "Bob made a map of the moon."
WRONG = "Sue saw six geese."  # aligns, but its visemes are not what the recognizer hears


@pytest.fixture(scope="module")
def bob(tmp_path_factory):
    """The sentence spoken by espeak-ng in a 16 kHz WAV, and its phones (true times)."""
    import soxr

    audio, sr, segments = speak(SENTENCE)
    folder = tmp_path_factory.mktemp("text")
    path = folder / "bob.wav"
    sf.write(path, soxr.resample(audio, sr, 16000).astype(np.float32), 16000, subtype="FLOAT")
    return path, segments


@pytest.fixture(scope="module")
def animator():
    from audio2anim import Animator

    return Animator()


def _read_csv(path: Path) -> tuple[list[str], np.ndarray]:
    with open(path, newline="") as f:
        rows = list(csv.reader(f))
    return rows[0], np.array(rows[1:], dtype=np.float64)


def _gap(names, values) -> np.ndarray:
    return lip_gap(values[:, [list(names).index(n) for n in arkit.MOUTH + arkit.EYES]])


def test_text_closes_the_lips_at_the_bilabials_with_the_same_frames_and_format(
    animator, bob, tmp_path
):
    from audio2anim.animate.outputs import write_output

    path, segments = bob
    plain, known = tmp_path / "plain.csv", tmp_path / "known.csv"
    write_output(plain, animator.animate(path))  # what `animate IN -o plain.csv` writes
    assert main(["animate", str(path), "-o", str(known), "--text", SENTENCE, "--quiet"]) == 0
    header, values = _read_csv(known)
    plain_header, plain_values = _read_csv(plain)
    assert header == plain_header and values.shape == plain_values.shape
    np.testing.assert_array_equal(values[:, 0], plain_values[:, 0])  # the same frame times
    assert not np.array_equal(values, plain_values)  # the words, not the recognizer, drove it
    gap = _gap(header, values)
    times = values[:, 0]
    bilabials = [(s, e) for s, e, p in segments if phone_class(p, "espeak") == "bilabial"]
    assert len(bilabials) >= 5
    for start, end in bilabials:  # closed within 40 ms of the true phone, at its closure
        near = (times >= start - 0.04) & (times <= end + 0.04)
        assert gap[near].min() <= CLOSED, f"lips open at the bilabial {start:.2f}–{end:.2f} s"
    vowels = [(s, e) for s, e, p in segments if phone_class(p, "espeak") == "open"]
    assert any(gap[(times >= s) & (times < e)].max() > 2 * CLOSED for s, e in vowels)


def test_api_text_marks_the_viseme_source_and_a_wrong_text_falls_back(animator, bob):
    from audio2anim.animate.text import TextAlignmentWarning

    path, _ = bob
    recognized = animator.animate(path)
    known = animator.animate(path, text=SENTENCE)
    assert known.metadata["visemes"] == "text" and known.frames == recognized.frames
    assert known.visemes.shape == recognized.visemes.shape
    assert known.visemes[:, VISEMES.index("PP")].max() > 0.8  # sharp, not one-hot
    assert known.visemes.max() < 1.0
    with pytest.warns(TextAlignmentWarning, match="bob.wav: text not used.*do not fit"):
        wrong = animator.animate(path, text=WRONG)
    assert wrong.metadata["visemes"] == "audio" and "\n" not in wrong.metadata["text_warning"]
    np.testing.assert_array_equal(wrong.values, recognized.values)
    from audio2anim.animate.api import AnimateError

    with pytest.raises(AnimateError, match=r"<array>: the transcript has no words"):
        animator.animate(np.zeros(8000, np.float32), rate=16000, text=" ... ")


def test_wrong_dialog_is_a_warning_the_file_is_animated_from_audio(animator, bob, tmp_path, capsys):
    path, _ = bob
    dialog = tmp_path / "bob.txt"
    dialog.write_text(WRONG + "\n", encoding="utf-8")
    plain, out, report = tmp_path / "plain.csv", tmp_path / "out.csv", tmp_path / "report.json"
    from audio2anim.animate.outputs import write_output

    write_output(plain, animator.animate(path))
    rc = main(["animate", str(path), "-o", str(out), "--dialog", str(dialog), "--quiet",
               "--report", str(report)])  # fmt: skip
    assert rc == 0
    err = capsys.readouterr().err
    warnings = [ln for ln in err.splitlines() if ln.startswith("warning:")]
    assert len(warnings) == 1 and str(path) in warnings[0] and "do not fit" in warnings[0]
    assert "Traceback" not in err
    np.testing.assert_array_equal(_read_csv(out)[1], _read_csv(plain)[1])
    doc = json.loads(report.read_text())
    assert doc["written"] == 1 and doc["failures"] == []
    assert doc["warnings"][0]["input"] == str(path)


def test_missing_dialog_is_a_usage_error_before_any_audio(tmp_path, capsys):
    junk = tmp_path / "junk.wav"  # unreadable: reading it would fail with exit code 1
    junk.write_bytes(b"not audio")
    out = tmp_path / "junk.csv"
    rc = main(["animate", str(junk), "-o", str(out), "--dialog", str(tmp_path / "nope.txt")])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and err == [f"error: {tmp_path / 'nope.txt'}: no such dialog file"]
    assert not out.exists()
    for args, message in (
        (["--text", "a", "--dialog", str(junk)], "give one of --text, --dialog and --dialog-dir"),
        (["--text", "?!"], "--text: the transcript has no words"),
        (["--dialog-dir", str(tmp_path / "none")], "no such dialog folder"),
        (["--dialog-dir", str(tmp_path)], "no transcript for any input"),
    ):
        assert main(["animate", str(junk), "-o", str(out), *args]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and message in err[0]
    assert main(["animate", str(junk), str(junk.with_name("j2.wav")), "--text", "a b"]) == 2


def test_dialog_dir_mirrors_the_inputs_and_a_missing_transcript_warns(bob, tmp_path, capsys):
    import shutil

    path, _ = bob
    clips, words, out = tmp_path / "clips", tmp_path / "words", tmp_path / "out"
    (clips / "sub").mkdir(parents=True)
    (words / "sub").mkdir(parents=True)
    shutil.copy(path, clips / "sub" / "bob.wav")
    shutil.copy(path, clips / "other.wav")
    (words / "sub" / "bob.txt").write_text(SENTENCE, encoding="utf-8")
    rc = main(["animate", str(clips), "--dialog-dir", str(words), "--out-dir", str(out),
               "--format", "json", "--workers", "1", "--quiet"])  # fmt: skip
    assert rc == 0
    warnings = [ln for ln in capsys.readouterr().err.splitlines() if ln.startswith("warning:")]
    assert (
        len(warnings) == 1 and "other.wav" in warnings[0] and "no such dialog file" in warnings[0]
    )
    meta = json.loads((out / "sub" / "bob.json").read_text())["metadata"]
    assert meta["visemes"] == "text"
    assert json.loads((out / "other.json").read_text())["metadata"].get("visemes") is None


def test_aligned_posteriors_are_label_smoothed_pairs_of_10ms_frames():
    segments = [(0.0, 0.1, "sil"), (0.1, 0.25, "M"), (0.25, 0.5, "AA")]
    p = aligned_posteriors(segments, 25)
    assert p.shape == (25, 15)
    np.testing.assert_allclose(p.sum(axis=1), 1.0, atol=1e-6)
    ids = p.argmax(axis=1)
    assert (ids[:5] == 0).all() and (ids[5:12] == VISEMES.index("PP")).all()
    assert (ids[13:] == VISEMES.index("aa")).all()
    assert p.max() == pytest.approx(0.85 + 0.15 / 15)
    assert p[12, VISEMES.index("PP")] == pytest.approx(p[12, VISEMES.index("aa")])  # straddles
    assert fit_score(p, p) == 1.0
    shifted = np.roll(p, 2, axis=0)  # 40 ms late: forgiven
    assert fit_score(p, shifted) == 1.0
    assert fit_score(p, np.roll(p[::-1], 1, axis=0)) < 0.5


def test_given_visemes_give_the_recognizers_frames_and_times():
    from audio2anim.graph.testing import audio_packets, run_operator
    from audio2anim.operators.feature_visemes_given import GivenVisemes

    x = np.zeros(16000 + 517, np.float32)
    probs = np.full((40, 15), 1 / 15, np.float32)
    probs[:, 3] += 0.5
    probs /= probs.sum(axis=1, keepdims=True)
    given = run_operator(GivenVisemes, audio_packets(x, 16000, block=333), {"probs": probs})["out"]
    recognized = run_operator(
        "feature.visemes", audio_packets(x, 16000, block=333), {"backend": "onnx"}
    )["out"]
    assert sum(len(p.payload.ids) for p in given) == len(x) // 320
    assert sum(len(p.payload.ids) for p in recognized) == len(x) // 320
    assert given[0].media_time == recognized[0].media_time == 0.0
    ids = np.concatenate([p.payload.ids for p in given])
    assert (ids == 3).all()  # beyond the 40 rows given, the last repeats
    with pytest.raises(ValueError, match="probs rows must sum to 1"):
        GivenVisemes.Params(probs=np.ones((3, 15)))


def test_refined_timing_keeps_the_sequence_and_moves_the_boundaries():
    from audio2anim.animate.text import refine_timing, smoothed_onehots

    aligned = np.array([0] * 10 + [1] * 6 + [10] * 10 + [0] * 4)
    heard = np.array([0] * 13 + [1] * 6 + [10] * 8 + [0] * 3)  # 60 ms later
    refined = refine_timing(aligned, smoothed_onehots(heard, 0.3))
    np.testing.assert_array_equal(refined, heard)
    far = np.array([0] * 25 + [1] * 2 + [10] * 3)  # 300 ms away: beyond the band
    moved = refine_timing(aligned, smoothed_onehots(far, 0.3))
    runs = [int(v) for k, v in enumerate(moved) if k == 0 or v != moved[k - 1]]
    assert runs == [0, 1, 10, 0]  # every viseme of the words kept, in order
    assert np.abs(np.flatnonzero(moved == 1)[0] - 10) <= 6
    sil_only = refine_timing(np.zeros(5, int), smoothed_onehots(np.ones(5, int)))
    np.testing.assert_array_equal(sil_only, np.zeros(5, int))
