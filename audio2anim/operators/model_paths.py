"""Where operators find model directories: ``checkpoints/NAME`` works from any directory.

A relative path is looked up in the current directory first, then in the project root (the
directory holding ``checkpoints/`` next to the ``audio2anim`` package), so the shipped graphs'
``checkpoints/...`` defaults work wherever ``audio2anim`` is run from.
"""

from __future__ import annotations

from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parents[2]


def find_model_dir(path: str | Path) -> Path | None:
    """The directory ``path`` names (see the module docstring), or None if there is none."""
    p = Path(path).expanduser()
    candidates = [p] if p.is_absolute() else [Path.cwd() / p, PROJECT_ROOT / p]
    for c in candidates:
        if (c / "config.json").is_file():
            return c
    return None


def require_model_dir(path: str | Path, what: str) -> Path:
    """Like `find_model_dir`, raising a one-line error naming ``what`` and the path."""
    found = find_model_dir(path)
    if found is None:
        raise FileNotFoundError(
            f"{what}: no checkpoint directory {str(path)!r} (a directory with config.json; "
            f"looked in {Path.cwd()} and {PROJECT_ROOT})"
        )
    return found
