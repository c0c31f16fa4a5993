"""Graph files: parse the YAML, apply ``--set`` overrides, and validate everything before a run.

A graph file (see DESIGN.md):

```yaml
name: passthrough
nodes:
  src:  {op: source.file, params: {path: assets/speech.wav, block_ms: 20}}
  rs:   {op: resample, params: {rate: 16000}}
  out:  {op: sink.jsonl, params: {path: out/passthrough.jsonl}}
edges:
  - src -> rs -> out                       # a chain; "node.port" names a port at either end
  - {from: rs, to: out, size: 2, policy: drop_oldest}   # the mapping form, per-edge queue
queues: {size: 8, policy: block}           # graph-wide default
```

`load_graph` returns a `Graph`: instantiated, validated params for every node and resolved,
type-checked edges in topological order. Every problem is a `GraphError` whose one-line message
names the file, the node and the field.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from audio2anim.resources import find_graph, graph_not_found, missing_dependency

from . import registry
from .errors import GraphError
from .operator import Operator, OperatorParams, Port

Policy = Literal["block", "drop_oldest", "drop_newest"]
_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_\-]*$")


class QueueSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")
    size: int = Field(8, ge=1, description="packets an edge holds before its policy applies")
    policy: Policy = "block"


class _NodeFile(BaseModel):
    model_config = ConfigDict(extra="forbid")
    op: str
    params: dict[str, Any] = Field(default_factory=dict)


class _EdgeFile(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)
    src: str = Field(alias="from")
    dst: str = Field(alias="to")
    size: int | None = Field(None, ge=1)
    policy: Policy | None = None


class _GraphFile(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str | None = None
    nodes: dict[str, _NodeFile]
    edges: list[str | _EdgeFile] = Field(default_factory=list)
    queues: QueueSpec = Field(default_factory=QueueSpec)


@dataclass
class Node:
    name: str
    op_class: type[Operator]
    params: OperatorParams


@dataclass
class Edge:
    src: str
    src_port: str
    dst: str
    dst_port: str
    size: int
    policy: Policy

    @property
    def label(self) -> str:
        return f"{self.src}.{self.src_port}->{self.dst}.{self.dst_port}"


@dataclass
class Graph:
    """A validated graph: nodes in topological order, resolved edges."""

    name: str
    source: str  # the file (or "<string>") it came from, for messages
    nodes: dict[str, Node]
    edges: list[Edge]
    order: list[str] = field(default_factory=list)

    def in_edges(self, node: str) -> list[Edge]:
        return [e for e in self.edges if e.dst == node]

    def out_edges(self, node: str) -> list[Edge]:
        return [e for e in self.edges if e.src == node]

    def sinks(self) -> list[str]:
        return [n for n in self.order if not self.nodes[n].op_class.outputs]


def _pydantic_message(err: ValidationError, prefix: str) -> str:
    """First error of a pydantic ValidationError as 'prefix.field: message'."""
    first = err.errors()[0]
    loc = ".".join(str(p) for p in first["loc"])
    where = f"{prefix}.{loc}" if loc else prefix
    msg = first["msg"]
    if first["type"] == "extra_forbidden":
        msg = "unknown parameter"
    elif "input" in first and first["type"] != "missing":
        msg = f"{msg} (got {first['input']!r})"
    more = len(err.errors()) - 1
    return f"{where}: {msg}" + (f" (and {more} more error(s))" if more else "")


def parse_override(text: str) -> tuple[str, list[str], Any]:
    """``node.param[.sub]=value`` → (node, [param, sub], value parsed as YAML).

    ``node.op=NAME`` swaps the node's operator (its params from the file are dropped), so a
    live graph's microphone becomes a file: ``--set src.op=source.file --set src.path=a.wav``.
    """
    key, sep, raw = text.partition("=")
    parts = key.strip().split(".")
    if not sep or len(parts) < 2 or not all(parts):
        raise GraphError(f"--set {text!r}: expected node.param=value")
    try:
        value = yaml.safe_load(raw) if raw.strip() else ""
    except (yaml.YAMLError, ValueError, TypeError, OverflowError, RecursionError) as e:
        what = " ".join(str(e).split()) or type(e).__name__  # one line
        raise GraphError(f"--set {text!r}: value is not valid YAML: {what}") from None
    return parts[0], parts[1:], value


def _resolve_port(
    where: str, node: str, op: type[Operator], port: str | None, direction: str
) -> str:
    ports: dict[str, Port] = op.outputs if direction == "output" else op.inputs
    if port is None:
        if len(ports) == 1:
            return next(iter(ports))
        default = "out" if direction == "output" else "in"
        if default in ports:
            return default
        if not ports:
            raise GraphError(f"{where}: node '{node}' ({op.name}) has no {direction}s")
        raise GraphError(
            f"{where}: node '{node}' ({op.name}) has several {direction}s "
            f"({', '.join(ports)}): name one as {node}.PORT"
        )
    if port not in ports:
        have = ", ".join(ports) or "none"
        raise GraphError(
            f"{where}: node '{node}' ({op.name}) has no {direction} port '{port}' ({direction}s: {have})"
        )
    return port


def _split_endpoint(text: str) -> tuple[str, str | None]:
    node, _, port = text.strip().partition(".")
    return node, (port or None)


def _type_name(t: type) -> str:
    return "any" if t is object else t.__name__


def load_graph(path: str | Path, overrides: list[str] | tuple[str, ...] = ()) -> Graph:
    """Read a graph file, apply ``--set`` overrides and validate it."""
    found = find_graph(path)
    if found is None:
        raise GraphError(graph_not_found(path))
    try:
        text = found.read_text()
    except OSError as e:
        raise GraphError(f"{path}: cannot read graph file: {e.strerror}") from None
    path = Path(path)
    return parse_graph(text, source=str(path), overrides=overrides, default_name=path.stem)


def parse_graph(
    text: str,
    source: str = "<string>",
    overrides: list[str] | tuple[str, ...] = (),
    default_name: str = "graph",
) -> Graph:
    """Validate a graph given as YAML text (see `load_graph`)."""
    try:
        return _parse(text, source, overrides, default_name)
    except GraphError as e:
        raise GraphError(_one_line(str(e))) from None


def _parse(text: str, source: str, overrides, default_name: str) -> Graph:
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        line = f" at line {mark.line + 1}" if mark else ""
        what = " ".join(str(getattr(e, "problem", None) or e).split())  # one line
        raise GraphError(f"{source}: invalid YAML{line}: {what}") from None
    except (ValueError, TypeError, OverflowError, RecursionError) as e:
        # a value YAML recognizes but cannot build (a date like 2026-13-45, deep nesting)
        what = " ".join(str(e).split()) or type(e).__name__
        raise GraphError(f"{source}: invalid YAML: {what}") from None
    if not isinstance(raw, dict):
        raise GraphError(f"{source}: a graph file is a mapping with 'nodes' and 'edges'")
    try:
        gf = _GraphFile.model_validate(raw)
    except ValidationError as e:
        raise GraphError(f"{source}: {_pydantic_message(e, 'graph')}") from None
    return _build(gf, source, overrides, gf.name or default_name)


def _one_line(text: str) -> str:
    """``text`` with control characters escaped: a name from the file may hold a newline, and
    an error is one line."""
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)


def _build(gf: _GraphFile, source: str, overrides, name: str) -> Graph:
    raw_params = {n: dict(spec.params) for n, spec in gf.nodes.items()}
    ops = {n: spec.op for n, spec in gf.nodes.items()}
    for n in gf.nodes:
        if not _NAME.match(n):
            raise GraphError(f"{source}: node '{n}': names use letters, digits, '_' and '-'")
    parsed = [(text, *parse_override(text)) for text in overrides]
    for text, node, keys, value in parsed:
        if node not in raw_params:
            raise GraphError(f"{source}: --set {text!r}: unknown node '{node}'")
        if keys == ["op"]:  # swap the operator; the file's params belonged to the old one
            if not isinstance(value, str):
                raise GraphError(f"{source}: --set {text!r}: op must be an operator name")
            ops[node], raw_params[node] = value, {}
    for text, node, keys, value in parsed:
        if keys == ["op"]:
            continue
        target = raw_params[node]
        for k in keys[:-1]:
            target = target.setdefault(k, {})
            if not isinstance(target, dict):
                raise GraphError(f"{source}: --set {text!r}: '{k}' is not a mapping")
        target[keys[-1]] = value

    nodes: dict[str, Node] = {}
    for n, op_name in ops.items():
        try:
            op = registry.get(op_name)
        except GraphError as e:
            raise GraphError(f"{source}: node '{n}': {e}") from None
        try:
            params = op.Params.model_validate(raw_params[n])
        except ValidationError as e:
            raise GraphError(
                f"{source}: node '{n}' ({op_name}): {_pydantic_message(e, 'params')}"
            ) from None
        missing = missing_dependency(f"node '{n}' ({op_name})", *op.required_modules(params))
        if missing:
            raise GraphError(f"{source}: {missing}")
        nodes[n] = Node(n, op, params)

    edges: list[Edge] = []
    for item in gf.edges:
        if isinstance(item, str):
            hops = [h.strip() for h in item.split("->")]
            if len(hops) < 2 or not all(hops):
                raise GraphError(f"{source}: edge {item!r}: expected 'a -> b [-> c ...]'")
            for hop in hops[1:-1]:
                if "." in hop:
                    raise GraphError(
                        f"{source}: edge {item!r}: '{hop}': ports may be named only at the ends "
                        "of a chain; use the {from:, to:} form"
                    )
            pairs = [(hops[i], hops[i + 1], None, None) for i in range(len(hops) - 1)]
            where = f"{source}: edge {item!r}"
        else:
            pairs = [(item.src, item.dst, item.size, item.policy)]
            where = f"{source}: edge '{item.src} -> {item.dst}'"
        for a, b, size, policy in pairs:
            (src, sport), (dst, dport) = _split_endpoint(a), _split_endpoint(b)
            for nd in (src, dst):
                if nd not in nodes:
                    raise GraphError(f"{where}: unknown node '{nd}'")
            sport = _resolve_port(where, src, nodes[src].op_class, sport, "output")
            dport = _resolve_port(where, dst, nodes[dst].op_class, dport, "input")
            out_t = nodes[src].op_class.outputs[sport].type
            in_t = nodes[dst].op_class.inputs[dport].type
            if not (in_t is object or out_t is object or issubclass(out_t, in_t)):
                raise GraphError(
                    f"{where}: node '{src}' output '{sport}' carries {_type_name(out_t)} but node "
                    f"'{dst}' input '{dport}' takes {_type_name(in_t)}"
                )
            edges.append(
                Edge(src, sport, dst, dport, size or gf.queues.size, policy or gf.queues.policy)
            )

    for n, node in nodes.items():
        for port, spec in node.op_class.inputs.items():
            feeding = [e for e in edges if e.dst == n and e.dst_port == port]
            if spec.required and not feeding:
                raise GraphError(
                    f"{source}: node '{n}' ({node.op_class.name}): required input '{port}' is not connected"
                )
            if len(feeding) > 1 and not spec.multiple:
                froms = ", ".join(e.src for e in feeding)
                raise GraphError(
                    f"{source}: node '{n}' ({node.op_class.name}): input '{port}' takes one edge "
                    f"but {len(feeding)} feed it (from {froms})"
                )
    order = _topological_order(nodes, edges, source)
    return Graph(name=name, source=source, nodes=nodes, edges=edges, order=order)


def _topological_order(nodes: dict[str, Node], edges: list[Edge], source: str) -> list[str]:
    succ: dict[str, list[str]] = {n: [] for n in nodes}
    for e in edges:
        succ[e.src].append(e.dst)
    state: dict[str, int] = {}  # 1 = on the stack, 2 = done
    order: list[str] = []

    def visit(n: str, stack: list[str]) -> None:
        state[n] = 1
        for m in succ[n]:
            if state.get(m) == 1:
                cycle = stack[stack.index(m) :] + [n, m] if m in stack else [n, m]
                raise GraphError(f"{source}: cycle: {' -> '.join(cycle)}")
            if m not in state:
                visit(m, stack + [n])
        state[n] = 2
        order.append(n)

    for n in nodes:
        if n not in state:
            visit(n, [])
    return order[::-1]
