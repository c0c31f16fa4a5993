"""``sink.video``: frames (and the graph's audio) into an MP4 file - H.264 video, AAC audio.

The end of a rendering branch; an adapter over `audio2anim.face.video.VideoWriter`::

    face -> out                      (face: render.mesh)
    {from: rs, to: out.audio}        (the audio the animation was made from)

Ports: ``in`` `Frames` (required); ``audio`` `Audio` (optional; mono, muxed as AAC - MP4 does
not take PCM). Frames and audio are placed by media time, so they stay in sync even when a live
graph skipped frames; audio gaps are filled with silence and overlaps trimmed.

Params: ``path`` (output .mp4), ``fps`` (default: the frames' rate), ``crf`` and ``preset``
(x264 quality/speed), ``audio_bitrate``, ``audio``: ``auto`` (mux audio when audio packets
arrive before one second of frames has been buffered), ``true`` or ``false``.

The file is written progressively through PyAV under a temporary name and finalized (index
written, renamed into place) in ``close()``, which the runner calls on a normal end, a stop and
an error alike, and never while ``process()`` still runs; so the path holds a playable file or
nothing. A write error (full disk, file-size limit) fails the node with one line naming the
file, and no partial file is left.

Example node::

    out: {op: sink.video, params: {path: out.mp4, crf: 20}}
"""

from __future__ import annotations

from typing import ClassVar, Literal

from pydantic import Field

from ..face.video import VideoWriter
from ..graph.operator import Operator, OperatorParams, Port
from ..graph.packets import Packet
from ..graph.registry import register
from ..streams import Audio, Frames


class VideoParams(OperatorParams):
    path: str = Field(description="output .mp4")
    fps: float | None = Field(None, gt=0, description="frame rate; default: the frames' rate")
    crf: int = Field(20, ge=0, le=51, description="x264 quality (lower = better, bigger)")
    preset: str = Field("veryfast", description="x264 speed preset")
    audio_bitrate: int = Field(96_000, ge=8_000, description="AAC bit rate")
    audio: Literal["auto", True, False] = Field(
        "auto", description="mux audio: auto = when audio arrives before 1 s of frames"
    )


@register("sink.video")
class VideoSink(Operator):
    """Writes frames (+ the audio, AAC) to an H.264 MP4, finalized on end, stop or error."""

    requires = ("av",)

    Params = VideoParams
    inputs: ClassVar = {
        "in": Port(Frames, doc="rendered frames"),
        "audio": Port(Audio, required=False, doc="the audio to mux (AAC)"),
    }
    outputs: ClassVar = {}
    executor: ClassVar = "thread"

    def setup(self) -> None:
        p = self.params
        self.writer = VideoWriter(
            p.path,
            fps=p.fps,
            crf=p.crf,
            preset=p.preset,
            audio_bitrate=p.audio_bitrate,
            with_audio=None if p.audio == "auto" else bool(p.audio),
        )

    def process(self, port: str, packet: Packet):
        if port == "audio":
            a: Audio = packet.payload
            self.writer.add_audio(a.samples, packet.media_time, a.rate)
        else:
            f: Frames = packet.payload
            self.writer.add_frames(f.images, packet.media_time, f.frame_rate)
        return None

    def close(self) -> None:
        writer = getattr(self, "writer", None)
        if writer is not None:
            writer.close()
