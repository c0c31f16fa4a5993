"""``sink.csv``: write animation parameters to a CSV file, one row per frame.

Where it sits: at the end of a graph, after a predictor or a smoothing operator.

Ports: ``in`` (Params); ``visemes`` (Visemes, optional, see ``viseme_columns``). No outputs.

Layouts (param ``layout``):

- ``livelink`` (default): the Live Link Face take layout, readable by Unreal's Live Link Face
  importer, Blender add-ons and other mocap tools::

      Timecode,BlendShapeCount,EyeBlinkLeft,...,TongueOut,HeadYaw,HeadPitch,HeadRoll,LeftEyeYaw,...
      00:00:00:01.000,61,0.000000,...

  The 52 ARKit names (first letter capitalised) in `audio2anim.arkit.ALL` order, then the nine
  head/eye rotations. ``Timecode`` is ``HH:MM:SS:FF.mmm``: frame ``FF`` within the second at
  ``timecode_fps`` plus the sub-frame fraction in thousandths, counted from the stream's media
  time (plus ``start_seconds``). ``BlendShapeCount`` is always 61.
- ``simple``: ``time`` (seconds, media time of the frame) then the 52 ARKit names exactly as
  ARKit spells them (``jawOpen``, …). This is what ``audio2anim animate`` writes.

With ``viseme_columns: true`` and a Visemes stream on the ``visemes`` port, 15 more columns
follow, named like Ready Player Me / OVRLipSync morph targets (``viseme_sil`` … ``viseme_U``),
holding the probabilities of the viseme frame that covers each row's time. A row is then written
once the viseme stream has reached its time (at the latest at the end of the stream).

Parameters the stream does not carry are written as 0; a parameter name that is not an ARKit
blendshape (or a Live Link rotation) is an error. Rows are written and flushed per packet, so a
run that fails midway leaves every row produced so far on disk; ``close()`` closes the file.

Example node::

    out: {op: sink.csv, params: {path: take.csv, layout: livelink, timecode_fps: 60}}
"""

from __future__ import annotations

import bisect
import math
from pathlib import Path
from typing import ClassVar, Literal, TextIO

import numpy as np
from pydantic import Field

from ..arkit import ALL
from ..formats.animation import VISEME_MORPHS
from ..formats.livelink_csv import csv_name
from ..graph.operator import Operator, OperatorParams, Outputs, Port
from ..graph.packets import Packet
from ..graph.registry import register
from ..streams import Params as ParamsStream
from ..streams import Visemes
from ._arkit_columns import LIVE_LINK_ORDER, ColumnMap


class CsvSinkParams(OperatorParams):
    path: str = Field(description="output CSV file; its folder must exist; overwritten")
    layout: Literal["livelink", "simple"] = Field(
        "livelink",
        description="'livelink': Live Link Face take columns (Timecode, BlendShapeCount, 61 "
        "values); 'simple': time in seconds then the 52 ARKit names as ARKit spells them",
    )
    timecode_fps: int = Field(
        60, gt=0, le=1000, description="frame rate of the Live Link timecode (livelink layout)"
    )
    start_seconds: float = Field(
        0.0, ge=0, description="timecode of media time 0, in seconds (livelink layout)"
    )
    decimals: int = Field(6, ge=1, le=9, description="decimals written per value")
    viseme_columns: bool = Field(
        False,
        description="append 15 columns viseme_sil ... viseme_U with the probabilities from the "
        "'visemes' input (connect it); each row takes the viseme frame covering its time",
    )


def livelink_timecode(seconds: float, fps: int) -> str:
    """``HH:MM:SS:FF.mmm`` for a time in seconds at an integer timecode rate ``fps``.

    Rounded to a thousandth of a frame first, so a time just below a frame boundary never prints
    as frame ``fps`` (``00:00:00:60.000`` is not a timecode).
    """
    milliframes = int(round(seconds * fps * 1000))
    frames, sub = divmod(milliframes, 1000)
    secs, ff = divmod(frames, fps)
    hours, rest = divmod(secs, 3600)
    minutes, s = divmod(rest, 60)
    return f"{hours:02d}:{minutes:02d}:{s:02d}:{ff:02d}.{sub:03d}"


