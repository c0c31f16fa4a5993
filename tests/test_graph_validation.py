"""Every way a graph file can be wrong gives one clear line naming file, node and field."""

import pytest

import tests.graph_ops  # noqa: F401  (registers the test operators)
from audio2anim.graph.errors import GraphError
from audio2anim.graph.spec import load_graph, parse_graph

GOOD = """
name: g
nodes:
  src: {op: source.synthetic, params: {duration_s: 0.1}}
  rs:  {op: resample, params: {rate: 8000}}
  out: {op: sink.null}
edges:
  - src -> rs -> out
"""


def error(text: str, overrides=()) -> str:
    with pytest.raises(GraphError) as e:
        parse_graph(text, source="g.yaml", overrides=overrides)
    msg = str(e.value)
    assert "\n" not in msg
    assert msg.startswith("g.yaml: ")
    return msg


def test_good_graph_resolves_ports_and_order():
    g = parse_graph(GOOD, source="g.yaml")
    assert g.order == ["src", "rs", "out"]
    assert [(e.src, e.src_port, e.dst, e.dst_port) for e in g.edges] == [
        ("src", "out", "rs", "in"),
        ("rs", "out", "out", "in"),
    ]
    assert g.nodes["rs"].params.rate == 8000


def test_unknown_op():
    msg = error(GOOD.replace("op: resample", "op: resampel"))
    assert "node 'rs'" in msg and "unknown op 'resampel'" in msg


def test_unknown_parameter():
    msg = error(GOOD.replace("{rate: 8000}", "{rate: 8000, qualiti: HQ}"))
    assert "node 'rs' (resample)" in msg and "params.qualiti: unknown parameter" in msg


def test_ill_typed_parameter():
    msg = error(GOOD.replace("{rate: 8000}", "{rate: fast}"))
    assert "node 'rs'" in msg and "params.rate" in msg and "'fast'" in msg


def test_out_of_range_and_bad_choice():
    assert "params.duration_s" in error(GOOD.replace("duration_s: 0.1", "duration_s: -1"))
    assert "params.kind" in error(GOOD.replace("duration_s: 0.1", "kind: square"))


def test_dangling_edge():
    msg = error(GOOD.replace("src -> rs -> out", "src -> rs -> outt"))
    assert "unknown node 'outt'" in msg


def test_cycle():
    text = """
nodes:
  src: {op: source.synthetic}
  a: {op: test.mix}
  b: {op: resample}
edges:
  - src -> a.left
  - {from: a, to: b}
  - {from: b, to: a.right}
"""
    msg = error(text)
    assert "cycle" in msg and "a -> b -> a" in msg


def test_unconnected_required_input():
    msg = error(GOOD.replace("src -> rs -> out", "rs -> out"))
    assert "node 'rs' (resample): required input 'in' is not connected" in msg


def test_two_outputs_into_one_single_input():
    text = GOOD.replace("src -> rs -> out", "src -> rs -> out\n  - {from: src, to: rs}")
    msg = error(text)
    assert "node 'rs'" in msg and "input 'in' takes one edge but 2 feed it" in msg


def test_stream_type_mismatch():
    text = GOOD.replace("op: sink.null", "op: test.params_sink")
    msg = error(text)
    assert "output 'out' carries Audio" in msg and "node 'out' input 'in' takes Params" in msg


def test_unknown_port_and_ports_mid_chain():
    assert "has no input port 'audio'" in error(GOOD.replace("rs -> out", "rs -> out.audio"))
    msg = error(GOOD.replace("src -> rs -> out", "src -> rs.out -> out"))
    assert "ports may be named only at the ends" in msg


def test_invalid_yaml_and_unknown_top_level_key():
    assert "invalid YAML at line" in error("nodes: {a: [}")
    assert "graph.edgez: unknown parameter" in error(GOOD.replace("edges:", "edgez:"))


def test_bad_queue_policy():
    msg = error(GOOD + "queues: {size: 4, policy: leaky}\n")
    assert "graph.queues.policy" in msg


def test_set_overrides_are_type_checked():
    g = parse_graph(GOOD, overrides=["rs.rate=22050", "src.kind=noise"])
    assert g.nodes["rs"].params.rate == 22050 and g.nodes["src"].params.kind == "noise"
    assert "params.rate" in error(GOOD, overrides=["rs.rate=fast"])
    assert "unknown node 'nope'" in error(GOOD, overrides=["nope.rate=1"])
    assert "params.nonsense: unknown parameter" in error(GOOD, overrides=["rs.nonsense=1"])
    with pytest.raises(GraphError, match="expected node.param=value"):
        parse_graph(GOOD, overrides=["rs=1"])


def test_missing_audio_file_is_a_validation_error(tmp_path):
    f = tmp_path / "g.yaml"
    f.write_text(
        GOOD.replace(
            "op: source.synthetic, params: {duration_s: 0.1}",
            "op: source.file, params: {path: nope.wav}",
        )
    )
    with pytest.raises(
        GraphError, match=r"node 'src' \(source.file\): params.path: .*no such file: nope.wav"
    ):
        load_graph(f)


def test_missing_graph_file():
    with pytest.raises(GraphError, match="cannot read graph file"):
        load_graph("does/not/exist.yaml")


def test_set_op_swaps_the_operator_and_drops_its_file_params():
    g = parse_graph(GOOD, overrides=["src.op=source.file", "src.block_ms=10"])
    assert g.nodes["src"].op_class.name == "source.file"
    assert g.nodes["src"].params.block_ms == 10
    assert "unknown op 'source.nope'" in error(GOOD, overrides=["src.op=source.nope"])
    # the swapped-in operator validates its own params
    msg = error(GOOD, overrides=["src.op=source.file", "src.duration_s=3"])
    assert "params.duration_s: unknown parameter" in msg
