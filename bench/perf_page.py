"""Write a bench script's table into its section of ``docs/performance.md``.

Each figure on the performance page lives between two markers that name its section::

    <!-- bench:render -->
    `python bench/render.py --frames 200` · 2-core CPU VM · 2026-12-07

    | size | ... |
    <!-- /bench:render -->

A bench script given ``--write-docs`` replaces everything between its markers with the table it
just printed, preceded by one line: the command, the machine and the date. The rest of the page
(prose, other sections) is left as it is, so the page has one source for each number: the bench
that measured it. The README carries one section, the CPU latency table, and the
performance page links to it.

    from perf_page import add_arguments, write_from_args
    add_arguments(ap)                       # --write-docs, --machine
    ...
    write_from_args(args, "render", table)  # no-op without --write-docs
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import os
import re
import shlex
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PAGE = ROOT / "docs" / "performance.md"
# the pages a section may live on (the README carries the CPU latency table)
PAGES = (PAGE, ROOT / "README.md")


def default_machine() -> str:
    """A short description of this machine: ``$AUDIO2ANIM_BENCH_MACHINE``, else its core count."""
    return os.environ.get("AUDIO2ANIM_BENCH_MACHINE") or f"{os.cpu_count()}-core CPU"


def command_line(argv: list[str] | None = None) -> str:
    """The bench's own command line as a user would type it, without ``--write-docs``."""
    argv = list(sys.argv if argv is None else argv)
    script = Path(argv[0])
    with contextlib.suppress(ValueError):
        script = script.resolve().relative_to(ROOT)
    args, skip = [], False
    for a in argv[1:]:
        if skip:
            skip = False
            continue
        if a == "--write-docs":
            continue
        if a == "--machine":
            skip = True
            continue
        if a.startswith("--machine="):
            continue
        args.append(a)
    return " ".join(["python", str(script), *map(shlex.quote, args)])


def write_section(
    name: str,
    table: str,
    command: str,
    machine: str | None = None,
    date: str | None = None,
    pages: tuple[Path, ...] = PAGES,
) -> list[Path]:
    """Replace the body of section ``name`` with ``table`` and its provenance line, on every page
    of ``pages`` that has the section; returns those pages.

    Raises ``KeyError`` if no page has a ``<!-- bench:NAME -->`` … ``<!-- /bench:NAME -->``
    pair, so a renamed section fails loudly instead of writing nothing.
    """
    machine = machine or default_machine()
    date = date or datetime.date.today().isoformat()
    start, end = f"<!-- bench:{name} -->", f"<!-- /bench:{name} -->"
    pattern = re.compile(re.escape(start) + r".*?" + re.escape(end), re.DOTALL)
    body = f"{start}\n`{command}` · {machine} · {date}\n\n{table.strip()}\n{end}"
    written = []
    for page in pages:
        text = page.read_text(encoding="utf-8") if page.is_file() else ""
        if pattern.search(text):
            page.write_text(pattern.sub(lambda _m: body, text, count=1), encoding="utf-8")
            written.append(page)
    if not written:
        raise KeyError(f"no section {start} … {end} in {', '.join(map(str, pages))}")
    return written


def add_arguments(ap: argparse.ArgumentParser) -> None:
    """``--write-docs`` and ``--machine`` for a bench script's parser."""
    ap.add_argument(
        "--write-docs",
        action="store_true",
        help=f"also write the table into its section of {PAGE.relative_to(ROOT)}",
    )
    ap.add_argument("--machine", default=None,
                    help="machine description on the page (default: $AUDIO2ANIM_BENCH_MACHINE "
                         "or the core count)")  # fmt: skip


def write_from_args(args: argparse.Namespace, name: str, table: str) -> None:
    """Write ``table`` into section ``name`` when the bench ran with ``--write-docs``."""
    if not getattr(args, "write_docs", False):
        return
    for page in write_section(name, table, command_line(), machine=args.machine):
        print(f"written to {page} (section {name})", file=sys.stderr)
