"""The output formats of ``audio2anim animate``: chosen by file extension or by name.

| name           | extension                 | what is written (reader)                               |
|----------------|---------------------------|--------------------------------------------------------|
| `csv`          | `.csv`                    | ``time`` + the 52 ARKit names (`read_arkit_csv`)       |
| `livelink`     | `.livelink.csv`           | Live Link Face CSV (`formats.livelink_csv.read_csv`)   |
| `json`         | `.json`                   | animation JSON (`formats.animation_json`)              |
| `visemes`      | `.visemes.csv`            | Oculus viseme CSV (`formats.animation_json`)           |
| `tsv` `xml` `dat` | `.tsv` `.xml` `.dat`   | Rhubarb mouth cues (`formats.rhubarb`)                 |
| `rhubarb-json` | `.rhubarb.json`           | Rhubarb mouth cues as Rhubarb's JSON                   |
| `glb` `gltf` `vrm` | `.glb` `.gltf` `.vrm` | the head (or ``--model``) with a morph-target animation |

A plain ``.json`` is the animation JSON; Rhubarb's JSON is asked for with ``--format
rhubarb-json`` or the double extension ``.rhubarb.json``. Every file is written under a
temporary name beside it and renamed when complete.
"""

from __future__ import annotations

import csv
import os
from collections.abc import Sequence
from importlib.resources import files
from pathlib import Path

import numpy as np

from audio2anim import arkit
from audio2anim.formats.animation import Animation, write_atomic

#: format name → the extension a batch gives its files
EXTENSION: dict[str, str] = {
    "csv": ".csv", "livelink": ".livelink.csv", "json": ".json", "visemes": ".visemes.csv",
    "tsv": ".tsv", "xml": ".xml", "dat": ".dat", "rhubarb-json": ".rhubarb.json",
    "glb": ".glb", "gltf": ".gltf", "vrm": ".vrm",
}  # fmt: skip
FORMATS: tuple[str, ...] = tuple(EXTENSION)
NEEDS_VISEMES = {"visemes", "tsv", "xml", "dat", "rhubarb-json"}
SHIPPED_HEAD = Path(str(files("audio2anim.face") / "assets" / "face.glb"))


class OutputError(ValueError):
    """An output that cannot be written as asked; one line naming the file."""


def format_of(path: str | os.PathLike) -> str:
    """The format a file name asks for (the longest matching extension wins)."""
    name = Path(path).name.lower()
    for fmt, ext in sorted(EXTENSION.items(), key=lambda kv: -len(kv[1])):
        if name.endswith(ext):
            return fmt
    suffix = Path(path).suffix or "(none)"
    raise OutputError(
        f"{path}: unknown output extension {suffix} (known: "
        f"{', '.join(sorted(set(EXTENSION.values())))}; or name one with --format)"
    )


def check_format(name: str) -> str:
    """``name`` if it is a known format, else an `OutputError`."""
    if name not in EXTENSION:
        raise OutputError(f"--format {name}: unknown format (one of {', '.join(FORMATS)})")
    return name


def format_arkit_csv(animation: Animation) -> str:
    """``time`` (seconds, 6 decimals) then the 52 ARKit names; missing parameters are 0."""
    return "".join(arkit_csv_pieces(animation))


def arkit_csv_pieces(animation: Animation, rows: int = 2000):
    """`format_arkit_csv`'s text in pieces of ``rows`` rows, for a file written as it is made
    (an hour at 50 fps is 180,000 rows: no 90 MB string)."""
    cols = [animation.names.index(n) if n in animation.names else -1 for n in arkit.ALL]
    yield ",".join(["time", *arkit.ALL]) + "\n"
    row_format = ",".join(["%.6f"] * (len(cols) + 1)) + "\n"
    zero = np.zeros((animation.frames, 1), np.float64)
    times = animation.times
    for k in range(0, animation.frames, rows):
        block = np.concatenate(
            [times[k : k + rows, None]]
            + [animation.values[k : k + rows, c, None] if c >= 0 else zero[k : k + rows]
               for c in cols],
            axis=1,
        ).astype(np.float64)  # fmt: skip
        yield (row_format * len(block)) % tuple(block.ravel().tolist())  # one % for the block


def read_arkit_csv(path: str | os.PathLike) -> Animation:
    """The `Animation` of an ARKit CSV written by `format_arkit_csv`."""
    with open(path, newline="", encoding="utf-8") as f:
        rows = list(csv.reader(f))
    if not rows or rows[0][:1] != ["time"]:
        raise ValueError(f"{path}: not an ARKit CSV (first column must be 'time')")
    data = np.array(rows[1:], dtype=np.float64).reshape(-1, len(rows[0]))
    fps = (len(data) - 1) / (data[-1, 0] - data[0, 0]) if len(data) > 1 else 50.0
    return Animation(fps=round(fps, 6), names=rows[0][1:], values=data[:, 1:], start=data[0, 0])


def write_output(
    path: str | os.PathLike,
    animation: Animation,
    fmt: str | None = None,
    model: str | os.PathLike | None = None,
) -> None:
    """Write ``animation`` to ``path`` in ``fmt`` (default: by extension), atomically."""
    path = Path(path)
    fmt = check_format(fmt) if fmt else format_of(path)
    if fmt in NEEDS_VISEMES and animation.visemes is None:
        raise OutputError(
            f"{path}: format {fmt} needs viseme posteriors; this graph has no viseme stream"
        )
    try:
        if fmt == "csv":
            write_atomic(path, arkit_csv_pieces(animation))
        elif fmt == "livelink":
            from audio2anim.formats import livelink_csv

            tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
            try:
                livelink_csv.write_csv(
                    tmp, animation.names, animation.values, animation.fps, animation.start
                )
                os.replace(tmp, path)
            finally:
                tmp.unlink(missing_ok=True)
        elif fmt == "json":
            from audio2anim.formats.animation_json import write_animation_json

            write_animation_json(path, animation)
        elif fmt == "visemes":
            from audio2anim.formats.animation_json import write_viseme_csv

            write_viseme_csv(path, animation)
        elif fmt in ("tsv", "xml", "dat", "rhubarb-json"):
            from audio2anim.formats.rhubarb import write_rhubarb

            write_rhubarb(path, animation, "json" if fmt == "rhubarb-json" else fmt)
        else:  # glb, gltf, vrm
            from audio2anim.formats.gltf_animation import add_morph_animation

            add_morph_animation(model or SHIPPED_HEAD, animation, path)
    except OutputError:
        raise
    except (ValueError, OSError) as e:
        msg = getattr(e, "strerror", None) or str(e)
        raise OutputError(msg if str(path) in msg else f"{path}: {msg}") from None


def write_outputs(
    animation: Animation,
    outputs: Sequence[str | os.PathLike | tuple[str | os.PathLike, str | None]],
    model: str | os.PathLike | None = None,
) -> None:
    """Write every output: a path (format by extension) or ``(path, format)``."""
    for out in outputs:
        path, fmt = out if isinstance(out, tuple) else (out, None)
        write_output(path, animation, fmt, model)
