"""``source.microphone``: live audio from a sound card, through PortAudio (sounddevice).

Where it sits: the first node of a live graph, usually followed by ``resample``.

Ports: no inputs; ``out`` (Audio: float32 mono at the device rate), one packet per block.

How audio reaches the graph: PortAudio calls `MicrophoneSource.on_audio` on its own real-time
thread for every block. That callback only copies the block (mixing channels to mono), reads
``time.monotonic()`` and hands both to the event loop with ``loop.call_soon_threadsafe`` — it
never blocks and never waits for the graph. On the loop, blocks land in an unbounded deque owned
by the source; ``packets()`` yields them in order. No block is dropped here: if the graph falls
behind, the runner's queue policy decides (block / drop_oldest / drop_newest, counted there).

Clocks: a packet's media time counts the samples delivered before it (exact). Its capture time
is the ``time.monotonic()`` reading taken in the PortAudio callback when the block arrived, so
end-to-end latency is measured from real capture, not from when the loop got around to it.

Overruns: when PortAudio reports ``input_overflow`` (samples lost before a block reached us,
because the process was not scheduled in time), ``overruns`` is incremented; ``blocks`` counts
blocks delivered. The runner can read both attributes.

With no input device, setup fails with one line:
``no audio input device found; list devices with `audio2anim devices```.

Example node::

    mic: {op: source.microphone, params: {device: "USB", samplerate: 48000, block_ms: 20}}
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import time
from collections.abc import AsyncIterator
from typing import Any, ClassVar, Literal

import numpy as np
from pydantic import Field

from ..graph.formats import Format
from ..graph.operator import OperatorParams, Output, Port, Source
from ..graph.packets import Packet
from ..graph.registry import register
from ..streams import Audio
from ._audio_devices import pick_input_device, query_devices


class MicrophoneParams(OperatorParams):
    device: str | int | None = Field(
        None,
        description="input device: index, or a unique part of its name (see `audio2anim "
        "devices`); default: the system's default input",
    )
    samplerate: int | None = Field(
        None, gt=0, description="capture rate in Hz; default: the device's default rate"
    )
    block_ms: float = Field(
        20.0, gt=0, le=1000, description="block length in milliseconds (one packet per block)"
    )
    channels: int | None = Field(
        None,
        ge=1,
        description="channels to capture, mixed to mono; default: up to 2 of the device's",
    )
    device_latency: Literal["low", "high"] = Field(
        "low", description="PortAudio's suggested input latency for the device"
    )
    max_seconds: float | None = Field(
        None, gt=0, description="stop after this much audio (default: run until stopped)"
    )


@register("source.microphone")
class MicrophoneSource(Source):
    """Captures a sound card input through PortAudio, one mono packet per block."""

    requires = ("sounddevice",)

    Params = MicrophoneParams
    outputs: ClassVar[dict[str, Port]] = {"out": Port(Audio, doc="mono float32 blocks")}

    def __init__(self, params: MicrophoneParams) -> None:
        super().__init__(params)
        self.rate: int = params.samplerate or 0
        self.blocksize = 0
        self.overruns = 0  # PortAudio input_overflow flags seen
        self.blocks = 0  # blocks delivered to the loop
        self.device_name = ""
        self._stream: Any = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._pending: collections.deque[tuple[np.ndarray, float, bool]] = collections.deque()
        self._ready: asyncio.Event | None = None

    # ------------------------------------------------------------------ device side

    def setup(self) -> None:
        import sounddevice as sd

        p = self.params
        device = pick_input_device(query_devices(), p.device)
        self.device_name = device.name
        self.rate = int(p.samplerate or round(device.default_samplerate))
        self.blocksize = max(1, round(self.rate * p.block_ms / 1000.0))
        channels = p.channels or min(device.max_input_channels, 2)
        if channels > device.max_input_channels:
            raise ValueError(
                f"source.microphone: channels={channels} but device {device.index} "
                f"({device.name}) has {device.max_input_channels} input channels"
            )
        try:
            self._stream = sd.InputStream(
                device=device.index,
                samplerate=self.rate,
                blocksize=self.blocksize,
                channels=channels,
                dtype="float32",
                latency=p.device_latency,
                callback=self.on_audio,
            )
        except sd.PortAudioError as e:
            raise RuntimeError(
                f"source.microphone: cannot open input device {device.index} ({device.name}) "
                f"at {self.rate} Hz, {channels} channel(s): {e}"
            ) from None

    def on_audio(self, indata: np.ndarray, frames: int, time_info: Any, status: Any) -> None:
        """PortAudio's callback (its thread): copy, timestamp, hand to the loop. Never blocks.

        ``indata`` [frames, channels] float32 is only valid during the call, hence the copy.
        """
        captured = time.monotonic()
        overflow = status is not None and bool(getattr(status, "input_overflow", False))
        if overflow:
            self.overruns += 1  # only this thread writes it; the loop only reads
        if indata.shape[1] == 1:
            mono = indata[:, 0].copy()
        else:
            mono = indata.mean(axis=1, dtype=np.float32)
        loop = self._loop
        if loop is None:
            return  # stream running before packets() attached: nothing to deliver to
        with contextlib.suppress(RuntimeError):  # the loop closed while PortAudio was stopping
            loop.call_soon_threadsafe(self._deliver, mono, captured, overflow)

    # ------------------------------------------------------------------ loop side

    def _deliver(self, mono: np.ndarray, captured: float, overflow: bool = False) -> None:
        self._pending.append((mono, captured, overflow))
        self.blocks += 1
        assert self._ready is not None
        self._ready.set()

    def attach(self, loop: asyncio.AbstractEventLoop) -> None:
        """Bind the event loop that receives blocks (``packets()`` does this itself)."""
        self._ready = asyncio.Event()
        self._loop = loop

    async def packets(self) -> AsyncIterator[Output]:
        if self._loop is None:
            self.attach(asyncio.get_running_loop())
        assert self._ready is not None
        if self.rate <= 0:
            raise RuntimeError("source.microphone: packets() before setup()")
        limit = None
        if self.params.max_seconds is not None:
            limit = round(self.params.max_seconds * self.rate)
        sent = 0
        if self._stream is not None:
            self._stream.start()
        try:
            while limit is None or sent < limit:
                while not self._pending:
                    self._ready.clear()
                    await self._ready.wait()
                mono, captured, overflow = self._pending.popleft()
                if limit is not None:
                    mono = mono[: limit - sent]
                media_time = sent / self.rate
                sent += len(mono)
                # after an overrun the device lost audio before this block: the operators
                # downstream restart their state (how much was lost is unknown)
                yield Packet(
                    Audio(mono, self.rate),
                    media_time,
                    capture_time=captured,
                    discontinuity=overflow,
                )
        finally:
            self._stop()

    def _stop(self) -> None:
        if self._stream is not None:
            # stopping a stream PortAudio already lost must not mask the error that stopped us
            with contextlib.suppress(Exception):
                self._stream.stop()

    def output_format(self, port, inputs):
        return Format(rate=self.rate or None, channels=1)

    def counters(self) -> dict[str, int]:
        return {"overruns": self.overruns, "blocks": self.blocks}

    def close(self) -> None:
        self._stop()
        if self._stream is not None:
            self._stream.close()
            self._stream = None
        self._loop = None
