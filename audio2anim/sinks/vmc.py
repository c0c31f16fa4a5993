"""``sink.vmc``: send animation parameters over the VMC protocol (OSC over UDP).

Where it sits: at the end of a live graph. VSeeFace, VMagicMirror, Warudo, VNyan, Unity scenes
with EVMC4U and other "Virtual Motion Capture protocol" receivers listen on UDP port 39539 and
apply blendshape values to a VRM avatar.

Ports: ``in`` (Params); ``visemes`` (Visemes, optional): when connected, every viseme frame is
also sent as 15 blend values named like Ready Player Me / OVRLipSync morph targets
(``viseme_sil``, ``viseme_PP``, … ``viseme_aa``, ``viseme_E``, ``viseme_I``, ``viseme_O``,
``viseme_U``) carrying the class probabilities, followed by its own Apply. No outputs.

Per frame, one OSC bundle (or, with ``bundle: false``, separate datagrams) holding
``/VMC/Ext/Blend/Val <name: string> <value: float>`` for each blendshape, then
``/VMC/Ext/Blend/Apply`` — the performer-to-marionette messages of the VMC protocol
(https://protocol.vmc.info/specification).

Names (param ``names``):

- ``arkit``: the stream's parameters under their ARKit names as ARKit spells them (``jawOpen``).
  This is what "perfect sync" avatars (VRM models with the 52 ARKit blendshape clips) expect.
  Only the parameters the stream carries are sent, so a mouth-only model leaves the receiver's
  own blinking alone.
- ``vrm``: the VRM 0.x preset clips ``A I U E O Blink_L Blink_R Joy`` for ordinary VRM avatars,
  derived from the ARKit weights with a fixed, rough mapping (see `VRM_FROM_ARKIT`); a preset
  whose source parameters are all absent from the stream is not sent.

Example node::

    out: {op: sink.vmc, params: {host: 127.0.0.1, port: 39539, names: arkit}}
"""

from __future__ import annotations

import socket
import struct
from typing import ClassVar, Literal

import numpy as np
from pydantic import Field

from ..formats.animation import VISEME_MORPHS
from ..graph.operator import Operator, OperatorParams, Outputs, Port
from ..graph.packets import Packet
from ..graph.registry import register
from ..streams import Params as ParamsStream
from ..streams import Visemes
from ._udp import open_udp

BLEND_VAL = "/VMC/Ext/Blend/Val"
BLEND_APPLY = "/VMC/Ext/Blend/Apply"
_FLOAT = struct.Struct(">f")
_SIZE = struct.Struct(">i")
_BUNDLE_HEAD = b"#bundle\x00" + struct.pack(">Q", 1)

#: VRM 0.x preset clip -> weighted ARKit parameters; the clip weight is the clipped weighted sum.
#: A rough correspondence for avatars without ARKit clips: open jaw = "A", spread lips = "I",
#: pucker = "U", lower lip down = "E", funnel = "O"; smile = "Joy".
VRM_FROM_ARKIT: dict[str, tuple[tuple[str, float], ...]] = {
    "A": (("jawOpen", 1.0),),
    "I": (("mouthStretchLeft", 0.5), ("mouthStretchRight", 0.5)),
    "U": (("mouthPucker", 1.0),),
    "E": (("mouthLowerDownLeft", 0.5), ("mouthLowerDownRight", 0.5)),
    "O": (("mouthFunnel", 1.0),),
    "Blink_L": (("eyeBlinkLeft", 1.0),),
    "Blink_R": (("eyeBlinkRight", 1.0),),
    "Joy": (("mouthSmileLeft", 0.5), ("mouthSmileRight", 0.5)),
}


class VmcSinkParams(OperatorParams):
    host: str = Field("127.0.0.1", description="address of the VMC receiver")
    port: int = Field(39539, ge=1, le=65535, description="VMC receiver port (39539 by convention)")
    names: Literal["arkit", "vrm"] = Field(
        "arkit",
        description="'arkit': send the stream's ARKit names (perfect-sync avatars); 'vrm': map "
        "to the VRM 0.x presets A I U E O Blink_L Blink_R Joy",
    )
    bundle: bool = Field(
        True, description="send each frame as one OSC bundle (Val messages + Apply)"
    )


