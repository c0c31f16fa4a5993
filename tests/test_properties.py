"""Property-based tests: whatever bytes an audio file holds and whatever YAML a graph file
holds, the reader and the parser answer with a valid result or the project's one-line error
(`ValueError` naming the file, `GraphError` naming the graph), never a traceback of another
kind."""

from __future__ import annotations

import struct
import tempfile
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from audio2anim.audio import read_audio, wav_truncation
from audio2anim.graph import registry
from audio2anim.graph.errors import GraphError
from audio2anim.graph.spec import Graph, parse_graph

FAST = settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
WORK = Path(tempfile.mkdtemp(prefix="a2a-props-"))


def _read(data: bytes, name: str = "x.wav", rate: int | None = None):
    """Write ``data`` to a file and read it: (samples, rate) or the one-line error message."""
    path = WORK / name
    path.write_bytes(data)
    try:
        audio, sr = read_audio(path, rate)
    except ValueError as e:
        msg = str(e)
        assert "\n" not in msg and str(path) in msg
        return msg
    assert audio.dtype == np.float32 and audio.ndim == 1
    assert sr == (rate or sr) and sr > 0
    return audio, sr


def _wav_header(fmt_tag: int, channels: int, rate: int, bits: int, declared: int) -> bytes:
    block = (channels * ((bits + 7) // 8)) & 0xFFFF
    fmt = struct.pack("<HHIIHH", fmt_tag, channels, rate, (rate * block) & 0xFFFFFFFF, block, bits)
    return (
        b"RIFF"
        + struct.pack("<I", (36 + declared) & 0xFFFFFFFF)
        + b"WAVE"
        + b"fmt "
        + struct.pack("<I", 16)
        + fmt
        + b"data"
        + struct.pack("<I", declared & 0xFFFFFFFF)
    )


# -- the audio reader ---------------------------------------------------------------------------


@FAST
@given(st.binary(max_size=2048), st.sampled_from(["x.wav", "x.flac", "x.ogg", "x.raw"]))
def test_any_bytes_read_as_audio_or_one_line_error(data, name):
    _read(data, name)


@FAST
@given(st.binary(max_size=512))
def test_any_bytes_after_a_riff_header(data):
    _read(b"RIFF" + struct.pack("<I", len(data) + 4) + b"WAVE" + data)


@FAST
@given(
    fmt_tag=st.sampled_from([1, 3, 6, 7, 0xFFFE, 0, 2]) | st.integers(0, 0xFFFF),
    channels=st.integers(0, 300),
    rate=st.integers(0, 2**32 - 1) | st.sampled_from([8000, 16000, 44100, 48000, 1, 7]),
    bits=st.sampled_from([8, 16, 24, 32, 64]) | st.integers(0, 0xFFFF),
    declared=st.integers(0, 2**32 - 1) | st.integers(0, 4096),
    body=st.binary(max_size=4096),
    resample=st.sampled_from([None, 16000]),
)
def test_wav_headers_with_any_fields(fmt_tag, channels, rate, bits, declared, body, resample):
    _read(_wav_header(fmt_tag, channels, rate, bits, declared) + body, rate=resample)


@FAST
@given(
    rate=st.sampled_from([8000, 11025, 16000, 22050, 44100, 48000]),
    channels=st.integers(1, 4),
    subtype=st.sampled_from(["PCM_16", "PCM_24", "PCM_U8", "FLOAT"]),
    frames=st.integers(1, 3000),
    cut=st.floats(0.0, 1.0),
)
def test_a_truncated_wav_reads_what_is_there_and_says_so(
    rate, channels, subtype, frames, cut, capsys
):
    x = np.random.default_rng(frames).uniform(-0.5, 0.5, (frames, channels)).astype(np.float32)
    path = WORK / "whole.wav"
    sf.write(path, x, rate, subtype=subtype)
    data = path.read_bytes()
    start = data.index(b"data") + 8  # the samples follow the data chunk's header
    declared = struct.unpack("<I", data[start - 4 : start])[0]
    keep = int(start + cut * (len(data) - start))
    capsys.readouterr()
    got = _read(data[:keep])
    err = capsys.readouterr().err
    if isinstance(got, str):  # so little left that libsndfile refuses it: one line, no crash
        return
    audio, sr = got
    assert sr == rate
    whole = read_audio(path)[0]
    assert len(audio) <= len(whole)
    np.testing.assert_allclose(audio, whole[: len(audio)], atol=1e-6)
    if keep - start < declared:
        lines = err.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith(f"warning: {WORK / 'x.wav'}: truncated WAV")
    else:
        assert err == ""


def test_truncation_is_measured_in_seconds(tmp_path):
    path = tmp_path / "a.wav"
    sf.write(path, np.zeros(16000, np.float32), 16000, subtype="PCM_16")
    path.write_bytes(path.read_bytes()[: 44 + 8000])
    assert wav_truncation(path) == (
        "truncated WAV: the header declares 1.00 s, the file holds 0.25 s"
    )
    assert wav_truncation(tmp_path / "missing.wav") is None


# -- the graph parser ---------------------------------------------------------------------------

scalars = (
    st.none()
    | st.booleans()
    | st.integers(-(2**40), 2**40)
    | st.floats(allow_nan=True)
    | st.text(max_size=20)
)
yaml_values = st.recursive(
    scalars,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4)
    ),
    max_leaves=20,
)


