"""``feature.logmel``: audio → log-mel feature frames (the viseme front end's input).

Sits after ``resample`` (it needs 16 kHz mono) and before a viseme recognizer::

    source → resample(16000) → feature.logmel → visemes.* → predictor.viseme_* → …

Ports: ``in`` `Audio` (16 kHz) → ``out`` `Features` [frames, n_mels] at 100 Hz,
``kind = "logmel"``. Each frame is the 25 ms Hann window ending 10 ms after the frame's media
time (causal framing, see `audio2anim.models.logmel`): a frame leaves as soon as its last
sample arrives, so the operator adds no lookahead, and the frames of any block split equal
the one-shot log-mel of the whole stream.

Media times count frames from the first input packet's; at a discontinuity the pending
frames leave, the framing buffer restarts (the window before the gap's first frame is zeros,
as at the start of a stream) and the count re-anchors on the packet after the gap.

Params: ``n_mels`` (80), ``min_frames`` (1: emit whenever ≥ this many frames are ready;
larger values batch frames into fewer packets).

Example node::

    feat: {op: feature.logmel, params: {n_mels: 80, min_frames: 2}}
"""

from __future__ import annotations

import numpy as np
from pydantic import Field

from audio2anim.graph.formats import Format
from audio2anim.graph.operator import MediaClock, Operator, OperatorParams, Port
from audio2anim.graph.packets import Packet
from audio2anim.graph.registry import register
from audio2anim.streams import Audio, Features


@register("feature.logmel")
class LogMelFeatures(Operator):
    """16 kHz audio → log-mel frames at 100 Hz (causal; equal to the one-shot log-mel)."""

    class Params(OperatorParams):
        n_mels: int = Field(80, ge=8, le=256, description="mel bands")
        min_frames: int = Field(1, ge=1, le=100, description="frames per emitted packet, at least")

    inputs = {"in": Port(Audio, doc="16 kHz mono audio")}
    outputs = {"out": Port(Features, doc="log-mel frames at 100 Hz")}

    def setup(self) -> None:
        from audio2anim.models.logmel import LogMelConfig, LogMelStream

        self.cfg = LogMelConfig(n_mels=self.params.n_mels)
        self.stream = LogMelStream(self.cfg)
        self.clock = MediaClock(self.cfg.frame_rate)
        self.pending: list[np.ndarray] = []
        self.pending_frames = 0

    def reset(self) -> None:
        self.stream.reset()
        self.clock.reset()

    def input_format(self, port):
        return Format(rate=self.cfg.sample_rate, channels=1)

    def output_format(self, port, inputs):
        return Format(rate=self.cfg.frame_rate, width=self.cfg.n_mels, kind="logmel")

    def process(self, port: str, packet: Packet):
        audio: Audio = packet.payload
        audio.require_rate(self.cfg.sample_rate, "feature.logmel")
        self.clock.input(packet)
        frames = self.stream.push(audio.samples)
        if len(frames):
            self.pending.append(frames)
            self.pending_frames += len(frames)
        if self.pending_frames >= self.params.min_frames:
            return [self._emit()]
        return None

    def flush(self):
        return [self._emit()] if self.pending_frames else None

    def _emit(self) -> Packet:
        data = np.concatenate(self.pending)
        self.pending, self.pending_frames = [], 0
        return Packet(Features(data, self.cfg.frame_rate, "logmel"), self.clock.take(len(data)))
