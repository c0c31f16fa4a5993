"""The face operators inside real graphs: speech -> loudness jaw -> render.mesh -> sink.video."""

import asyncio

import av
import numpy as np
import pytest
import soundfile as sf

import tests.graph_ops  # noqa: F401  (registers test.fail_after)
from audio2anim.graph.errors import OperatorError
from audio2anim.graph.runner import run_graph
from audio2anim.graph.spec import parse_graph

GRAPH = """
name: face-test
nodes:
  src:  {{op: source.file, params: {{path: {wav}, block_ms: 40}}}}
  {fail}
  jaw:  {{op: params.loudness_jaw, params: {{frame_rate: 25}}}}
  face: {{op: render.mesh, params: {{size: 96, msaa: 1}}}}
  out:  {{op: sink.video, params: {{path: {mp4}}}}}
edges:
  - {chain}
  - {{from: src, to: out.audio}}
"""


@pytest.fixture
def wav(tmp_path):
    rate = 16000
    t = np.arange(2 * rate) / rate  # 2 s: a syllable-like burst every 0.25 s
    x = 0.4 * np.sin(2 * np.pi * 180 * t) * (np.sin(2 * np.pi * 4 * t) > 0)
    sf.write(tmp_path / "speech.wav", x.astype(np.float32), rate)
    return tmp_path / "speech.wav"


def _graph(tmp_path, wav, fail_after=None):
    fail = f"fail: {{op: test.fail_after, params: {{after: {fail_after}}}}}" if fail_after else ""
    chain = "src -> fail -> jaw -> face -> out" if fail_after else "src -> jaw -> face -> out"
    text = GRAPH.format(wav=wav, mp4=tmp_path / "out.mp4", fail=fail, chain=chain)
    return parse_graph(text)


def _probe(path):
    with av.open(str(path)) as c:
        kinds = sorted(s.type for s in c.streams)
        frames = [f.to_ndarray(format="rgb24") for f in c.decode(video=0)]
        a = c.streams.audio[0]
        audio_s = float(a.duration * a.time_base)
    return kinds, frames, audio_s


def test_speech_to_video_graph(tmp_path, wav):
    asyncio.run(run_graph(_graph(tmp_path, wav)))
    kinds, frames, audio_s = _probe(tmp_path / "out.mp4")
    assert kinds == ["audio", "video"]
    assert len(frames) == 50 and audio_s == pytest.approx(2.0, abs=0.1)
    # the jaw follows the bursts: mouth pixels vary over time
    mouth = np.stack([f[60:75, 38:58].mean() for f in frames])
    assert mouth.max() - mouth.min() > 10


def test_video_plays_after_the_graph_fails_midway(tmp_path, wav):
    with pytest.raises(OperatorError, match="fail"):
        asyncio.run(run_graph(_graph(tmp_path, wav, fail_after=20)))  # 0.8 s of 2 s
    kinds, frames, audio_s = _probe(tmp_path / "out.mp4")
    assert kinds == ["audio", "video"]
    assert 10 <= len(frames) <= 20  # what reached the sink before the failure, all playable
    assert audio_s > 0.3
