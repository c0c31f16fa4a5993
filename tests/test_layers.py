"""The package's dependency layers hold: the import-linter contracts of pyproject.toml
([tool.importlinter]: layers, the runtime's and the adapters' forbidden imports, no cycles)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_import_contracts_are_kept():
    lint = Path(sys.executable).parent / "lint-imports"
    assert lint.is_file(), f"{lint}: missing; install the dev extra (pip install -e '.[dev]')"
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
    }
    r = subprocess.run(
        [str(lint), "--no-cache", "--config", str(ROOT / "pyproject.toml")],
        cwd=ROOT,
        env={**env, "COLUMNS": "200", "NO_COLOR": "1"},
        capture_output=True,
        text=True,
        timeout=120,
    )
    out = r.stdout + r.stderr
    broken = [line.removesuffix(" BROKEN") for line in out.splitlines() if line.endswith(" BROKEN")]
    assert r.returncode == 0, (
        f"import contracts broken: {broken or '(lint-imports failed)'}\n"
        + out[out.find("Broken contracts") if "Broken contracts" in out else 0 :]
    )
