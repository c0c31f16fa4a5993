"""Every shipped method graph, with the shipped checkpoints (``checkpoints/``), over an
espeak-ng sentence read from a file: parameters in range; the mouth closes on the sentence's
bilabials and opens on its open vowels at the right times (±60 ms); the graph's smoothing
lowers the jitter of the model output without moving it later than its declared lag.

The pocketsphinx graph hears the sentence from Festival's kal voice instead: pocketsphinx's
en-us acoustic model recognizes almost no phones in espeak-ng's formant speech (it hears
"SIL AA L SIL UW IY T AH SIL UW" for "Bob made a map of the moon") but does well on Festival's
diphone voice — a property of the recognizer, not of the streaming code under test."""

from __future__ import annotations

import asyncio
import csv
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from tiny_models import speak

from audio2anim import arkit
from audio2anim.animate.graph_edit import offline_graph
from audio2anim.graph.runner import run_graph
from audio2anim.train.metrics import CLOSED, lip_gap
from audio2anim.visemes import phone_class

ROOT = Path(__file__).resolve().parents[1]
METHOD_GRAPHS = ("viseme_mlp", "viseme_cnn", "w2v_cnn", "w2v_ar", "w2v_attention", "pocketsphinx",
                 "whisper_w2v_cnn", "whisper_w2v_ar", "whisper_w2v_attention")  # fmt: skip
SENTENCE = "Bob made a map of the moon. Pam bought a big blue boat."
TOLERANCE_S = 0.06
FRAME_RATE = 50.0
NAMES = arkit.MOUTH + arkit.EYES


@pytest.fixture(scope="module")
def sentence(tmp_path_factory):
    """The sentence as a WAV at espeak's own rate (the graph resamples) + its phone segments
    + their phoneset."""
    audio, sr, segments = speak(SENTENCE)
    path = tmp_path_factory.mktemp("speech") / "sentence.wav"
    sf.write(path, audio, sr, subtype="FLOAT")
    return path, segments, "espeak"


@pytest.fixture(scope="module")
def festival_sentence(tmp_path_factory):
    from audio2anim.data.tts import festival

    audio, sr, segments = festival.synth(SENTENCE, "kal")
    path = tmp_path_factory.mktemp("speech") / "sentence-kal.wav"
    sf.write(path, audio, sr, subtype="FLOAT")
    return path, [(s[0], s[1], s[2]) for s in segments], "arpabet"


def _read(path: Path) -> np.ndarray:
    """A simple-layout CSV → [T, 30] in MOUTH + EYES order (times checked on the way)."""
    with open(path, newline="") as f:
        rows = list(csv.reader(f))
    header, values = rows[0], np.array(rows[1:], dtype=np.float64)
    np.testing.assert_allclose(values[:, 0], np.arange(len(values)) / FRAME_RATE, atol=1e-6)
    return values[:, [header.index(n) for n in NAMES]]


def _window(start: float, end: float, n: int) -> slice:
    """Frames whose 20 ms span meets [start - 60 ms, end + 60 ms]."""
    lo = int(np.floor((start - TOLERANCE_S) * FRAME_RATE))
    hi = int(np.ceil((end + TOLERANCE_S) * FRAME_RATE))
    return slice(max(0, lo), min(n, hi))


def _run(graph: str, wav: Path, tmp_path: Path) -> tuple[np.ndarray, np.ndarray, object]:
    sinks = {
        "csv": ("sink.csv", {"path": str(tmp_path / "smooth.csv"), "layout": "simple"}),
        "raw": ("sink.csv", {"path": str(tmp_path / "raw.csv"), "layout": "simple"},
                [("pred", "in")]),
    }  # fmt: skip
    g = offline_graph(ROOT / "audio2anim" / "graphs" / f"{graph}.yaml", wav, sinks)
    report = asyncio.run(run_graph(g))
    assert report.stopped == "eos"
    return _read(tmp_path / "smooth.csv"), _read(tmp_path / "raw.csv"), g


