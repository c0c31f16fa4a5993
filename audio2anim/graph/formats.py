"""Stream formats: what an edge carries, declared by the operators before any packet flows.

A port's type (`audio2anim.streams`) is checked when the graph file is read; its *format* (the
rate, the number of values per frame, the kind of features) often depends on parameters and
checkpoints, so each operator declares it once ``setup()`` has run, and the runner checks every
edge before the sources start (see `Operator.input_format` / `Operator.output_format`). A field
left ``None`` is unknown on an output and "anything" on an input, so an operator that does not
care declares nothing.

    def input_format(self, port):            # what the input takes
        return Format(rate=16000, channels=1)

    def output_format(self, port, inputs):   # what the output carries, given the inputs
        return Format(rate=50, width=self.dims, kind="w2v2-posteriors")
"""

from __future__ import annotations

from dataclasses import dataclass, fields

from audio2anim.streams import Audio, Features, Frames, Params, Visemes


@dataclass(frozen=True, slots=True)
class Format:
    """The format of a stream; ``None`` = unknown (an output) or any (an input)."""

    rate: float | None = None  # Hz: samples/s of audio, frames/s of every other stream
    channels: int | None = None  # audio channels (the streams carry mono)
    width: int | None = None  # values per frame: feature dims, viseme classes, parameters
    kind: str | None = None  # what the features are: "logmel", "w2v2-posteriors", ...

    def __str__(self) -> str:
        parts = []
        if self.rate is not None:
            parts.append(f"{self.rate:g} Hz")
        if self.channels is not None:
            parts.append(f"{self.channels} channel(s)")
        if self.width is not None:
            parts.append(f"{self.width} values per frame")
        if self.kind is not None:
            parts.append(f"kind {self.kind!r}")
        return ", ".join(parts) or "any format"

    def joined(self, other: Format) -> Format:
        """The fields known in either (``self`` first)."""
        return Format(
            **{
                f.name: getattr(self, f.name)
                if getattr(self, f.name) is not None
                else getattr(other, f.name)
                for f in fields(self)
            }
        )


ANY = Format()


def mismatch(have: Format, need: Format) -> str | None:
    """Why a stream of format ``have`` cannot feed an input that takes ``need``, as a phrase
    (``"48000 Hz, takes 16000 Hz"``); None when it can. Unknown fields match anything."""
    problems = []
    if have.rate is not None and need.rate is not None and abs(have.rate - need.rate) > 1e-6:
        problems.append(f"{have.rate:g} Hz, takes {need.rate:g} Hz")
    if have.channels is not None and need.channels is not None and have.channels != need.channels:
        problems.append(f"{have.channels} channel(s), takes {need.channels}")
    if have.width is not None and need.width is not None and have.width != need.width:
        problems.append(f"{have.width} values per frame, takes {need.width}")
    if have.kind is not None and need.kind is not None and have.kind != need.kind:
        problems.append(f"features {have.kind!r}, takes {need.kind!r}")
    return "; ".join(problems) or None


def payload_format(payload: object) -> Format:
    """The format a payload actually has (what a declaration is checked against)."""
    if isinstance(payload, Audio):
        return Format(rate=float(payload.rate), channels=1)
    if isinstance(payload, Features):
        return Format(
            float(payload.frame_rate), width=int(payload.data.shape[1]), kind=payload.kind or None
        )
    if isinstance(payload, Visemes):
        return Format(float(payload.frame_rate), width=int(payload.probs.shape[1]))
    if isinstance(payload, Params):
        return Format(float(payload.frame_rate), width=len(payload.names))
    if isinstance(payload, Frames):
        return Format(float(payload.frame_rate))
    return ANY
