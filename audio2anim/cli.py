"""The ``audio2anim`` command line: one subcommand family per area, each in its own module.

Each module in ``COMMAND_MODULES`` provides ``add_commands(subparsers)``; its subparsers set
``func(args) -> int``. Modules import their heavy dependencies inside ``func`` so that
``audio2anim --help`` stays fast. ``COMMANDS`` names the module of each subcommand, so a
command line that names one (``audio2anim animate …``) imports that module only: importing
every command module would import the data, training and rendering libraries for any command
(tests/test_cli_startup.py checks the table against the modules).
"""

from __future__ import annotations

import argparse
import importlib
import shlex
import sys

COMMAND_MODULES = [
    "audio2anim.graph.cli",
    "audio2anim.sources.cli",
    "audio2anim.data.cli",
    "audio2anim.train.cli",
    "audio2anim.face.cli",
    "audio2anim.animate.cli",
    "audio2anim.animate.transcribe",
    "audio2anim.serve.cli",
]

#: subcommand → the module of ``COMMAND_MODULES`` that adds it
COMMANDS = {
    "run": "audio2anim.graph.cli",
    "ops": "audio2anim.graph.cli",
    "devices": "audio2anim.sources.cli",
    "data": "audio2anim.data.cli",
    "train": "audio2anim.train.cli",
    "eval": "audio2anim.train.cli",
    "combine-frontends": "audio2anim.train.cli",
    "export-onnx": "audio2anim.train.cli",
    "render": "audio2anim.face.cli",
    "face": "audio2anim.face.cli",
    "animate": "audio2anim.animate.cli",
    "transcribe": "audio2anim.animate.transcribe",
    "serve": "audio2anim.serve.cli",
    "stream": "audio2anim.serve.cli",
}


def version() -> str:
    """The installed distribution's version (the source tree's when it is not installed)."""
    from importlib.metadata import PackageNotFoundError
    from importlib.metadata import version as dist_version

    try:
        return dist_version("audio2anim")
    except PackageNotFoundError:
        return "unknown (not installed)"


def build_parser(modules: list[str] = COMMAND_MODULES) -> argparse.ArgumentParser:
    """The parser with the subcommands of the dotted module names ``modules``."""
    parser = argparse.ArgumentParser(
        prog="audio2anim", description="Real-time speech to face animation."
    )
    parser.add_argument("--version", action="version", version=f"audio2anim {version()}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name in modules:
        importlib.import_module(name).add_commands(sub)
    return parser


def modules_for(argv: list[str]) -> list[str]:
    """The command modules a command line needs: the one of its subcommand, or all of them
    (no subcommand, ``--help``, an unknown name: argparse lists every command)."""
    first = next((a for a in argv if not a.startswith("-")), None)
    if first in COMMANDS and argv.index(first) == 0:
        return [COMMANDS[first]]
    return COMMAND_MODULES


def main(argv: list[str] | None = None) -> int:
    """Parse ``argv`` (default: the process's arguments) and run the chosen command → exit code.

    ``args.command_line`` is the command as ``audio2anim ...``, for commands that record it.
    """
    args = build_parser(modules_for(sys.argv[1:] if argv is None else argv)).parse_args(argv)
    args.command_line = "audio2anim " + shlex.join(sys.argv[1:] if argv is None else argv)
    try:
        if getattr(args, "stop_signals", False):
            return _with_stop_signals(args)
        return int(args.func(args) or 0)
    except ModuleNotFoundError as e:  # an optional dependency: name the extra that installs it
        from audio2anim.resources import missing_module_message

        message = missing_module_message(f"audio2anim {args.command}", e)
        if message is None:
            raise
        print(f"error: {message}", file=sys.stderr)
        return 2


def _with_stop_signals(args: argparse.Namespace) -> int:
    """A command that stops cleanly on SIGINT/SIGTERM: ``args.stops`` tells it of a signal."""
    from audio2anim.graph.stopping import Aborted, StopSignals

    with StopSignals() as stops:
        args.stops = stops
        try:
            rc = int(args.func(args) or 0)
        except Aborted:
            print(f"{stops.first}: aborted", file=sys.stderr)
            rc = 1
    return stops.exit_code(rc)


if __name__ == "__main__":
    sys.exit(main())