def _vrm_matrix(names: tuple[str, ...]) -> tuple[tuple[str, ...], np.ndarray]:
    """(clip names, [len(names), clips] weights) for the presets this stream can drive."""
    index = {n: i for i, n in enumerate(names)}
    clips, columns = [], []
    for clip, sources in VRM_FROM_ARKIT.items():
        column = np.zeros(len(names))
        for name, weight in sources:
            if name in index:
                column[index[name]] = weight
        if column.any():
            clips.append(clip)
            columns.append(column)
    matrix = np.stack(columns, axis=1) if columns else np.zeros((len(names), 0))
    return tuple(clips), matrix


@register("sink.vmc")
class VmcSink(Operator):
    """Sends each frame as VMC /VMC/Ext/Blend/Val messages + /VMC/Ext/Blend/Apply (OSC)."""

    requires = ("pythonosc",)

    Params = VmcSinkParams
    inputs: ClassVar[dict[str, Port]] = {
        "in": Port(ParamsStream, doc="parameters to send"),
        "visemes": Port(Visemes, required=False, doc="viseme probabilities, sent as viseme_*"),
    }
    outputs: ClassVar[dict[str, Port]] = {}

    def __init__(self, params: VmcSinkParams) -> None:
        super().__init__(params)
        self._sock: socket.socket | None = None
        self._addr: tuple[str, int] | None = None
        self._names: tuple[str, ...] | None = None
        self._out_names: tuple[str, ...] = ()
        self._matrix: np.ndarray | None = None
        self._val_prefix: dict[str, bytes] = {}
        self._apply = b""
        self.sent_frames = 0

    def setup(self) -> None:
        from pythonosc.osc_message_builder import OscMessageBuilder

        self._sock, self._addr = open_udp(self.params.host, self.params.port, "sink.vmc")
        self._apply = OscMessageBuilder(BLEND_APPLY).build().dgram

    def _val_message(self, name: str, value: float) -> bytes:
        """``/VMC/Ext/Blend/Val name value`` as OSC bytes.

        python-osc encodes each name's message once (with value 0); per frame only the trailing
        big-endian float32 changes, which keeps 52 values x 60 frames/s cheap.
        """
        prefix = self._val_prefix.get(name)
        if prefix is None:
            from pythonosc.osc_message_builder import OscMessageBuilder

            builder = OscMessageBuilder(BLEND_VAL)
            builder.add_arg(name, "s")
            builder.add_arg(0.0, "f")
            prefix = builder.build().dgram[:-4]
            self._val_prefix[name] = prefix
        return prefix + _FLOAT.pack(value)

    def _prepare(self, names: tuple[str, ...]) -> None:
        self._names = names
        if self.params.names == "vrm":
            self._out_names, self._matrix = _vrm_matrix(names)
        else:
            self._out_names, self._matrix = names, None

    def process(self, port: str, packet: Packet) -> Outputs:
        payload = packet.payload
        if self._sock is None:
            raise RuntimeError("sink.vmc: process() before setup()")
        if port == "visemes":
            if not isinstance(payload, Visemes):
                raise TypeError(f"sink.vmc: expected Visemes, got {type(payload).__name__}")
            probs = np.asarray(payload.probs, dtype=np.float64)
            if probs.ndim != 2 or probs.shape[1] != len(VISEME_MORPHS):
                raise ValueError(
                    f"sink.vmc: viseme probabilities must be [frames, {len(VISEME_MORPHS)}], "
                    f"got {list(probs.shape)}"
                )
            self._send_frames(VISEME_MORPHS, probs)
            return None
        if not isinstance(payload, ParamsStream):
            raise TypeError(f"sink.vmc: expected Params, got {type(payload).__name__}")
        if payload.names != self._names:
            self._prepare(payload.names)
        values = np.asarray(payload.values, dtype=np.float64)
        if self._matrix is not None:
            values = np.clip(values @ self._matrix, 0.0, 1.0)
        self._send_frames(self._out_names, values)
        return None

    def _send_frames(self, names: tuple[str, ...], values: np.ndarray) -> None:
        """Per row of ``values`` [frames, len(names)]: Val messages then Apply."""
        assert self._sock is not None and self._addr is not None
        for row in values:
            messages = [self._val_message(n, float(v)) for n, v in zip(names, row, strict=True)]
            messages.append(self._apply)
            if self.params.bundle:
                # OSC 1.0 bundle: "#bundle", time tag 1 (= immediately), then size-prefixed
                # elements (https://opensoundcontrol.stanford.edu/spec-1_0.html)
                parts = [_BUNDLE_HEAD]
                for m in messages:
                    parts += [_SIZE.pack(len(m)), m]
                self._sock.sendto(b"".join(parts), self._addr)
            else:
                for m in messages:
                    self._sock.sendto(m, self._addr)
            self.sent_frames += 1

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None
