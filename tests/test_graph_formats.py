"""Stream formats are negotiated before any packet flows: an edge whose ends disagree on the
rate, the width or the kind of features stops the graph with one line naming the edge."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from pathlib import Path

import pytest
from tiny_models import make_logmel_predictor

from audio2anim.graph.errors import GraphError, OperatorError
from audio2anim.graph.formats import Format, mismatch
from audio2anim.graph.operator import Operator, Port
from audio2anim.graph.packets import Packet
from audio2anim.graph.registry import register
from audio2anim.graph.runner import Runner
from audio2anim.graph.spec import parse_graph
from audio2anim.streams import Audio

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def predictors(tmp_path_factory):
    root = tmp_path_factory.mktemp("preds")
    return {
        "logmel": make_logmel_predictor(root / "logmel"),
        "posteriors": make_logmel_predictor(root / "posteriors", feature="posteriors"),
    }


@register("test.count_sink")
class CountSink(Operator):
    """Counts packets; remembers whether it was closed."""

    inputs = {"in": Port(object)}
    outputs = {}

    def setup(self):
        self.got, self.closed = 0, False

    def process(self, port, packet):
        self.got += 1

    def close(self):
        self.closed = True


def _fails_before_start(text: str) -> str:
    async def main():
        runner = Runner(parse_graph(text, source="g.yaml"))
        with pytest.raises(GraphError) as e:
            await runner.run()
        packets = runner.registry.get_sample_value(
            "audio2anim_packets_total", {"graph": "g", "node": "src"}
        )
        assert not packets  # the source never emitted
        assert runner.operator("out").got == 0 and runner.operator("out").closed
        return str(e.value)

    msg = asyncio.run(main())
    assert "\n" not in msg and msg.startswith("g.yaml: ")
    return msg


def test_audio_at_the_wrong_rate_is_refused_before_start():
    msg = _fails_before_start("""
name: g
nodes:
  src:  {op: source.synthetic, params: {rate: 48000}}
  feat: {op: feature.logmel}
  out:  {op: test.count_sink}
edges: [src -> feat -> out]
""")
    assert msg == (
        "g.yaml: src → feat: the stream is 48000 Hz, takes 16000 Hz (feat is feature.logmel); "
        "put a resample node between them"
    )


def test_features_of_the_wrong_width_or_kind_are_refused_before_start(predictors):
    graph = """
name: g
nodes:
  src:  {{op: source.synthetic, params: {{rate: 16000}}}}
  feat: {{op: feature.logmel, params: {{n_mels: {mels}}}}}
  pred: {{op: predictor.w2v_cnn, params: {{checkpoint: {ckpt}, backend: onnx}}}}
  out:  {{op: test.count_sink}}
edges: [src -> feat -> pred -> out]
"""
    msg = _fails_before_start(graph.format(mels=40, ckpt=predictors["logmel"]))
    assert (
        "feat → pred: the stream is 40 values per frame, takes 80 (pred is predictor.w2v_cnn)"
        in msg
    )
    msg = _fails_before_start(graph.format(mels=80, ckpt=predictors["posteriors"]))
    assert "feat → pred: the stream is features 'logmel', takes 'w2v2-posteriors'" in msg


def test_matching_formats_run(predictors):
    text = f"""
name: g
nodes:
  src:  {{op: source.synthetic, params: {{rate: 48000, duration_s: 0.3}}}}
  rs:   {{op: resample, params: {{rate: 16000}}}}
  feat: {{op: feature.logmel}}
  pred: {{op: predictor.w2v_cnn, params: {{checkpoint: {predictors["logmel"]}, backend: onnx}}}}
  smooth: {{op: smoothing.one_euro}}
  out:  {{op: test.count_sink}}
edges: [src -> rs -> feat -> pred -> smooth -> out]
"""

    async def main():
        runner = Runner(parse_graph(text))
        await runner.run()
        return runner.operator("out").got

    assert asyncio.run(main()) > 0


def test_the_cli_reports_a_format_mismatch_as_a_graph_error(tmp_path):
    graph = tmp_path / "g.yaml"
    graph.write_text("""
name: g
nodes:
  src:  {op: source.synthetic, params: {rate: 22050}}
  jaw:  {op: params.loudness_jaw}
  feat: {op: feature.logmel}
  out:  {op: sink.null}
edges:
  - src -> jaw -> out
  - src -> feat -> out
""")
    result = subprocess.run(
        [sys.executable, "-m", "audio2anim", "run", str(graph), "--quiet"],
        cwd=tmp_path,
        env={"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 2  # as every other graph error
    assert result.stderr.strip().splitlines() == [
        f"error: {graph}: src → feat: the stream is 22050 Hz, takes 16000 Hz "
        "(feat is feature.logmel); put a resample node between them"
    ]


@register("test.misdeclared")
class Misdeclared(Operator):
    """Declares 8 kHz audio and emits what it gets."""

    inputs = {"in": Port(Audio)}
    outputs = {"out": Port(Audio)}

    def output_format(self, port, inputs):
        return Format(rate=8000, channels=1)

    def process(self, port, packet):
        return Packet(packet.payload, packet.media_time)


def test_an_output_that_breaks_its_declaration_fails_naming_the_node():
    text = """
name: g
nodes:
  src: {op: source.synthetic, params: {rate: 16000, duration_s: 0.1}}
  mis: {op: test.misdeclared}
  out: {op: test.count_sink}
edges: [src -> mis -> out]
"""
    with pytest.raises(OperatorError) as e:
        asyncio.run(Runner(parse_graph(text)).run())
    assert str(e.value) == (
        "node 'mis' failed: ValueError: output 'out' carries 16000 Hz, 1 channel(s), "
        "but declares 8000 Hz, 1 channel(s)"
    )


def test_unknown_fields_match_anything():
    assert mismatch(Format(), Format(rate=16000, width=3)) is None
    assert mismatch(Format(rate=16000), Format(width=3, kind="logmel")) is None
    assert mismatch(Format(rate=16000.0), Format(rate=16000)) is None
    assert mismatch(Format(rate=16000, width=4), Format(rate=8000, width=3)) == (
        "16000 Hz, takes 8000 Hz; 4 values per frame, takes 3"
    )
