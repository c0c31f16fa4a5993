"""``sink.csv``: write animation parameters to a CSV file, one row per frame.

Where it sits: at the end of a graph, after a predictor or a smoothing operator.

Ports: ``in`` (Params). No outputs.

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

Parameters the stream does not carry are written as 0; a parameter name that is not an ARKit
blendshape (or a Live Link rotation) is an error. Rows are written and flushed per packet, so a
run that fails midway leaves every row produced so far on disk; ``close()`` closes the file.

Example node::

    out: {op: sink.csv, params: {path: take.csv, layout: livelink, timecode_fps: 60}}
"""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar, Literal, TextIO

from pydantic import Field

from ..arkit import ALL
from ..graph.operator import Operator, OperatorParams, Outputs, Port
from ..graph.packets import Packet
from ..graph.registry import register
from ..streams import Params as ParamsStream
from .arkit_columns import LIVE_LINK_ORDER, ColumnMap, pascal


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
    inputs: ClassVar[dict[str, Port]] = {"in": Port(ParamsStream, doc="parameters to write")}
    outputs: ClassVar[dict[str, Port]] = {}

    def __init__(self, params: CsvSinkParams) -> None:
        super().__init__(params)
        self._file: TextIO | None = None
        order = LIVE_LINK_ORDER if params.layout == "livelink" else ALL
        self._columns = ColumnMap(order, "sink.csv")
        self.rows = 0

    def setup(self) -> None:
        path = Path(self.params.path)
        if not path.parent.is_dir():
            raise FileNotFoundError(f"sink.csv: folder {str(path.parent)!r} of path does not exist")
        self._file = path.open("w", encoding="utf-8", newline="")
        if self.params.layout == "livelink":
            header = ["Timecode", "BlendShapeCount", *(pascal(n) for n in LIVE_LINK_ORDER)]
        else:
            header = ["time", *ALL]
        self._file.write(",".join(header) + "\n")
        self._file.flush()

    def process(self, port: str, packet: Packet) -> Outputs:
        payload = packet.payload
        if not isinstance(payload, ParamsStream):
            raise TypeError(f"sink.csv: expected a Params payload, got {type(payload).__name__}")
        if self._file is None:
            raise RuntimeError("sink.csv: process() before setup()")
        values = self._columns.frames(payload)
        fmt = f"{{:.{self.params.decimals}f}}"
        lines = []
        for i, row in enumerate(values):
            t = packet.media_time + i / payload.frame_rate
            cells = [fmt.format(v) for v in row]
            if self.params.layout == "livelink":
                tc = livelink_timecode(t + self.params.start_seconds, self.params.timecode_fps)
                lines.append(",".join([tc, str(len(LIVE_LINK_ORDER)), *cells]))
            else:
                lines.append(",".join([f"{t:.6f}", *cells]))
        if lines:
            self._file.write("\n".join(lines) + "\n")
            self._file.flush()  # a later failure must not lose what was predicted so far
            self.rows += len(lines)
        return None

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None
