"""Audio devices as PortAudio (through sounddevice) sees them: listing and picking an input.

`source.microphone` and ``audio2anim devices`` use it. The functions
that take a ``devices`` list are pure, so the choice logic is testable on any machine.
"""

from __future__ import annotations

from dataclasses import dataclass

NO_INPUT_MESSAGE = "no audio input device found; list devices with `audio2anim devices`"


class NoInputDevice(RuntimeError):
    """The machine has no audio input PortAudio can open."""


@dataclass(frozen=True)
class Device:
    """One PortAudio device; ``index`` is what sounddevice and ``device: N`` accept."""

    index: int
    name: str
    hostapi: str
    max_input_channels: int
    max_output_channels: int
    default_samplerate: float
    default_input: bool = False
    default_output: bool = False

    @property
    def is_input(self) -> bool:
        return self.max_input_channels > 0


def query_devices() -> list[Device]:
    """All devices PortAudio reports (empty on a machine without sound hardware)."""
    import sounddevice as sd

    try:
        raw = sd.query_devices()
        hostapis = sd.query_hostapis()
    except sd.PortAudioError:
        return []
    default_in, default_out = _defaults()
    return [
        Device(
            index=int(d["index"]),
            name=str(d["name"]),
            hostapi=str(hostapis[d["hostapi"]]["name"]),
            max_input_channels=int(d["max_input_channels"]),
            max_output_channels=int(d["max_output_channels"]),
            default_samplerate=float(d["default_samplerate"]),
            default_input=int(d["index"]) == default_in,
            default_output=int(d["index"]) == default_out,
        )
        for d in raw
    ]


def _defaults() -> tuple[int, int]:
    import sounddevice as sd

    try:
        pair = sd.default.device
        return int(pair[0]), int(pair[1])
    except (TypeError, ValueError, IndexError):
        return -1, -1


def pick_input_device(devices: list[Device], spec: str | int | None) -> Device:
    """The input device named by ``spec``.

    ``spec``: ``None`` = PortAudio's default input (else the first input); an int (or a string
    of digits) = that device index; any other string = the one input device whose name contains
    it, case-insensitively (an exact name match wins over substrings).
    Raises `NoInputDevice` when there is no input at all, ``ValueError`` when ``spec`` names none
    or several.
    """
    inputs = [d for d in devices if d.is_input]
    if not inputs:
        raise NoInputDevice(NO_INPUT_MESSAGE)
    listing = "; ".join(f"{d.index}: {d.name}" for d in inputs)
    if spec is None:
        return next((d for d in inputs if d.default_input), inputs[0])
    if isinstance(spec, int) or (isinstance(spec, str) and spec.strip().isdigit()):
        index = int(spec)
        for d in inputs:
            if d.index == index:
                return d
        raise ValueError(f"device {index} is not an audio input (inputs: {listing})")
    exact = [d for d in inputs if d.name.lower() == spec.lower()]
    if len(exact) == 1:
        return exact[0]
    matches = [d for d in inputs if spec.lower() in d.name.lower()]
    if not matches:
        raise ValueError(f"no audio input device matches {spec!r} (inputs: {listing})")
    if len(matches) > 1:
        names = "; ".join(f"{d.index}: {d.name}" for d in matches)
        raise ValueError(f"device {spec!r} is ambiguous, it matches {names}; give an index")
    return matches[0]


def format_device_table(devices: list[Device]) -> str:
    """A human-readable table of ``devices``: index, in/out channels, rate, host API, name."""
    if not devices:
        return "no audio devices found (PortAudio reports none: no sound card, or no access to it)"
    lines = [f"{'':2}{'index':>5}  {'in':>3}  {'out':>3}  {'rate':>7}  {'host API':<12}  name"]
    for d in devices:
        mark = (">" if d.default_input else " ") + ("<" if d.default_output else " ")
        lines.append(
            f"{mark}{d.index:>5}  {d.max_input_channels:>3}  {d.max_output_channels:>3}  "
            f"{d.default_samplerate:>7.0f}  {d.hostapi[:12]:<12}  {d.name}"
        )
    lines.append("> default input, < default output")
    return "\n".join(lines)
