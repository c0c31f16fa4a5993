"""sink.video writes a playable MP4 with audio, also when the graph stops on an error."""

import av
import numpy as np
import pytest

from audio2anim.graph.packets import Packet
from audio2anim.graph.testing import run_operator
from audio2anim.sinks.video import VideoSink
from audio2anim.streams import Audio, Frames

RATE, FPS = 16000, 25


def _tone(seconds, t0):
    t = t0 + np.arange(int(seconds * RATE)) / RATE
    return (0.3 * np.sin(2 * np.pi * 220 * t)).astype(np.float32)


def _blocks(blocks):
    """`blocks` blocks of 0.2 s as (port, packet): audio first (as in a live graph), then 5
    frames."""
    out = []
    for k in range(blocks):
        t0 = k * 0.2
        out.append(("audio", Packet(Audio(_tone(0.2, t0), RATE), t0)))
        frames = np.full((5, 64, 96, 3), (k * 40) % 256, np.uint8)
        out.append(("in", Packet(Frames(frames, FPS), t0)))
    return out


def _read(path):
    with av.open(str(path)) as c:
        kinds = [s.type for s in c.streams]
        v = c.streams.video[0]
        n_frames = sum(1 for _ in c.decode(video=0))
        size = (v.codec_context.width, v.codec_context.height)
        a = c.streams.audio[0]
        audio_s = float(a.duration * a.time_base)
        video_s = float(v.duration * v.time_base)
    return kinds, n_frames, size, video_s, audio_s


def test_video_has_audio_and_the_right_length(tmp_path):
    run_operator(VideoSink, _blocks(10), {"path": str(tmp_path / "out.mp4")})  # 2 s
    kinds, n, size, video_s, audio_s = _read(tmp_path / "out.mp4")
    assert sorted(kinds) == ["audio", "video"]
    assert n == 50 and size == (96, 64)
    assert video_s == pytest.approx(2.0, abs=0.05)
    assert audio_s == pytest.approx(2.0, abs=0.1)


def test_video_is_playable_after_an_error_midway(tmp_path):
    sink = VideoSink(VideoSink.Params(path=str(tmp_path / "err.mp4")))
    sink.setup()
    try:
        for port, packet in _blocks(6):  # 1.2 s, then the graph fails: no flush, only close()
            sink.process(port, packet)
        raise RuntimeError("upstream operator failed")
    except RuntimeError:
        pass
    finally:
        sink.close()
    kinds, n, _, video_s, audio_s = _read(tmp_path / "err.mp4")
    assert sorted(kinds) == ["audio", "video"]
    assert n == 30
    assert video_s == pytest.approx(1.2, abs=0.05)
    assert audio_s == pytest.approx(1.2, abs=0.1)


def test_gaps_keep_later_frames_in_place(tmp_path):
    img = np.zeros((1, 32, 32, 3), np.uint8)
    run_operator(
        VideoSink,
        [Packet(Frames(img, FPS), 0.0), Packet(Frames(img, FPS), 1.0)],  # frames 1..24 skipped
        {"path": str(tmp_path / "gap.mp4"), "audio": False},
    )
    with av.open(str(tmp_path / "gap.mp4")) as c:
        assert [s.type for s in c.streams] == ["video"]
        times = [f.time for f in c.decode(video=0)]
    assert times == pytest.approx([0.0, 1.0])


def test_odd_frame_size_is_a_clear_error(tmp_path):
    odd = Packet(Frames(np.zeros((30, 33, 33, 3), np.uint8), FPS), 0.0)
    with pytest.raises(ValueError, match="must be even"):  # raised after close()
        run_operator(VideoSink, [odd], {"path": str(tmp_path / "odd.mp4"), "audio": False})
