"""``sink.video``: frames (and the graph's audio) into an MP4 file - H.264 video, AAC audio.

The end of a rendering branch::

    face -> out                      (face: render.mesh)
    {from: rs, to: out.audio}        (the audio the animation was made from)

Ports: ``in`` `Frames` (required); ``audio`` `Audio` (optional; mono, muxed as AAC - MP4 does
not take PCM). Frames and audio are placed by media time, so they stay in sync even when a live
graph skipped frames; audio gaps are filled with silence and overlaps trimmed.

Params: ``path`` (output .mp4), ``fps`` (default: the frames' rate), ``crf`` and ``preset``
(x264 quality/speed), ``audio_bitrate``, ``audio``: ``auto`` (mux audio when audio packets
arrive before one second of frames has been buffered), ``true`` or ``false``.

The file is written progressively through PyAV and finalized in ``close()``, which the runner
calls on a normal end, a stop and an error alike, so whatever was written plays.

Example node::

    out: {op: sink.video, params: {path: out.mp4, crf: 20}}
"""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path
from typing import ClassVar, Literal

import numpy as np
from pydantic import Field

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


class VideoWriter:
    """Progressive MP4 writer (H.264 + optional AAC), placing media by time. Plain library.

    ``add_frames(images, t0, fps)`` and ``add_audio(samples, t0, rate)`` may come in any order
    and any block sizes; the streams are created when the first frame arrives and the audio
    decision is known (``with_audio``: True, False or None = decide at the first audio packet
    or after ``decide_after_s`` of buffered frames). ``close()`` finalizes the file.
    """

    def __init__(
        self,
        path: str | Path,
        fps: float | None = None,
        crf: int = 20,
        preset: str = "veryfast",
        audio_bitrate: int = 96_000,
        with_audio: bool | None = None,
        decide_after_s: float = 1.0,
    ) -> None:
        self.path = Path(path)
        self.fps = fps
        self.crf, self.preset, self.audio_bitrate = crf, preset, audio_bitrate
        self.with_audio = with_audio
        self.decide_after_s = decide_after_s
        self.container = None
        self.vstream = self.astream = None
        self._pending_frames: list[tuple[np.ndarray, float]] = []  # (image, time)
        self._pending_audio: list[tuple[np.ndarray, float]] = []
        self.audio_rate: int | None = None
        self._audio_next = 0  # next audio sample index to write
        self._last_pts = -1
        self.frames_written = 0
        self.samples_written = 0

    # --- input ---------------------------------------------------------------------------------
    def add_frames(self, images: np.ndarray, t0: float, fps: float) -> None:
        if self.fps is None:
            self.fps = float(fps)
        for i, img in enumerate(images):
            self._pending_frames.append((img, t0 + i / fps))
        if self.container is None:
            buffered = len(self._pending_frames) / self.fps
            if self.with_audio is None and buffered >= self.decide_after_s:
                self.with_audio = bool(self._pending_audio)
            if self.with_audio is not None:
                self._open()
        if self.container is not None:
            self._drain()

    def add_audio(self, samples: np.ndarray, t0: float, rate: int) -> None:
        if self.audio_rate is None:
            self.audio_rate = int(rate)
        elif rate != self.audio_rate:
            raise ValueError(f"{self.path}: audio rate changed from {self.audio_rate} to {rate}")
        if self.with_audio is None:
            self.with_audio = True
        if self.with_audio is False:
            return
        self._pending_audio.append((np.asarray(samples, np.float32), t0))
        if self.container is None and self._pending_frames:
            self._open()
        if self.container is not None:
            self._drain()

    # --- output --------------------------------------------------------------------------------
    def _open(self) -> None:
        import av

        h, w = self._pending_frames[0][0].shape[:2]
        if h % 2 or w % 2:
            self._pending_frames.clear()  # nothing can be written; close() has nothing to do
            raise ValueError(f"{self.path}: frame size {w}x{h} must be even for H.264 (yuv420p)")
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.container = av.open(str(self.path), mode="w", format="mp4")
        rate = Fraction(self.fps).limit_denominator(1001)
        vs = self.container.add_stream("libx264", rate=rate)
        vs.width, vs.height, vs.pix_fmt = w, h, "yuv420p"
        vs.time_base = 1 / rate
        vs.options = {"crf": str(self.crf), "preset": self.preset}
        self.vstream = vs
        if self.with_audio and self.audio_rate:
            a = self.container.add_stream("aac", rate=self.audio_rate)
            a.layout = "mono"
            a.bit_rate = self.audio_bitrate
            self.astream = a

    def _drain(self) -> None:
        import av

        for img, t in self._pending_frames:
            pts = int(round(t * self.fps))
            if pts <= self._last_pts:  # two frames in one slot: keep the first
                continue
            frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(img), format="rgb24")
            frame.pts = pts
            self.container.mux(self.vstream.encode(frame))
            self._last_pts = pts
            self.frames_written += 1
        self._pending_frames.clear()
        if self.astream is None:
            self._pending_audio.clear()
            return
        for samples, t in self._pending_audio:
            start = int(round(t * self.audio_rate))
            if start > self._audio_next:  # a gap: silence keeps later audio in place
                samples = np.concatenate([np.zeros(start - self._audio_next, np.float32), samples])
            elif start < self._audio_next:  # overlap: already written
                samples = samples[self._audio_next - start :]
            if len(samples) == 0:
                continue
            frame = av.AudioFrame.from_ndarray(samples[None, :], format="flt", layout="mono")
            frame.sample_rate = self.audio_rate
            frame.pts = self._audio_next
            frame.time_base = Fraction(1, self.audio_rate)
            self.container.mux(self.astream.encode(frame))
            self._audio_next += len(samples)
            self.samples_written += len(samples)
        self._pending_audio.clear()

    def close(self) -> None:
        """Flush the encoders and write the MP4 index; safe to call more than once."""
        if self.container is None and self._pending_frames:
            if self.with_audio is None:
                self.with_audio = bool(self._pending_audio)
            self._open()
        if self.container is None:
            return
        try:
            self._drain()
        finally:
            try:
                self.container.mux(self.vstream.encode(None))
                if self.astream is not None:
                    self.container.mux(self.astream.encode(None))
            finally:
                self.container.close()
                self.container = None


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
