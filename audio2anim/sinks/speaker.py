"""``sink.speaker``: plays the graph's audio on the default output device (sounddevice).

Used beside a live face, so the voice is heard in step with the animation::

    {from: rs, to: spk}               (spk: sink.speaker)

Ports: ``in`` `Audio` (mono). The audio is delayed by ``delay_ms`` - set it to the animation
path's latency (model lookahead + rendering + display) so sound and face line up; the runner's
``audio2anim_e2e_latency_seconds`` metric tells what that is. Params: ``delay_ms``,
``device`` (a sounddevice name or index; default: the system default), ``buffer_s``: audio
queued beyond this is dropped, oldest first, so a stalled device never grows latency.

Setup fails with one clear line when there is no output device (a headless server): use
``sink.video`` or ``sink.browser`` there.

Example node::

    spk: {op: sink.speaker, params: {delay_ms: 120}}
"""

from __future__ import annotations

import threading
from collections import deque
from typing import ClassVar

import numpy as np
from pydantic import Field

from ..graph.operator import Operator, OperatorParams, Port
from ..graph.packets import Packet
from ..graph.registry import register
from ..streams import Audio


class SpeakerParams(OperatorParams):
    delay_ms: float = Field(0.0, ge=0, le=10_000, description="delay added before playback")
    device: str | int | None = Field(None, description="output device name or index")
    buffer_s: float = Field(2.0, gt=0, description="queue beyond this is dropped, oldest first")


def find_output_device(device: str | int | None) -> dict:
    """The sounddevice info dict of the output ``device``; RuntimeError if there is none."""
    try:
        import sounddevice as sd
    except OSError as e:  # PortAudio library missing
        raise RuntimeError(f"sink.speaker: PortAudio is not available ({e})") from None
    try:
        info = sd.query_devices(device, kind="output")
    except (ValueError, sd.PortAudioError) as e:
        what = "no audio output device" if device is None else f"output device {device!r}"
        raise RuntimeError(
            f"sink.speaker: {what} found ({e}); on a machine without sound use sink.video "
            "or sink.browser"
        ) from None
    if info.get("max_output_channels", 0) < 1:
        raise RuntimeError(f"sink.speaker: device {info.get('name')!r} has no output channels")
    return info


class _Ring:
    """Thread-safe sample queue between the graph and the audio callback."""

    def __init__(self, max_samples: int) -> None:
        self.blocks: deque[np.ndarray] = deque()
        self.size = 0
        self.max = max_samples
        self.lock = threading.Lock()
        self.dropped = 0

    def push(self, samples: np.ndarray) -> None:
        with self.lock:
            self.blocks.append(samples)
            self.size += len(samples)
            while self.size > self.max:  # drop the oldest samples, never the newest
                excess = self.size - self.max
                if len(self.blocks[0]) <= excess:
                    old = self.blocks.popleft()
                    self.size -= len(old)
                    self.dropped += len(old)
                else:
                    self.blocks[0] = self.blocks[0][excess:]
                    self.size -= excess
                    self.dropped += excess

    def pull(self, out: np.ndarray) -> None:
        """Fill ``out`` with queued samples, zeros where the queue runs dry."""
        n, k = len(out), 0
        with self.lock:
            while k < n and self.blocks:
                b = self.blocks[0]
                take = min(n - k, len(b))
                out[k : k + take] = b[:take]
                k += take
                if take == len(b):
                    self.blocks.popleft()
                else:
                    self.blocks[0] = b[take:]
                self.size -= take
        out[k:] = 0.0


@register("sink.speaker")
class SpeakerSink(Operator):
    """Plays the audio on an output device, delayed to line up with the animation."""

    requires = ("sounddevice",)

    Params = SpeakerParams
    inputs: ClassVar = {"in": Port(Audio, doc="mono audio to play")}
    outputs: ClassVar = {}

    def setup(self) -> None:
        self.info = find_output_device(self.params.device)
        self.stream = None
        self.ring = None

    def _open(self, rate: int) -> None:
        import sounddevice as sd

        delay = int(round(self.params.delay_ms / 1000 * rate))
        self.ring = _Ring(int(self.params.buffer_s * rate) + delay)
        if delay:
            self.ring.push(np.zeros(delay, np.float32))

        def callback(outdata, frames, time_info, status):
            self.ring.pull(outdata[:, 0])

        self.stream = sd.OutputStream(
            samplerate=rate, channels=1, dtype="float32", device=self.params.device,
            callback=callback,
        )  # fmt: skip
        self.stream.start()
        self.rate = rate

    def process(self, port: str, packet: Packet):
        a: Audio = packet.payload
        if self.stream is None:
            self._open(a.rate)
        elif a.rate != self.rate:
            raise ValueError(f"sink.speaker: audio rate changed from {self.rate} to {a.rate}")
        self.ring.push(np.asarray(a.samples, np.float32))
        return None

    def close(self) -> None:
        stream = getattr(self, "stream", None)
        if stream is not None:
            stream.stop()
            stream.close()
            self.stream = None
