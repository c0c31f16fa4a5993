"""`audio2anim.Animator` with the default graph (the Whisper front end + the shipped viseme
CNN) over espeak-ng speech: the lips close on the bilabials, the viseme posteriors come along,
repeated calls give the same animation, numpy audio at any rate equals the file, and the bad
inputs are one-line errors; files animated in turn by one Animator (or by a process forked
from it) give the bytes each gives alone."""

from __future__ import annotations

import numpy as np
import pytest
import soundfile as sf
from tiny_models import speak

from audio2anim import arkit
from audio2anim.animate.api import AnimateError
from audio2anim.train.metrics import CLOSED, lip_gap
from audio2anim.visemes import VISEMES, phone_class

SENTENCE = "Bob made a map of the moon."


@pytest.fixture(scope="module")
def animator():
    from audio2anim import Animator

    return Animator()


@pytest.fixture(scope="module")
def sentence(tmp_path_factory):
    """espeak-ng speech resampled to 16 kHz in a WAV, the 44.1 kHz samples, and the phones."""
    import soxr

    audio, sr, segments = speak(SENTENCE)
    path = tmp_path_factory.mktemp("speech") / "bob.wav"
    sf.write(path, soxr.resample(audio, sr, 16000).astype(np.float32), 16000, subtype="FLOAT")
    return path, soxr.resample(audio, sr, 44100).astype(np.float32), segments


def test_animate_a_file_closes_the_lips_on_the_bilabials(animator, sentence):
    path, _, segments = sentence
    anim = animator.animate(path)
    assert anim.fps == 50.0 and anim.names[: len(arkit.ALL)] == tuple(arkit.ALL)
    assert abs(anim.frames - int(sf.info(str(path)).duration * 50)) <= 1
    assert anim.metadata["source"] == str(path)
    assert "whisper-w2v-attention" in anim.metadata["model"]  # the default graph's predictor
    assert anim.metadata["graph"].endswith(".yaml")
    gap = lip_gap(anim.values[:, [anim.names.index(n) for n in arkit.MOUTH + arkit.EYES]])
    closed = []
    for start, end, phone in segments:
        if phone_class(phone, "espeak") == "bilabial":
            lo, hi = max(0, int((start - 0.06) * 50)), int((end + 0.06) * 50) + 1
            closed.append(gap[lo:hi].min() <= CLOSED)
    assert len(closed) >= 4 and np.mean(closed) >= 0.75
    # the viseme posteriors come along: PP leads on the lip closures
    assert anim.visemes is not None and anim.visemes.shape == (anim.frames, 15)
    np.testing.assert_allclose(anim.visemes.sum(axis=1), 1.0, atol=1e-3)
    assert anim.visemes[:, VISEMES.index("PP")].max() > 0.5


def test_two_calls_give_the_same_animation(animator, sentence):
    path = sentence[0]
    a, b = animator.animate(path), animator.animate(path)
    np.testing.assert_array_equal(a.values, b.values)
    np.testing.assert_array_equal(a.visemes, b.visemes)


def test_numpy_audio_at_44k_equals_the_file_at_16k(animator, sentence):
    path, x44, _ = sentence
    from_file = animator.animate(path)
    from_array = animator.animate(x44, rate=44100)
    assert from_array.metadata["source"] == "<array>"
    n = min(from_file.frames, from_array.frames)
    assert abs(from_file.frames - from_array.frames) <= 1
    assert np.abs(from_file.values[:n] - from_array.values[:n]).mean() < 0.01
    stereo = animator.animate(np.stack([x44, x44], axis=1), rate=44100)  # channels averaged
    np.testing.assert_allclose(stereo.values, from_array.values, atol=1e-5)


def test_bad_audio_is_a_one_line_error_naming_it(animator, tmp_path):
    cases = {}
    (tmp_path / "junk.wav").write_bytes(b"not audio")
    cases["junk.wav"] = "not a readable audio file"
    sf.write(tmp_path / "empty.wav", np.zeros(0, np.float32), 16000)
    cases["empty.wav"] = "empty"
    sf.write(tmp_path / "short.wav", np.zeros(400, np.float32), 16000)
    cases["short.wav"] = "too short"
    nan = np.zeros(16000, np.float32)
    nan[8000] = np.nan
    sf.write(tmp_path / "nan.wav", nan, 16000, subtype="FLOAT")
    cases["nan.wav"] = "non-finite"
    cases["missing.wav"] = "no such file"
    for name, words in cases.items():
        with pytest.raises(AnimateError) as e:
            animator.animate(tmp_path / name)
        assert str(tmp_path / name) in str(e.value) and words in str(e.value)
        assert "\n" not in str(e.value)
    with pytest.raises(AnimateError, match="rate"):
        animator.animate(np.zeros(16000, np.float32))
    with pytest.raises(AnimateError, match="<array>: .*non-finite"):
        animator.animate(nan, rate=16000)


