#!/usr/bin/env python3
"""Run a graph file: ``python run_graph.py graphs/NAME.yaml [--set node.param=value ...]``.

The same as ``audio2anim run``; see ``--help``.
"""

import sys

from audio2anim.cli import main

if __name__ == "__main__":
    sys.exit(main(["run", *sys.argv[1:]]))