@register("sink.csv")
class CsvSink(Operator):
    """Writes one CSV row per frame (Live Link Face take layout or time + ARKit names)."""

    Params = CsvSinkParams
    inputs: ClassVar[dict[str, Port]] = {
        "in": Port(ParamsStream, doc="parameters to write"),
        "visemes": Port(Visemes, required=False, doc="viseme probabilities (viseme_columns)"),
    }
    outputs: ClassVar[dict[str, Port]] = {}

    def __init__(self, params: CsvSinkParams) -> None:
        super().__init__(params)
        self._file: TextIO | None = None
        order = LIVE_LINK_ORDER if params.layout == "livelink" else ALL
        self._columns = ColumnMap(order, "sink.csv")
        self._fmt = f"{{:.{params.decimals}f}}"
        # viseme_columns: rows waiting for the viseme stream, and the viseme frames received
        self._waiting: list[tuple[float, np.ndarray]] = []
        self._vis_start: list[float] = []  # start time of each viseme frame, ascending
        self._vis_probs: list[np.ndarray] = []
        self._vis_until = -math.inf  # end time of the last viseme frame
        self.rows = 0

    def setup(self) -> None:
        path = Path(self.params.path)
        if not path.parent.is_dir():
            raise FileNotFoundError(f"sink.csv: folder {str(path.parent)!r} of path does not exist")
        self._file = path.open("w", encoding="utf-8", newline="")
        if self.params.layout == "livelink":
            header = ["Timecode", "BlendShapeCount", *(csv_name(n) for n in LIVE_LINK_ORDER)]
        else:
            header = ["time", *ALL]
        if self.params.viseme_columns:
            header += VISEME_MORPHS
        self._file.write(",".join(header) + "\n")
        self._file.flush()

    def process(self, port: str, packet: Packet) -> Outputs:
        payload = packet.payload
        if self._file is None:
            raise RuntimeError("sink.csv: process() before setup()")
        if port == "visemes":
            self._add_visemes(payload, packet.media_time)
            self._write(final=False)
            return None
        if not isinstance(payload, ParamsStream):
            raise TypeError(f"sink.csv: expected a Params payload, got {type(payload).__name__}")
        values = self._columns.frames(payload)
        for i, row in enumerate(values):
            self._waiting.append((packet.media_time + i / payload.frame_rate, row))
        self._write(final=False)
        return None

    def flush(self) -> Outputs:
        self._write(final=True)
        return None

    def _add_visemes(self, payload: object, media_time: float) -> None:
        if not isinstance(payload, Visemes):
            raise TypeError(f"sink.csv: expected Visemes, got {type(payload).__name__}")
        if not self.params.viseme_columns:
            return  # connected but not asked for: nothing to write
        probs = np.asarray(payload.probs, dtype=np.float64)
        if probs.ndim != 2 or probs.shape[1] != len(VISEME_MORPHS):
            raise ValueError(
                f"sink.csv: viseme probabilities must be [frames, {len(VISEME_MORPHS)}], "
                f"got {list(probs.shape)}"
            )
        for k, row in enumerate(probs):
            self._vis_start.append(media_time + k / payload.frame_rate)
            self._vis_probs.append(row)
        self._vis_until = media_time + len(probs) / payload.frame_rate

    def _write(self, final: bool) -> None:
        """Write every waiting row that can be completed (all of them when ``final``)."""
        assert self._file is not None
        p = self.params
        lines = []
        while self._waiting:
            t, row = self._waiting[0]
            cells = [self._fmt.format(v) for v in row]
            if p.viseme_columns:
                if t >= self._vis_until - 1e-9 and not final:
                    break  # the viseme stream has not reached this row yet
                k = bisect.bisect_right(self._vis_start, t + 1e-9) - 1
                vis = self._vis_probs[k] if k >= 0 else np.zeros(len(VISEME_MORPHS))
                cells += [self._fmt.format(v) for v in vis]
            self._waiting.pop(0)
            if p.layout == "livelink":
                tc = livelink_timecode(t + p.start_seconds, p.timecode_fps)
                lines.append(",".join([tc, str(len(LIVE_LINK_ORDER)), *cells]))
            else:
                lines.append(",".join([f"{t:.6f}", *cells]))
        if p.viseme_columns and self._vis_start:  # forget viseme frames no row can need
            keep = max(0, bisect.bisect_right(self._vis_start, self._next_time() + 1e-9) - 1)
            del self._vis_start[:keep], self._vis_probs[:keep]
        if lines:
            self._file.write("\n".join(lines) + "\n")
            self._file.flush()  # a later failure must not lose what was predicted so far
            self.rows += len(lines)

    def _next_time(self) -> float:
        return self._waiting[0][0] if self._waiting else math.inf

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None
