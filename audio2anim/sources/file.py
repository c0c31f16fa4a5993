"""``source.file``: audio from a file, block by block, optionally paced like a live device.

Position: first node of an offline graph (or a live-like one with ``realtime: true``).
Ports: out → Audio (float32 mono at the file's own rate; multichannel is averaged to mono; a
block with NaN or infinite samples is an error naming the file).
Params: ``path`` (WAV/FLAC/OGG or anything libsndfile reads; default: the shipped speech clip),
``block_ms`` (block length), ``realtime`` (pace blocks at wall-clock rate), ``loop`` (start
again at the end of the file, media time running on, until the graph is stopped: soak runs).

```yaml
src: {op: source.file, params: {path: take1.flac, block_ms: 20, realtime: true}}
```
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from importlib.resources import files
from pathlib import Path

import numpy as np
import soundfile as sf
from pydantic import Field, field_validator

from audio2anim.audio import warn_if_truncated
from audio2anim.graph.formats import Format
from audio2anim.graph.operator import OperatorParams, Output, Port, Source
from audio2anim.graph.registry import register
from audio2anim.streams import Audio

from ._pacing import audio_packets

SHIPPED_SPEECH = Path(str(files("audio2anim") / "assets" / "speech.wav"))


class FileSourceParams(OperatorParams):
    path: Path = Field(SHIPPED_SPEECH, description="audio file to read (any libsndfile format)")
    block_ms: float = Field(20.0, gt=0, le=10_000, description="block length in milliseconds")
    realtime: bool = Field(
        False, description="release blocks at wall-clock rate, like a live device"
    )
    loop: bool = Field(False, description="start again at the end of the file, until stopped")

    @field_validator("path")
    @classmethod
    def _readable(cls, p: Path) -> Path:
        if not p.is_file():
            raise ValueError(f"no such file: {p}")
        try:
            sf.info(str(p))
        except Exception as e:  # libsndfile's own message says what is wrong with the file
            raise ValueError(f"not a readable audio file: {p} ({e})") from None
        return p


@register("source.file")
class FileSource(Source):
    """Reads an audio file and emits mono float32 blocks with exact media times."""

    Params = FileSourceParams
    outputs = {"out": Port(Audio, doc="mono audio at the file's sample rate")}

    def setup(self) -> None:
        warn_if_truncated(self.params.path)
        self._file = sf.SoundFile(str(self.params.path))

    def output_format(self, port, inputs):
        return Format(rate=self._file.samplerate, channels=1)

    async def packets(self) -> AsyncIterator[Output]:
        f = self._file
        block = max(1, round(f.samplerate * self.params.block_ms / 1000))

        def blocks():
            while True:
                data = f.read(block, dtype="float32", always_2d=True)
                if len(data) == 0:
                    if not self.params.loop or f.frames == 0:
                        return
                    f.seek(0)
                    continue
                if not np.isfinite(data).all():
                    at = (f.tell() - len(data)) / f.samplerate
                    raise ValueError(
                        f"{self.params.path}: non-finite samples (NaN or inf) near {at:.2f} s"
                    )
                yield data.mean(axis=1) if data.shape[1] > 1 else data[:, 0]

        async for pkt in audio_packets(blocks(), f.samplerate, self.params.realtime):
            yield pkt

    def close(self) -> None:
        f = getattr(self, "_file", None)
        if f is not None:
            f.close()
