"""The command line imports what the command it runs needs: `audio2anim.cli.COMMANDS` names each
subcommand's module (checked against the modules), and ``animate`` to a CSV (the models already
exported to ONNX) imports no torch, transformers, scipy, PyAV, moderngl, Ray or other command's
module, with the default graph and with the streaming viseme graph. (Start-up time itself is
measured by bench/batch.py, not asserted here.)"""

from __future__ import annotations

import argparse
import importlib
import os
import subprocess
import sys
from pathlib import Path

import pytest

from audio2anim import cli

ROOT = Path(__file__).resolve().parents[1]


def test_the_command_table_names_every_subcommand_of_every_module():
    found = {}
    for module in cli.COMMAND_MODULES:
        sub = argparse.ArgumentParser().add_subparsers()
        importlib.import_module(module).add_commands(sub)
        found |= dict.fromkeys(sub.choices, module)
    assert found == cli.COMMANDS


@pytest.mark.parametrize(
    "argv, modules",
    [(["animate", "a.wav"], ["audio2anim.animate.cli"]),
     (["render", "x.csv", "-o", "x.mp4"], ["audio2anim.face.cli"]),
     (["--help"], cli.COMMAND_MODULES), ([], cli.COMMAND_MODULES),
     (["--version", "animate"], cli.COMMAND_MODULES), (["animat"], cli.COMMAND_MODULES)],
)  # fmt: skip
def test_a_command_line_loads_the_module_of_its_command(argv, modules):
    assert cli.modules_for(argv) == modules


def test_help_still_lists_every_command(capsys):
    with pytest.raises(SystemExit):
        cli.main(["--help"])
    out = capsys.readouterr().out
    assert all(name in out for name in cli.COMMANDS)


@pytest.mark.parametrize("graph", [None, "graphs/viseme_cnn.yaml"])
def test_animate_to_csv_imports_no_heavy_library(tmp_path, graph):
    """The default graph (the Whisper front end) and the streaming viseme graph need neither
    torch nor transformers at run time once their ONNX exports are cached."""
    from audio2anim import Animator

    # its warm-up run fills the ONNX export cache (the export itself needs torch)
    Animator(*([graph] if graph else []))
    heavy = ["torch", "transformers", "scipy", "av", "moderngl", "ray", "aiohttp", "matplotlib",
             "audio2anim.data.cli", "audio2anim.train.cli", "audio2anim.face.cli"]  # fmt: skip
    argv = ["animate", str(ROOT / "audio2anim/assets/speech.wav"), "-o", str(tmp_path / "x.csv"),
            "--quiet", *(["--graph", graph] if graph else [])]  # fmt: skip
    code = (
        "import sys; from audio2anim.cli import main; "
        f"rc = main({argv!r}); "
        f"print(rc, [m for m in {heavy!r} if m in sys.modules])"
    )
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    p = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                       timeout=300)  # fmt: skip
    assert p.stdout.strip() == "0 []", p.stderr
    assert "preparing" not in p.stderr  # the cache was warm: nothing exported
    assert (tmp_path / "x.csv").stat().st_size > 1000