def _parse(text: str, overrides=()):
    try:
        g = parse_graph(text, source="g.yaml", overrides=overrides)
    except GraphError as e:
        msg = str(e)
        assert "\n" not in msg and msg.startswith(("g.yaml: ", "--set ")), msg
        return msg
    assert isinstance(g, Graph) and set(g.order) == set(g.nodes)
    return g


@FAST
@given(st.text(max_size=400))
def test_any_text_is_a_graph_or_one_line_error(text):
    _parse(text)


@FAST
@given(yaml_values)
def test_any_yaml_value_is_a_graph_or_one_line_error(value):
    _parse(yaml.safe_dump(value))


@FAST
@given(
    st.sampled_from(
        [
            "2026-13-45",
            "1999-02-30 10:00:00",
            "!!binary 'not base64 @@'",
            "!!python/object:os.system {}",
            "&a [*a]",
            "{a: 1, a: 2}",
            "nodes: {x: {op: resample, params: {rate: 2026-99-99}}}",
            "nodes: !!set {a, b}",
        ]
    ),
    st.text(max_size=40),
)
def test_yaml_that_fails_while_being_built_is_a_graph_error(head, tail):
    _parse(head + "\n" + tail)


def _op_names() -> list[str]:
    return sorted(registry.all_operators())


node_names = st.sampled_from(["src", "rs", "feat", "out", "a-b", "x"]) | st.text(max_size=6)
edge_end = st.builds(
    lambda n, p: n + (f".{p}" if p else ""),
    node_names,
    st.sampled_from([None, "in", "out", "audio", "params", "zz"]),
)
edges = st.lists(edge_end, min_size=1, max_size=4).map(" -> ".join) | st.fixed_dictionaries(
    {"from": edge_end, "to": edge_end},
    optional={
        "size": st.integers(-2, 20) | yaml_values,
        "policy": st.sampled_from(["block", "drop_oldest", "drop_newest", "leak"]),
    },
)


@st.composite
def graphs(draw):
    ops = draw(st.just(_op_names()))
    nodes = draw(
        st.dictionaries(
            node_names,
            st.fixed_dictionaries(
                {"op": st.sampled_from(ops) | st.text(max_size=12)},
                optional={"params": st.dictionaries(st.text(max_size=12), yaml_values, max_size=3)},
            ),
            max_size=4,
        )
    )
    doc = {
        "name": draw(st.text(max_size=8)),
        "nodes": nodes,
        "edges": draw(st.lists(edges, max_size=4)),
    }
    if draw(st.booleans()):
        doc["queues"] = draw(yaml_values | st.fixed_dictionaries({"size": st.integers(-1, 9)}))
    return doc


overrides = st.lists(
    st.builds(lambda k, v: f"{k}={v}", st.text(max_size=12), st.text(max_size=12))
    | st.builds(
        lambda n, p, v: f"{n}.{p}={v}",
        node_names,
        st.sampled_from(["op", "rate", "path", "x.y"]),
        st.text(max_size=10),
    ),
    max_size=2,
)


@settings(max_examples=80, deadline=None)
@given(graphs(), overrides)
def test_generated_graphs_are_a_graph_or_one_line_error(doc, sets):
    _parse(yaml.safe_dump(doc), sets)


@pytest.mark.parametrize("text", ["", "~", "[]", "nodes: {}", "nodes: {}\nedges: []"])
def test_empty_graphs(text):
    _parse(text)
