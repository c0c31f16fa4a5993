"""predictor.keras: a seed-style .h5 model as a streaming graph predictor."""

import asyncio
import csv

import numpy as np
import pytest

from audio2anim import arkit
from audio2anim.graph.errors import GraphError
from audio2anim.graph.packets import Packet
from audio2anim.graph.runner import Runner
from audio2anim.graph.spec import parse_graph
from audio2anim.models.keras_h5 import _import_keras
from audio2anim.operators.predictor_keras import KerasParams, KerasPredictorOp
from audio2anim.streams import Visemes


@pytest.fixture(scope="module")
def mouth_h5(tmp_path_factory):
    """A visemeID → mouth-parameter MLP over centred 5-frame windows, saved as legacy HDF5."""
    keras = _import_keras()
    keras.utils.set_random_seed(0)
    model = keras.Sequential(
        [
            keras.Input((5, 15)),
            keras.layers.Flatten(),
            keras.layers.Dense(16, activation="relu"),
            keras.layers.Dense(len(arkit.MOUTH), activation="sigmoid"),
        ]
    )
    path = tmp_path_factory.mktemp("keras") / "visemeID-param-mlp.h5"
    model.save(path)
    return path


def test_streamed_output_equals_whole_utterance(mouth_h5):
    op = KerasPredictorOp(KerasParams(path=mouth_h5, names="mouth"))
    op.setup()
    rng = np.random.default_rng(0)
    probs = rng.dirichlet(np.ones(15), 83).astype(np.float32)
    outs, pos = [], 0
    for n in (1, 7, 2, 30, 1, 42):
        block = probs[pos : pos + n]
        for pkt in op.process("in", Packet(Visemes(block.argmax(1), block, 50.0), pos / 50)) or ():
            outs.append(pkt)
        pos += n
    outs += list(op.flush() or ())
    values = np.concatenate([p.payload.values for p in outs])
    np.testing.assert_allclose(values, op.model.predict(probs), atol=1e-6)
    assert outs[0].payload.names == arkit.MOUTH and outs[0].media_time == 0.0
    assert [p.media_time for p in outs] == sorted(p.media_time for p in outs)
    assert op.latency() == pytest.approx(2 / 50)  # centred 5-frame window: 2 frames ahead


def test_in_a_graph_after_the_viseme_front_end(mouth_h5, tmp_path):
    out = tmp_path / "keras.csv"
    text = f"""
nodes:
  src:  {{op: source.file}}
  rs:   {{op: resample, params: {{rate: 16000}}}}
  vis:  {{op: feature.visemes}}
  pred: {{op: predictor.keras, params: {{path: {mouth_h5}, names: mouth}}}}
  csv:  {{op: sink.csv, params: {{path: {out}, layout: simple}}}}
edges: [src -> rs -> vis -> pred -> csv]
"""
    report = asyncio.run(Runner(parse_graph(text)).run())
    rows = list(csv.DictReader(out.open()))
    assert abs(len(rows) - 7.51 * 50) <= 3  # the shipped 7.5 s clip at 50 Hz
    jaw = np.array([float(r["jawOpen"]) for r in rows])
    assert jaw.min() >= 0 and jaw.max() <= 1 and jaw.std() > 0  # it responds to the speech
    assert report.nodes["pred"]["lookahead_ms"] == pytest.approx(40)


def test_bad_parameters_are_one_line_errors(mouth_h5, tmp_path):
    base = "nodes:\n  v: {{op: source.synthetic}}\n  p: {{op: predictor.keras, params: {{{p}}}}}\nedges: [v -> p]\n"
    with pytest.raises(GraphError, match="params.names: .*not ARKit blendshape names: jawOpenn"):
        parse_graph(base.format(p=f"path: {mouth_h5}, names: 'jawOpenn,mouthClose'"))
    with pytest.raises(GraphError, match="params.path: .*no such Keras model file"):
        parse_graph(base.format(p=f"path: {tmp_path / 'nope.h5'}"))
    op = KerasPredictorOp(KerasParams(path=mouth_h5, names="eyes"))
    with pytest.raises(ValueError, match="19 outputs but names lists 11"):
        op.setup()
