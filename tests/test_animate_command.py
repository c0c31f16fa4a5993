"""``audio2anim animate``: any rate, mono or stereo, WAV or FLAC → CSV (and MP4); the shipped
method graphs validate with a file source. Tiny random checkpoints: the plumbing is checked,
not the animation (that is test_method_graphs)."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from tiny_models import graph_overrides, make_tiny_checkpoints, speak

from audio2anim import arkit
from audio2anim.cli import main

ROOT = Path(__file__).resolve().parents[1]
METHOD_GRAPHS = ("viseme_mlp", "viseme_cnn", "w2v_cnn", "w2v_ar", "w2v_attention", "pocketsphinx")


@pytest.fixture(scope="module")
def ckpts(tmp_path_factory):
    return make_tiny_checkpoints(tmp_path_factory.mktemp("tiny-ckpts"))


@pytest.fixture(scope="module")
def speech():
    audio, sr, _ = speak("Bob made a map of the moon.")
    return audio, sr


def _tiny_overrides(graph: str, ckpts) -> list[str]:
    return [a for s in graph_overrides(graph, ckpts) for a in ("--set", s)]


def _read_csv(path: Path) -> tuple[list[str], np.ndarray]:
    with open(path, newline="") as f:
        rows = list(csv.reader(f))
    return rows[0], np.array(rows[1:], dtype=np.float64)


@pytest.mark.parametrize(
    "rate, channels, fmt",
    [(8000, 2, "WAV"), (44100, 1, "WAV"), (48000, 1, "FLAC")],
)
def test_animate_reads_any_rate_and_channel_count(tmp_path, ckpts, speech, rate, channels, fmt):
    import soxr

    audio, sr = speech
    x = soxr.resample(audio, sr, rate).astype(np.float32)
    if channels == 2:  # the right channel quieter: the source averages them
        x = np.stack([x, 0.5 * x], axis=1)
    src = tmp_path / f"in.{fmt.lower()}"
    sf.write(src, x, rate, format=fmt)
    out = tmp_path / "out.csv"
    rc = main(
        ["animate", str(src), "-o", str(out), "--graph", str(ROOT / "audio2anim/graphs/viseme_cnn.yaml"),
         "--quiet", *_tiny_overrides("viseme_cnn", ckpts)]
    )  # fmt: skip
    assert rc == 0
    header, values = _read_csv(out)
    assert header == ["time", *arkit.ALL]  # exactly as ARKit spells them
    duration = len(x) / rate
    assert abs(len(values) - int(duration * 50)) <= 1  # every 20 ms frame, none dropped
    np.testing.assert_allclose(np.diff(values[:, 0]), 0.02, atol=1e-6)
    assert values[0, 0] == 0.0
    assert values[:, 1:].min() >= 0 and values[:, 1:].max() <= 1
    predicted = [header.index(n) for n in arkit.MOUTH + arkit.EYES]
    assert values[:, predicted].std(axis=0).max() > 0  # the weights move
    others = [i for i in range(1, len(header)) if header[i] not in arkit.MOUTH + arkit.EYES]
    assert (values[:, others] == 0).all()  # parameters no model predicts are 0


def test_animate_writes_a_video_too(tmp_path, ckpts, speech):
    import av

    audio, sr = speech
    src = tmp_path / "in.wav"
    sf.write(src, audio, sr)
    out, video = tmp_path / "out.csv", tmp_path / "out.mp4"
    rc = main(
        ["animate", str(src), "-o", str(out), "--video", str(video), "--size", "96",
         "--graph", str(ROOT / "audio2anim/graphs/w2v_cnn.yaml"), "--quiet",
         *_tiny_overrides("w2v_cnn", ckpts)]
    )  # fmt: skip
    assert rc == 0
    _, values = _read_csv(out)
    with av.open(str(video)) as f:
        kinds = {s.type for s in f.streams}
        frames = sum(1 for _ in f.decode(video=0))
    assert kinds == {"video", "audio"}
    assert abs(frames - len(values)) <= 1


def test_animate_errors_are_one_line(tmp_path, capsys):
    assert main(["animate", str(tmp_path / "missing.wav"), "-o", str(tmp_path / "o.csv")]) == 2
    assert "missing.wav: no such file" in capsys.readouterr().err
    bad = tmp_path / "bad.wav"
    bad.write_bytes(b"not audio at all")
    assert main(["animate", str(bad), "-o", str(tmp_path / "o.csv")]) == 1  # the input failed
    assert "not a readable audio file" in capsys.readouterr().err
    good = tmp_path / "good.wav"
    sf.write(good, np.zeros(1600, np.float32), 16000)
    # a missing output folder is created; one that cannot be (under a file) is an error
    assert main(["animate", str(good), "-o", str(good / "o.csv")]) == 2
    assert "cannot create folder" in capsys.readouterr().err
    assert main(["animate", str(good), "-o", str(tmp_path / "new" / "o.csv")]) == 0
    assert (tmp_path / "new" / "o.csv").read_text().startswith("time,")


@pytest.mark.parametrize("graph", METHOD_GRAPHS)
def test_method_graphs_validate_live_and_from_a_file(graph, tmp_path):
    """Each graph loads as shipped (microphone) and with the source swapped to a file."""
    from audio2anim.graph.spec import load_graph

    path = ROOT / "audio2anim" / "graphs" / f"{graph}.yaml"
    live = load_graph(path)
    assert live.nodes["src"].op_class.name == "source.microphone"
    assert "sink.browser" in {n.op_class.name for n in live.nodes.values()}
    wav = tmp_path / "a.wav"
    sf.write(wav, np.zeros(1600, np.float32), 16000)
    from_file = load_graph(path, ["src.op=source.file", f"src.path={wav}", "src.realtime=true"])
    assert from_file.nodes["src"].op_class.name == "source.file"
    # live edges drop instead of queueing up audio
    assert {e.policy for e in live.edges if e.src == "src"} == {"drop_oldest"}
