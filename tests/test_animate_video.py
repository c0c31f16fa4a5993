"""``animate --video`` and ``render --audio``: the MP4 carries the input's audio as it is (its
rate, or the nearest AAC rate, and its channels), and the video runs at ``--fps`` for the
input's duration. espeak-ng speech, tiny random checkpoints (the plumbing is checked here)."""

from __future__ import annotations

from pathlib import Path

import av
import numpy as np
import pytest
import soundfile as sf
from tiny_models import graph_overrides, make_tiny_checkpoints, speak

from audio2anim.cli import main
from audio2anim.face.video import AAC_RATES, VideoWriter, aac_rate

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def ckpts(tmp_path_factory):
    return make_tiny_checkpoints(tmp_path_factory.mktemp("tiny-ckpts"))


@pytest.fixture(scope="module")
def stereo_44k(tmp_path_factory):
    """Speech at 44.1 kHz in the left channel, a 440 Hz tone in the right."""
    import soxr

    audio, sr, _ = speak("Bob made a map of the moon.")
    left = soxr.resample(audio, sr, 44100).astype(np.float32)
    right = 0.2 * np.sin(2 * np.pi * 440 * np.arange(len(left)) / 44100).astype(np.float32)
    path = tmp_path_factory.mktemp("in") / "line.wav"
    sf.write(path, np.stack([left, right], axis=1), 44100)
    return path, len(left) / 44100


def _probe(path: Path) -> dict:
    with av.open(str(path)) as c:
        v, a = c.streams.video[0], c.streams.audio[0]
        info = {
            "fps": float(v.average_rate),
            "frames": sum(1 for _ in c.decode(video=0)),
            "rate": a.codec_context.sample_rate,
            "channels": a.codec_context.channels,
        }
    with av.open(str(path)) as c:
        planes = [f.to_ndarray() for f in c.decode(audio=0)]
    info["audio"] = np.concatenate(planes, axis=1)  # [channels, samples] (planar float)
    return info


@pytest.mark.parametrize("fps", [30, 24])
def test_animate_video_keeps_the_input_audio_and_runs_at_fps(tmp_path, ckpts, stereo_44k, fps):
    src, seconds = stereo_44k
    out, video = tmp_path / "out.csv", tmp_path / "out.mp4"
    rc = main(
        ["animate", str(src), "-o", str(out), "--video", str(video), "--size", "64",
         "--fps", str(fps), "--graph", str(ROOT / "audio2anim/graphs/viseme_cnn.yaml"),
         "--quiet", *[a for s in graph_overrides("viseme_cnn", ckpts) for a in ("--set", s)]]
    )  # fmt: skip
    assert rc == 0
    info = _probe(video)
    assert info["rate"] == 44100 and info["channels"] == 2
    assert info["fps"] == pytest.approx(fps)
    assert abs(info["frames"] - seconds * fps) <= 1.5  # the input's duration at the asked rate
    rows = len(out.read_text().splitlines()) - 1
    assert rows == info["frames"]  # the CSV and the video share the frame rate
    left, right = info["audio"]
    assert len(left) / 44100 == pytest.approx(seconds, abs=0.05)

    # the channels are kept apart: the tone is in the right channel only, at 440 Hz
    def peak_hz(x):
        spectrum = np.abs(np.fft.rfft(x[: 44100 // 2]))
        return np.argmax(spectrum) * 44100 / (44100 // 2)

    assert peak_hz(right) == pytest.approx(440, abs=4)
    mid = right[len(right) // 4 : 3 * len(right) // 4]
    assert np.sqrt(np.mean(mid**2)) == pytest.approx(0.2 / np.sqrt(2), rel=0.1)
    assert np.abs(peak_hz(left) - 440) > 20  # speech, not the tone


@pytest.mark.parametrize("rate, expected", [(44100, 44100), (22050, 22050), (44000, 44100),
                                            (37800, 32000), (50000, 48000), (6000, 8000)])  # fmt: skip
def test_aac_rate_is_the_input_rate_or_the_nearest_one_aac_takes(rate, expected):
    assert aac_rate(rate) == expected
    assert aac_rate(rate) in AAC_RATES


def test_writer_resamples_a_rate_aac_does_not_take(tmp_path):
    """37.8 kHz stereo in blocks → 32 kHz stereo, the same length and tone."""
    rate, n = 37800, 37800 * 2
    t = np.arange(n) / rate
    tone = np.stack([0.3 * np.sin(2 * np.pi * 300 * t), 0.1 * np.sin(2 * np.pi * 300 * t)], 1)
    w = VideoWriter(tmp_path / "x.mp4", fps=25, with_audio=True)
    for k in range(0, n, 5000):  # blocks of any size
        w.add_audio(tone[k : k + 5000], k / rate, rate)
    w.add_frames(np.zeros((50, 32, 32, 3), np.uint8), 0.0, 25)
    w.close()
    info = _probe(tmp_path / "x.mp4")
    assert info["rate"] == 32000 and info["channels"] == 2
    left, right = info["audio"]
    assert len(left) / 32000 == pytest.approx(2.0, abs=0.05)
    mid = slice(8000, 56000)
    assert np.sqrt(np.mean(left[mid] ** 2)) == pytest.approx(0.3 / np.sqrt(2), rel=0.1)
    assert np.sqrt(np.mean(right[mid] ** 2)) == pytest.approx(0.1 / np.sqrt(2), rel=0.1)


def test_render_muxes_the_audio_file_as_it_is(tmp_path):
    lines = ["time,jawOpen"] + [f"{k / 25:.6f},{(k % 10) / 10:.6f}" for k in range(50)]
    (tmp_path / "x.csv").write_text("\n".join(lines) + "\n")
    t = np.arange(2 * 48000) / 48000
    sf.write(tmp_path / "a.wav", np.stack([np.sin(2 * np.pi * 200 * t)] * 2, 1) * 0.3, 48000)
    rc = main(["render", str(tmp_path / "x.csv"), "--audio", str(tmp_path / "a.wav"),
               "-o", str(tmp_path / "x.mp4"), "--size", "64", "--msaa", "1"])  # fmt: skip
    assert rc == 0
    info = _probe(tmp_path / "x.mp4")
    assert (info["rate"], info["channels"], info["frames"]) == (48000, 2, 50)
