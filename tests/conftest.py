import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def python() -> str:
    """The interpreter running the tests (the project's venv), for CLI subprocesses."""
    return sys.executable
