"""Parameter tracks from CSV: Live Link Face takes, or audio2anim's own layout.

Live Link Face (the iPhone app) writes ``Timecode,BlendShapeCount,EyeBlinkLeft,...`` with
capitalized ARKit names; those takes are read by `audio2anim.formats.livelink_csv` (timecodes, dropped
rows, frame-rate inference) and resampled onto a uniform frame grid. audio2anim's ``simple``
layout (``sink.csv``) is ``time`` (seconds) followed by ARKit names as spelled in
`audio2anim.arkit.ALL`. Other columns (head/eye rotations, viseme probabilities) are ignored.
Both are returned on a uniform frame grid starting at time 0.
"""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np

from .. import arkit


def read_params_csv(
    path: str | Path, fps: float | None = None
) -> tuple[np.ndarray, tuple[str, ...], float]:
    """Read a parameter CSV: returns (values [n, k] float32 in [0, 1], ARKit names, frame rate).

    ``fps``: the frame rate (Live Link: of the take's timecodes, inferred when None; ours:
    inferred from the ``time`` column when None). Raises ValueError naming the file, row or
    column on bad input.
    """
    path = Path(path)
    with path.open(newline="", encoding="utf-8-sig") as f:
        header = next(csv.reader(f), None)
    if not header:
        raise ValueError(f"{path}: empty CSV")
    first = header[0].strip()
    if first == "Timecode":
        return _read_live_link(path, fps)
    if first != "time":
        raise ValueError(
            f"{path}: first column is {first!r}; expected 'Timecode' (Live Link Face) "
            "or 'time' (seconds)"
        )
    return _read_simple(path, fps)


def _read_live_link(path: Path, fps: float | None):
    from ..formats.livelink_csv import read_csv, resample_take

    times, names, values, take_fps = read_csv(path, fps)
    keep = [i for i, n in enumerate(names) if n in arkit.ALL]
    n_frames = int(round(times[-1] * take_fps)) + 1
    uniform = resample_take(times, values[:, keep], take_fps, take_fps, n_frames)
    return np.clip(uniform, 0, 1), tuple(names[i] for i in keep), float(take_fps)


def _read_simple(path: Path, fps: float | None):
    with path.open(newline="", encoding="utf-8-sig") as f:
        rows = list(csv.reader(f))
    header = [h.strip() for h in rows[0]]
    cols = [(i, h) for i, h in enumerate(header) if h in arkit.ALL]
    if not cols:
        raise ValueError(f"{path}: no ARKit blendshape columns in the header")
    body = [r for r in rows[1:] if any(c.strip() for c in r)]
    if not body:
        raise ValueError(f"{path}: no data rows after the header")
    values = np.zeros((len(body), len(cols)), np.float32)
    times = np.zeros(len(body))
    for r, row in enumerate(body):
        line = r + 2
        if len(row) < len(header):
            raise ValueError(f"{path}: row {line} has {len(row)} fields, header has {len(header)}")
        try:
            times[r] = float(row[0])
        except ValueError:
            raise ValueError(f"{path}: row {line}, column 'time': bad time {row[0]!r}") from None
        for k, (i, name) in enumerate(cols):
            try:
                values[r, k] = float(row[i])
            except ValueError:
                raise ValueError(
                    f"{path}: row {line}, column {name!r}: not a number: {row[i]!r}"
                ) from None
    if fps is None:
        dt = np.diff(times)
        if len(dt) == 0 or np.median(dt) <= 0:
            raise ValueError(f"{path}: cannot infer the frame rate from the 'time' column")
        fps = float(round(1.0 / np.median(dt), 3))
    # rows may be missing (a live run that dropped frames): interpolate by time onto frames
    # i / fps from media time 0, so the track lines up with audio that starts at 0
    grid = np.arange(int(round(times.max() * fps)) + 1) / fps
    order = np.argsort(times, kind="stable")
    uniform = np.stack(
        [np.interp(grid, times[order], values[order, k]) for k in range(len(cols))], axis=1
    )
    return np.clip(uniform, 0.0, 1.0).astype(np.float32), tuple(n for _, n in cols), float(fps)
