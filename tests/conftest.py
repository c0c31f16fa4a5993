import os
import shutil
import sys
import tempfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def pytest_configure(config):
    # the ONNX export cache of the whole run (subprocesses too) lives in a temporary folder:
    # the tests never read or fill the user's ~/.cache/audio2anim
    if "AUDIO2ANIM_CACHE" not in os.environ:
        cache = tempfile.mkdtemp(prefix="a2a-test-cache-")
        os.environ["AUDIO2ANIM_CACHE"] = cache
        config.add_cleanup(lambda: shutil.rmtree(cache, ignore_errors=True))


@pytest.fixture
def python() -> str:
    """The interpreter running the tests (the project's venv), for CLI subprocesses."""
    return sys.executable


@pytest.fixture(scope="session")
def tiny_whisper(tmp_path_factory):
    """A random two-layer Whisper (width 16) saved as a Hugging Face folder."""
    from tiny_models import save_tiny_whisper

    return save_tiny_whisper(tmp_path_factory.mktemp("whisper-tiny-random"), 16)
