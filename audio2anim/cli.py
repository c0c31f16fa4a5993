"""The ``audio2anim`` command line: one subcommand family per area, each in its own module.

Each module in ``COMMAND_MODULES`` provides ``add_commands(subparsers)``; its subparsers set
``func(args) -> int``. Modules import their heavy dependencies inside ``func`` so that
``audio2anim --help`` stays fast.
"""

from __future__ import annotations

import argparse
import importlib
import sys

COMMAND_MODULES = [
    "audio2anim.graph.cli",
    "audio2anim.sources.cli",
    "audio2anim.data.cli",
    "audio2anim.train.cli",
]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="audio2anim", description="Real-time speech to face animation."
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name in COMMAND_MODULES:
        importlib.import_module(name).add_commands(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return int(args.func(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
