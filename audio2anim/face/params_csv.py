"""Parameter tracks from CSV: Live Link Face takes, or audio2anim's own layout.

Live Link Face (the iPhone app) writes ``Timecode,BlendShapeCount,EyeBlinkLeft,...`` with
capitalized ARKit names and an SMPTE timecode ``HH:MM:SS:FF.mmm`` per row (frame rate from the
timecodes, 60 fps by default). audio2anim writes ``time`` (seconds) followed by ARKit names as
spelled in `audio2anim.arkit.ALL`. Unknown columns (head and eye rotation in Live Link takes)
are ignored.
"""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np

from .. import arkit

_BY_LOWER = {n.lower(): n for n in arkit.ALL}


def _timecode_seconds(tc: str, fps: float) -> float:
    hh, mm, ss, rest = tc.split(":")
    frames = float(rest)
    return int(hh) * 3600 + int(mm) * 60 + int(ss) + frames / fps


def read_params_csv(
    path: str | Path, fps: float | None = None
) -> tuple[np.ndarray, tuple[str, ...], float]:
    """Read a parameter CSV: returns (values [n, k] float32, ARKit names, frame rate).

    ``fps`` overrides the frame rate (needed for Live Link timecodes, which count frames; the
    default there is 60). Raises ValueError naming the file, row or column on bad input.
    """
    path = Path(path)
    with path.open(newline="") as f:
        rows = list(csv.reader(f))
    if not rows:
        raise ValueError(f"{path}: empty CSV")
    header = [h.strip() for h in rows[0]]
    body = [r for r in rows[1:] if any(c.strip() for c in r)]
    if not body:
        raise ValueError(f"{path}: no data rows after the header")
    first = header[0].lower()
    if first not in ("timecode", "time"):
        raise ValueError(
            f"{path}: first column is {header[0]!r}; expected 'Timecode' (Live Link Face) "
            "or 'time' (seconds)"
        )
    cols = [(i, _BY_LOWER[h.lower()]) for i, h in enumerate(header) if h.lower() in _BY_LOWER]
    if not cols:
        raise ValueError(f"{path}: no ARKit blendshape columns in the header")
    values = np.zeros((len(body), len(cols)), np.float32)
    times = np.zeros(len(body))
    live_link = first == "timecode"
    rate = fps or (60.0 if live_link else None)
    for r, row in enumerate(body, start=2):
        if len(row) < len(header):
            raise ValueError(f"{path}: row {r} has {len(row)} fields, header has {len(header)}")
        try:
            times[r - 2] = _timecode_seconds(row[0], rate) if live_link else float(row[0])
        except ValueError:
            raise ValueError(
                f"{path}: row {r}, column {header[0]!r}: bad time {row[0]!r}"
            ) from None
        for k, (i, name) in enumerate(cols):
            try:
                values[r - 2, k] = float(row[i])
            except ValueError:
                raise ValueError(
                    f"{path}: row {r}, column {name!r}: not a number: {row[i]!r}"
                ) from None
    if rate is None:
        dt = np.diff(times)
        if len(dt) == 0 or np.median(dt) <= 0:
            raise ValueError(f"{path}: cannot infer the frame rate from the 'time' column")
        rate = float(round(1.0 / np.median(dt), 3))
    return np.clip(values, 0.0, 1.0), tuple(n for _, n in cols), float(rate)