def _written(animator, path, folder) -> dict[str, bytes]:
    """The bytes of ``path``'s ARKit CSV, animation JSON and Rhubarb cues."""
    from audio2anim.animate.outputs import write_outputs

    folder.mkdir(exist_ok=True)
    outs = [folder / f"{path.stem}{ext}" for ext in (".csv", ".json", ".tsv")]
    write_outputs(animator.animate(path), outs)
    return {o.name: o.read_bytes() for o in outs}


@pytest.fixture(scope="module")
def two_lines(tmp_path_factory):
    """Two different espeak-ng lines at different rates."""
    import soxr

    folder = tmp_path_factory.mktemp("lines")
    paths = []
    for text, rate in (("Put the map on the boat.", 22050), ("Where are my old keys?", 16000)):
        audio, sr, _ = speak(text)
        paths.append(folder / f"{rate}.wav")
        sf.write(paths[-1], soxr.resample(audio, sr, rate).astype(np.float32), rate)
    return paths


def test_files_of_one_animator_give_the_bytes_each_gives_alone(animator, two_lines, tmp_path):
    """Nothing of one file's run (operators, event loop, threads, metrics) reaches the next:
    each file's outputs are those of a fresh Animator that animates only it."""
    from audio2anim import Animator

    a, b = two_lines
    alone = {p: _written(Animator(), p, tmp_path / f"alone-{p.stem}") for p in (a, b)}
    in_turn = [_written(animator, p, tmp_path / f"turn{k}") for k, p in enumerate((a, b, a, b))]
    assert in_turn[0] == in_turn[2] == alone[a]
    assert in_turn[1] == in_turn[3] == alone[b]
    assert alone[a][f"{a.stem}.csv"] != alone[b][f"{b.stem}.csv"]


def test_two_threads_at_once_give_the_bytes_of_one_at_a_time(animator, two_lines, tmp_path):
    from concurrent.futures import ThreadPoolExecutor

    one_at_a_time = [_written(animator, p, tmp_path / f"seq-{p.stem}") for p in two_lines]
    jobs = list(enumerate(two_lines * 2))
    with ThreadPoolExecutor(2) as pool:
        at_once = list(pool.map(lambda j: _written(animator, j[1], tmp_path / f"par{j[0]}"), jobs))
    assert at_once == one_at_a_time * 2


def test_a_forked_process_animates_as_its_parent(animator, two_lines, tmp_path):
    """The batch forks its workers from a process that may already have animated: the child
    runs on its own event loop and threads, with the same outputs."""
    import multiprocessing as mp

    a = two_lines[0]
    here = _written(animator, a, tmp_path / "parent")
    child = mp.get_context("fork").Process(target=_written, args=(animator, a, tmp_path / "kid"))
    child.start()
    child.join(120)
    assert child.exitcode == 0
    assert {p.name: p.read_bytes() for p in (tmp_path / "kid").iterdir()} == here


def test_arkit_csv_is_every_value_at_six_decimals(animator, two_lines):
    from audio2anim.animate.outputs import arkit_csv_pieces, format_arkit_csv

    anim = animator.animate(two_lines[1])
    lines = format_arkit_csv(anim).splitlines()
    assert lines[0] == ",".join(["time", *arkit.ALL]) and len(lines) == anim.frames + 1
    cols = [anim.names.index(n) for n in arkit.ALL]
    for k in (0, anim.frames // 2, anim.frames - 1):
        row = [float(anim.times[k])] + [float(anim.values[k, c]) for c in cols]
        assert lines[k + 1] == ",".join(f"{v:.6f}" for v in row)
    # written in blocks, the same text
    assert "".join(arkit_csv_pieces(anim, rows=7)) == format_arkit_csv(anim)
