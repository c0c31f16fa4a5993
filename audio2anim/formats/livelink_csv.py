"""The Live Link Face CSV format: read a take, resample it onto a frame grid, write one.

Epic's Live Link Face app records a take as a CSV with the header::

    Timecode,BlendShapeCount,EyeBlinkLeft,EyeLookDownLeft,…,TongueOut,
    HeadYaw,HeadPitch,HeadRoll,LeftEyeYaw,LeftEyePitch,LeftEyeRoll,RightEyeYaw,RightEyePitch,RightEyeRoll

— the 52 ARKit blendshapes in `audio2anim.arkit.ALL` order, spelled with a capital first
letter, then head and eye rotations. ``Timecode`` is ``HH:MM:SS:FF.sss``: frame ``FF`` at the
take's frame rate plus a sub-frame fraction ``.sss``. Rows can be missing (dropped frames), so
values are interpolated onto a uniform grid by their timecodes, never by row number.

`read_csv` returns times (seconds from the first row), column names (ARKit spelling, first
letter lower-cased; rotation columns keep their names) and values; `resample_take` puts them on
a uniform frame grid; `write_csv` writes the app's layout.
"""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np

from audio2anim import arkit

ROTATIONS: tuple[str, ...] = (
    "HeadYaw", "HeadPitch", "HeadRoll", "LeftEyeYaw", "LeftEyePitch", "LeftEyeRoll",
    "RightEyeYaw", "RightEyePitch", "RightEyeRoll",
)  # fmt: skip
FPS_CANDIDATES = (24, 25, 30, 48, 50, 60, 120)


def csv_name(arkit_name: str) -> str:
    """``eyeBlinkLeft`` → ``EyeBlinkLeft`` (the app's column spelling)."""
    return arkit_name[0].upper() + arkit_name[1:]


def parse_timecode(text: str, fps: float, where: str = "") -> float:
    """``HH:MM:SS:FF.sss`` → seconds (frame plus sub-frame fraction at ``fps``)."""
    parts = text.strip().split(":")
    try:
        if len(parts) != 4:
            raise ValueError
        h, m, s = int(parts[0]), int(parts[1]), int(parts[2])
        frames = float(parts[3])
    except ValueError:
        raise ValueError(f"{where}: bad timecode {text!r} (expected HH:MM:SS:FF.sss)") from None
    return h * 3600 + m * 60 + s + frames / fps


def format_timecode(seconds: float, fps: float) -> str:
    """Seconds (time of day) → ``HH:MM:SS:FF.sss``; counted in milli-frames so no float drift."""
    rate = int(round(fps))
    total_frames, sub = divmod(int(round(seconds * rate * 1000)), 1000)
    whole, frames = divmod(total_frames, rate)
    h, rem = divmod(whole, 3600)
    m, s = divmod(rem, 60)
    return f"{h % 24:02d}:{m:02d}:{s:02d}:{frames:02d}.{sub:03d}"


def _infer_fps(timecodes: list[str]) -> float:
    """The smallest usual frame rate above every frame number seen (needs ≥ 1 s of take)."""
    max_frame = max(int(float(tc.strip().split(":")[3])) for tc in timecodes)
    for fps in FPS_CANDIDATES:
        if max_frame < fps:
            return float(fps)
    raise ValueError(f"timecode frame number {max_frame} is above {FPS_CANDIDATES[-1]} fps")


def read_csv(path: str | Path, fps: float | None = None):
    """A Live Link Face CSV → (times [T] s from the first row, names, values [T, n] float32, fps).

    ``fps`` is the take's frame rate; when None it is inferred from the frame numbers.
    Errors name the file, line and column.
    """
    path = Path(path)
    with open(path, newline="", encoding="utf-8-sig") as f:
        rows = list(csv.reader(f))
    if not rows:
        raise ValueError(f"{path}: empty file")
    header = [h.strip() for h in rows[0]]
    if not header or header[0] != "Timecode":
        raise ValueError(f"{path}:1: first column must be 'Timecode', got {header[:1]}")
    expected = [csv_name(n) for n in arkit.ALL]
    missing = [n for n in expected if n not in header]
    if missing:
        raise ValueError(
            f"{path}:1: missing blendshape columns {missing[:5]}{'…' if len(missing) > 5 else ''}"
        )
    value_cols = [c for c in header[1:] if c != "BlendShapeCount"]
    idx = [header.index(c) for c in value_cols]
    body = [r for r in rows[1:] if any(x.strip() for x in r)]
    if not body:
        raise ValueError(f"{path}: no data rows")
    if fps is None:
        fps = _infer_fps([r[0] for r in body])
    times, values = [], []
    for lineno, row in enumerate(body, 2):
        if len(row) < len(header):
            raise ValueError(f"{path}:{lineno}: {len(row)} columns, header has {len(header)}")
        times.append(parse_timecode(row[0], fps, f"{path}:{lineno}"))
        try:
            values.append([float(row[j]) for j in idx])
        except ValueError:
            bad = next(header[j] for j in idx if not _is_float(row[j]))
            raise ValueError(f"{path}:{lineno}: column {bad} is not a number") from None
    t = np.array(times)
    if np.any(t < t[0] - 12 * 3600):  # the take crossed midnight
        t = np.where(t < t[0], t + 24 * 3600, t)
    order = np.argsort(t, kind="stable")
    names = [c[0].lower() + c[1:] if c not in ROTATIONS else c for c in value_cols]
    return t[order] - t[order][0], names, np.array(values, dtype=np.float32)[order], float(fps)


def _is_float(text: str) -> bool:
    try:
        float(text)
        return True
    except ValueError:
        return False


def resample_take(
    times: np.ndarray, values: np.ndarray, fps: float, frame_rate: float, n_frames: int
) -> np.ndarray:
    """Take rows at ``times`` → ``n_frames`` uniform frames at ``frame_rate``.

    A take row (timecode = the start of its frame) stands for its frame's centre, and our frame
    ``i`` for time ``(i + 0.5) / frame_rate``, so at equal rates values pass through unchanged.
    """
    src = times + 0.5 / fps
    centres = (np.arange(n_frames) + 0.5) / frame_rate
    out = np.stack([np.interp(centres, src, values[:, j]) for j in range(values.shape[1])], axis=1)
    return out.astype(np.float32)


def write_csv(path: str | Path, names, values: np.ndarray, fps: float, start: float = 0.0) -> None:
    """Write [T, n] values (ARKit names, optional rotation names) in the app's CSV layout.

    Columns the input lacks are written as 0. ``start`` is the first row's time of day in s.
    """
    col = {n: j for j, n in enumerate(names)}
    header = ["Timecode", "BlendShapeCount", *[csv_name(n) for n in arkit.ALL], *ROTATIONS]
    keys = [*arkit.ALL, *ROTATIONS]
    with open(path, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(header)
        for i, row in enumerate(np.asarray(values, dtype=np.float64)):
            cells = [f"{row[col[k]]:.6f}" if k in col else "0" for k in keys]
            w.writerow([format_timecode(start + i / fps, fps), len(arkit.ALL), *cells])
