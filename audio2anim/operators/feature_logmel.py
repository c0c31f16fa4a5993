"""``feature.logmel``: audio → log-mel feature frames (the viseme front end's input).

Sits after ``resample`` (it needs 16 kHz mono) and before a viseme recognizer::

    source → resample(16000) → feature.logmel → visemes.* → predictor.viseme_* → …

Ports: ``in`` `Audio` (16 kHz) → ``out`` `Features` [frames, n_mels] at 100 Hz,
``kind = "logmel"``. Each frame is the 25 ms Hann window ending 10 ms after the frame's media
time (causal framing, see `audio2anim.models.logmel`): a frame leaves as soon as its last
sample arrives, so the operator adds no lookahead, and the frames of any block split equal
the one-shot log-mel of the whole stream.

Params: ``n_mels`` (80), ``min_frames`` (1: emit whenever ≥ this many frames are ready;
larger values batch frames into fewer packets).

Example node::

    feat: {op: feature.logmel, params: {n_mels: 80, min_frames: 2}}
"""

from __future__ import annotations

import numpy as np
from pydantic import Field

from audio2anim.graph.operator import Operator, OperatorParams, Port
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
        self.start_time: float | None = None
        self.pending: list[np.ndarray] = []
        self.pending_frames = 0
        self.emitted = 0

    def process(self, port: str, packet: Packet):
        audio: Audio = packet.payload
        audio.require_rate(self.cfg.sample_rate, "feature.logmel")
        if self.start_time is None:
            self.start_time = packet.media_time
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
        t = (self.start_time or 0.0) + self.emitted / self.cfg.frame_rate
        self.emitted += len(data)
        self.pending, self.pending_frames = [], 0
        return Packet(Features(data, self.cfg.frame_rate, "logmel"), t)