@pytest.mark.parametrize("graph", METHOD_GRAPHS)
def test_method_graph_moves_the_mouth_with_the_sentence(
    graph, sentence, festival_sentence, tmp_path
):
    wav, segments, phoneset = festival_sentence if graph == "pocketsphinx" else sentence
    smooth, raw, g = _run(graph, wav, tmp_path)
    duration = sf.info(str(wav)).duration
    assert abs(len(smooth) - int(duration * FRAME_RATE)) <= 1
    assert smooth.min() >= 0 and smooth.max() <= 1

    _assert_mouth_follows(smooth, segments, phoneset)

    jaw = smooth[:, NAMES.index("jawOpen")]
    # the graph's smoothing: less jitter, and no later than its declared step delay
    smoother = g.nodes["smooth"].op_class(g.nodes["smooth"].params)
    jitter = lambda p: np.abs(np.diff(p, n=2, axis=0)).mean()  # noqa: E731
    assert jitter(smooth) < jitter(raw)
    lag = _lag_frames(raw[:, NAMES.index("jawOpen")], jaw)
    assert 0 <= lag <= smoother.step_delay() * FRAME_RATE + 1


def _assert_mouth_follows(params: np.ndarray, segments, phoneset: str) -> None:
    """Lips closed (lip gap ≤ CLOSED) within ±60 ms of ≥ 75 % of the bilabials; jaw open
    (≥ 0.1, lips apart) within ±60 ms of ≥ 75 % of the open vowels."""
    gap = lip_gap(params)
    jaw = params[:, NAMES.index("jawOpen")]
    closed, opened = [], []
    for start, end, phone in segments:
        cls = phone_class(phone, phoneset)
        w = _window(start, end, len(params))
        if cls == "bilabial":
            closed.append(gap[w].min() <= CLOSED)
        elif cls == "open":
            opened.append(jaw[w].max() >= 0.1 and gap[w].max() > CLOSED)
    assert len(closed) >= 8 and len(opened) >= 5  # the sentence has them
    assert np.mean(closed) >= 0.75, f"lips closed on {sum(closed)}/{len(closed)} bilabials"
    assert np.mean(opened) >= 0.75, f"mouth open on {sum(opened)}/{len(opened)} open vowels"


def test_the_mouth_criteria_hold_for_the_teacher_and_fail_for_a_still_face(sentence):
    """The checks above are reachable (the procedural teacher the models learn from passes)
    and not vacuous (a face that never moves, or always opens, fails)."""
    from audio2anim.data.teacher import animate

    wav, segments, phoneset = sentence
    audio, sr = sf.read(str(wav), dtype="float32")
    t = animate(segments, phoneset, audio, sr, FRAME_RATE)
    teacher = np.concatenate([t["mouth"], t["eyes"]], axis=1)
    _assert_mouth_follows(teacher, segments, phoneset)
    for still in (np.zeros_like(teacher), teacher.max(axis=0) * np.ones_like(teacher)):
        with pytest.raises(AssertionError):
            _assert_mouth_follows(still, segments, phoneset)


def _lag_frames(a: np.ndarray, b: np.ndarray, max_lag: int = 10) -> int:
    """The shift of ``b`` behind ``a`` (frames) that best aligns them."""
    a, b = a - a.mean(), b - b.mean()
    n = len(a)
    scores = [float(np.dot(a[: n - k], b[k:])) for k in range(max_lag + 1)]
    return int(np.argmax(scores))


def test_a_method_graph_runs_live_from_a_microphone(tmp_path):
    """graphs/viseme_cnn.yaml as shipped (microphone → browser viewer + Live Link), on ALSA's
    null PCM as the microphone: it starts, streams parameters to Live Link and stops cleanly.
    (The null PCM delivers uninitialised memory, so this checks the plumbing, not the face.)"""
    import os
    import socket
    import subprocess
    import sys

    (tmp_path / ".asoundrc").write_text(
        'pcm.a2a_null {\n type null\n hint { show on description "test" }\n}\n'
    )
    ll = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    ll.bind(("127.0.0.1", 0))
    sets = [
        "src.device=a2a_null", "src.samplerate=16000", "src.max_seconds=1.0", "view.port=0",
        f"unreal.port={ll.getsockname()[1]}",
    ]  # fmt: skip
    cmd = [sys.executable, "-m", "audio2anim", "run", "graphs/viseme_cnn.yaml", "--quiet"]
    for s in sets:
        cmd += ["--set", s]
    env = dict(os.environ, HOME=str(tmp_path), PYTHONPATH=str(ROOT))
    result = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=180)
    assert result.returncode == 0, result.stderr[-2000:]
    ll.settimeout(0.5)
    received = 0
    try:
        while True:
            ll.recvfrom(65536)
            received += 1
    except TimeoutError:
        pass
    ll.close()
    # 1 s at 50 frames/s; live queues may drop under load, never add
    assert 0 < received <= 51
