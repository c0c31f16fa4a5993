"""``sink.frames``: rendered frames as a numbered PNG sequence.

The end of a rendering branch, for tools that take image sequences (compositing, ffmpeg)::

    face -> pngs                      (face: render.mesh)

Ports: ``in`` `Frames`. Files are named by frame index at the stream's frame rate, computed
from media time (``frame_000000.png`` ...), so frames skipped by a live graph leave gaps in the
numbering rather than shifting later frames. Params: ``dir`` (created if missing), ``pattern``
(a format string with one integer field), ``compress_level`` (PNG zlib level 0-9; 1 is fast).
Each file is complete when written, so an error midway leaves every earlier frame intact.

Example node::

    pngs: {op: sink.frames, params: {dir: out/frames}}
"""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar

from pydantic import Field, field_validator

from ..graph.operator import Operator, OperatorParams, Port
from ..graph.packets import Packet
from ..graph.registry import register
from ..streams import Frames


class FramesParams(OperatorParams):
    dir: str = Field(description="output directory (created)")
    pattern: str = Field("frame_{:06d}.png", description="file name with one integer field")
    compress_level: int = Field(1, ge=0, le=9, description="PNG zlib level (1 = fast)")

    @field_validator("pattern")
    @classmethod
    def _one_int_field(cls, v: str) -> str:
        try:
            a, b = v.format(0), v.format(1)
        except (IndexError, ValueError, KeyError):
            raise ValueError(f"pattern {v!r}: needs one integer field like {{:06d}}") from None
        if a == b or not a.endswith(".png"):
            raise ValueError(f"pattern {v!r}: needs one integer field and a .png ending")
        return v


@register("sink.frames")
class FramesSink(Operator):
    """Writes each frame as a PNG named by its frame index."""

    requires = ("PIL",)

    Params = FramesParams
    inputs: ClassVar = {"in": Port(Frames, doc="rendered frames")}
    outputs: ClassVar = {}
    executor: ClassVar = "thread"

    def setup(self) -> None:
        self.dir = Path(self.params.dir)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.written = 0

    def process(self, port: str, packet: Packet):
        from PIL import Image

        f: Frames = packet.payload
        first = round(packet.media_time * f.frame_rate)
        for i, img in enumerate(f.images):
            path = self.dir / self.params.pattern.format(first + i)
            tmp = path.with_suffix(".tmp")
            Image.fromarray(img).save(tmp, format="PNG", compress_level=self.params.compress_level)
            tmp.replace(path)  # never a half-written PNG under the final name
            self.written += 1
        return None
