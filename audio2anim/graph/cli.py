"""``audio2anim run`` (run a graph file) and ``audio2anim ops`` (list operators)."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from pathlib import Path
from typing import Literal, get_args, get_origin

from .stopping import EXIT_BY_SIGNAL, StopSignals

__all__ = ["EXIT_BY_SIGNAL", "add_commands"]


def add_commands(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("run", help="run a graph file", description="Run a YAML graph file.")
    add_run_arguments(p)
    p.set_defaults(func=cmd_run)
    p = sub.add_parser("ops", help="list operators with their ports and parameters")
    p.add_argument("name", nargs="?", help="show only this operator")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(func=cmd_ops)


def add_run_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("graph", type=Path, help="graph file (graphs/NAME.yaml)")
    p.add_argument(
        "--set", dest="overrides", action="append", default=[], metavar="NODE.PARAM=VALUE",
        help="override a node parameter (repeatable; VALUE is parsed as YAML)",
    )  # fmt: skip
    p.add_argument("--metrics-port", type=int, metavar="N", help="serve /metrics on this port")
    p.add_argument(
        "--metrics-host",
        default="127.0.0.1",
        help="address for --metrics-port (default loopback; any other address prints a warning)",
    )
    p.add_argument("--report", type=Path, metavar="FILE.json", help="write the run summary here")
    p.add_argument("--quiet", action="store_true", help="do not print the summary table")
    add_checkpoints_argument(p)


def add_checkpoints_argument(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--checkpoints", type=Path, metavar="DIR",
        help="look for the graph's checkpoints in DIR first (after the current directory; "
        "like $AUDIO2ANIM_CHECKPOINTS), then in the shipped ones",
    )  # fmt: skip


def apply_checkpoints_argument(args: argparse.Namespace) -> None:
    """``--checkpoints DIR``: search DIR (see `audio2anim.resources`)."""
    if getattr(args, "checkpoints", None) is not None:
        from audio2anim.resources import set_checkpoint_folder

        set_checkpoint_folder(args.checkpoints)


def cmd_run(args: argparse.Namespace) -> int:
    from .errors import GraphError
    from .spec import load_graph

    apply_checkpoints_argument(args)
    try:
        graph = load_graph(args.graph, args.overrides)
    except GraphError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    with StopSignals() as stops:
        rc = asyncio.run(_run(graph, args))
    return stops.exit_code(rc)


async def _run(graph, args: argparse.Namespace) -> int:
    from .errors import GraphError, OperatorError
    from .metrics import open_metrics_server
    from .runner import Runner

    runner = Runner(graph)
    server = None
    if args.metrics_port is not None:
        server = open_metrics_server(args.metrics_host, args.metrics_port, runner.registry)
        if server is None:
            return 2

    rc = 0
    report = None
    try:
        report = await runner.run()
    except OperatorError as e:
        report, rc = e.report, 1
        print(f"error: {e}", file=sys.stderr)
    except GraphError as e:  # formats that do not meet, found before any packet flowed
        print(f"error: {e}", file=sys.stderr)
        rc = 2
    except asyncio.CancelledError:  # a second signal: aborted, operators closed
        print("aborted", file=sys.stderr)
    finally:
        if server is not None:
            server.shutdown()
            server.server_close()
    if report is not None:
        if not args.quiet:
            print(report.table(), file=sys.stderr)
        if args.report:
            args.report.parent.mkdir(parents=True, exist_ok=True)
            args.report.write_text(json.dumps(report.as_dict(), indent=2) + "\n")
    return rc


def describe_operator(op) -> dict:
    """Ports and parameters of an operator class, from its declarations."""
    params = {}
    for name, f in op.Params.model_fields.items():
        params[name] = {
            "type": _type_label(f.annotation),
            "default": None
            if f.is_required()
            else _jsonable(f.get_default(call_default_factory=True)),
            "required": f.is_required(),
            "description": f.description or "",
        }

    def ports(d):
        return {
            k: {"type": "any" if p.type is object else p.type.__name__, "required": p.required,
                "multiple": p.multiple, "doc": p.doc}
            for k, p in d.items()
        }  # fmt: skip

    doc = (op.__doc__ or "").strip().splitlines()
    return {
        "name": op.name, "summary": doc[0] if doc else "", "inputs": ports(op.inputs),
        "outputs": ports(op.outputs), "params": params, "executor": op.executor,
    }  # fmt: skip


def _type_label(t) -> str:
    if get_origin(t) is Literal:
        return " | ".join(repr(a) for a in get_args(t))
    return getattr(t, "__name__", str(t)).replace("typing.", "")


def _jsonable(v):
    if isinstance(v, (str, int, float, bool)) or v is None:
        return v
    if isinstance(v, (list, tuple)):
        return [_jsonable(x) for x in v]
    if isinstance(v, dict):
        return {str(k): _jsonable(x) for k, x in v.items()}
    return str(v)


def cmd_ops(args: argparse.Namespace) -> int:
    from . import registry
    from .errors import GraphError

    try:
        ops = (
            registry.all_operators() if args.name is None else {args.name: registry.get(args.name)}
        )
    except GraphError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    infos = [describe_operator(op) for op in ops.values()]
    if args.json:
        print(json.dumps(infos, indent=2))
        return 0
    for info in infos:
        print(f"{info['name']}  —  {info['summary']}")
        for kind in ("inputs", "outputs"):
            for port, p in info[kind].items():
                arrow = "←" if kind == "inputs" else "→"
                extra = "" if p["required"] else " (optional)"
                extra += " (fan-in)" if p["multiple"] else ""
                print(f"    {arrow} {port}: {p['type']}{extra}  {p['doc']}")
        for pname, p in info["params"].items():
            default = "required" if p["required"] else f"default {p['default']!r}"
            print(f"    {pname}: {p['type']}, {default}  {p['description']}")
        print()
    return 0
