"""Edits of a graph file's YAML that turn a live method graph into an offline or bench run.

The method graphs (``graphs/viseme_mlp.yaml`` …) read the microphone in node ``src`` and end in
live sinks (browser viewer, Live Link). `offline_graph` rewrites such a graph, before
validation, so that it reads a file instead, drops every sink, attaches the sinks the caller
asks for to the final parameter stream (node ``smooth``) and, unless the run is paced like a
live one, makes every queue ``block`` (nothing may be dropped offline). The result is validated
like any graph file, with ``--set`` overrides applied last.

    graph = offline_graph("graphs/viseme_cnn.yaml", "in.wav",
                          {"csv": ("sink.csv", {"path": "out.csv", "layout": "simple"})})
"""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Any

import yaml

from audio2anim.graph import registry
from audio2anim.graph.errors import GraphError
from audio2anim.graph.spec import Graph, parse_graph, parse_override
from audio2anim.resources import find_graph, graph_not_found

# libyaml's safe loader and dumper when PyYAML has them (several times faster than Python's)
_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
_DUMPER = getattr(yaml, "CSafeDumper", yaml.SafeDumper)


def expand_edges(edges: list) -> list[dict[str, Any]]:
    """A graph file's ``edges`` list → one ``{from, to[, size, policy]}`` mapping per edge
    (chains ``a -> b -> c`` become two)."""
    out: list[dict[str, Any]] = []
    for item in edges:
        if isinstance(item, str):
            hops = [h.strip() for h in item.split("->")]
            out += [{"from": a, "to": b} for a, b in zip(hops[:-1], hops[1:], strict=True)]
        else:
            out.append(dict(item))
    return out


def _stream_node(ops: dict[str, type], endpoint) -> str | None:
    """``endpoint`` itself, or for a stream type the first node whose operator outputs it."""
    if isinstance(endpoint, str):
        return endpoint
    for name, op in ops.items():
        types = [p.type for p in op.outputs.values() if isinstance(p.type, type)]
        if any(issubclass(t, endpoint) for t in types):
            return name
    return None


def _node_of(endpoint: str) -> str:
    return endpoint.split(".", 1)[0]


def offline_graph(
    graph_file: str | Path,
    audio: str | Path,
    sinks: dict[str, tuple[str, dict[str, Any]] | tuple[str, dict[str, Any], list[tuple]]],
    *,
    source_node: str = "src",
    params_node: str = "smooth",
    realtime: bool = False,
    block_ms: float = 1000.0,
    overrides: list[str] | tuple[str, ...] = (),
) -> Graph:
    """``graph_file`` rewritten to read ``audio`` (see the module docstring).

    ``sinks``: node name → ``(op, params)`` fed by ``params_node``, or
    ``(op, params, [(from_endpoint, to_port), …])`` with explicit inputs. A ``from_endpoint``
    may be a stream type (``Visemes``) instead of a name: the first node, in file order, whose
    operator (after ``overrides`` that swap one) outputs that stream; the input is left out when
    no node does. ``realtime``: pace the file like a live device and keep the graph's queue
    policies (for latency benches).
    """
    path = Path(graph_file)
    found = find_graph(path)
    if found is None:
        raise GraphError(graph_not_found(path))
    try:
        raw = yaml.load(found.read_text(), Loader=_LOADER)
    except OSError as e:
        raise GraphError(f"{path}: cannot read graph file: {e.strerror}") from None
    except yaml.YAMLError as e:
        raise GraphError(f"{path}: invalid YAML: {e}") from None
    if not isinstance(raw, dict) or not isinstance(raw.get("nodes"), dict):
        raise GraphError(f"{path}: a graph file is a mapping with 'nodes' and 'edges'")
    nodes: dict[str, Any] = raw["nodes"]
    for needed, what in ((source_node, "source"), (params_node, "parameter")):
        if needed not in nodes:
            raise GraphError(f"{path}: no node '{needed}' (the {what} node an offline run uses)")
    nodes[source_node] = {
        "op": "source.file",
        "params": {"path": str(audio), "block_ms": block_ms, "realtime": realtime},
    }
    swapped = {}
    for text in overrides:
        with contextlib.suppress(GraphError):  # validation below reports a bad one
            node, keys, value = parse_override(text)
            if keys == ["op"]:
                swapped[node] = value
    dropped = set()
    ops: dict[str, type] = {}
    for name, spec in list(nodes.items()):
        try:
            op = registry.get(spec["op"])
            ops[name] = registry.get(swapped.get(name, spec["op"]))
        except (GraphError, KeyError, TypeError):
            continue  # validation below reports it with the file and node
        if not op.outputs:
            dropped.add(name)
            del nodes[name]
    edges = [
        e
        for e in expand_edges(raw.get("edges") or [])
        if _node_of(e["from"]) not in dropped and _node_of(e["to"]) not in dropped
    ]
    for name, sink in sinks.items():
        op, params = sink[0], sink[1]
        inputs = sink[2] if len(sink) > 2 else [(params_node, "in")]
        inputs = [(_stream_node(ops, src), port) for src, port in inputs]
        inputs = [(src, port) for src, port in inputs if src is not None]
        nodes[name] = {"op": op, "params": dict(params)}
        edges += [{"from": src, "to": f"{name}.{port}"} for src, port in inputs]
    if not realtime:
        for e in edges:
            e.pop("policy", None)
        raw["queues"] = {"size": (raw.get("queues") or {}).get("size", 8), "policy": "block"}
    raw["edges"] = edges
    return parse_graph(
        yaml.dump(raw, Dumper=_DUMPER, sort_keys=False),
        source=str(path),
        overrides=overrides,
        default_name=path.stem,
    )
