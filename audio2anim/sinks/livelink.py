"""``sink.livelink``: stream animation parameters to Unreal Engine as Live Link Face UDP packets.

Where it sits: at the end of a live graph. Unreal's Live Link window, source "Apple ARKit Face"
(LiveLinkFace), listening on port 11111, sees a subject named ``subject`` and drives a face
(a MetaHuman or any ARKit-ready mesh) live — exactly as if the Live Link Face iPhone app sent it.

Ports: ``in`` (Params). No outputs. One datagram per frame, sent as the frame arrives.

Packet format (packet version 6, what the current Live Link Face app sends), all multi-byte
fields big-endian (Unreal's ``FNboSerializeToBuffer``, "network byte order")::

    uint8    packet version = 6
    int32    length of device id, then that many bytes (UTF-8)
    int32    length of subject name, then that many bytes (UTF-8)
    int32    frame number   \\
    float32  sub-frame       |  FQualifiedFrameTime: the frame time and its rate
    int32    rate numerator  |  (frame number counted at numerator/denominator fps)
    int32    rate denominator/
    uint8    blendshape count = 61
    61 x float32             the 52 blendshapes in EARFaceBlendShape order, then HeadYaw,
                             HeadPitch, HeadRoll, LeftEyeYaw/Pitch/Roll, RightEyeYaw/Pitch/Roll

Note the blendshape order is Unreal's ``EARFaceBlendShape`` enum, which differs from the Live
Link Face CSV column order (`audio2anim.arkit.ALL`) in two places: JawLeft comes before
JawRight, and MouthLeft before MouthRight.

Sources checked for this layout:
- Unreal Engine, ``AppleARKitFaceSupport/Private/AppleARKitLiveLinkSource.cpp``
  (``BLEND_SHAPE_PACKET_VER = 6``; ``FAppleARKitLiveLinkRemotePublisher::PublishBlendShapes``
  writes version, DeviceId, SubjectName, FrameTime, BlendShapeCount, the floats; the
  ``FAppleARKitLiveLinkRemoteListener::Tick`` reader is its mirror), e.g. the copy in the
  GitHub repository unicorn2022/UE5.8.0.
- Unreal's ``NboSerializer.h``: strings are an int32 length prefix then UTF-8 bytes; floats and
  ints big-endian.
- ``EARFaceBlendShape`` in Unreal's ``ARTrackable``/``ARTypes`` headers (enum order).
- JimWest/PyLiveLinkFace (``pylivelinkface.py``), a Python sender/receiver that Unreal accepts:
  its decoder reads the frame time as ``!if2ib`` (int32 frame, float32 sub-frame, int32
  numerator, int32 denominator, uint8 count) and then ``!61f``.

Example node::

    out: {op: sink.livelink, params: {host: 127.0.0.1, port: 11111, subject: audio2anim}}
"""

from __future__ import annotations

import math
import socket
import struct
from fractions import Fraction
from typing import ClassVar

import numpy as np
from pydantic import Field

from ..arkit import ALL
from ..graph.operator import Operator, OperatorParams, Outputs, Port
from ..graph.packets import Packet
from ..graph.registry import register
from ..streams import Params as ParamsStream
from ._arkit_columns import ROTATIONS, ColumnMap
from ._udp import open_udp

PACKET_VERSION = 6


def _unreal_blendshape_order() -> tuple[str, ...]:
    """`ALL` (Live Link Face CSV order) rearranged into Unreal's EARFaceBlendShape order: the
    same names, but with jawLeft before jawRight and mouthLeft before mouthRight."""
    order = list(ALL)
    for left, right in (("jawLeft", "jawRight"), ("mouthLeft", "mouthRight")):
        i, j = order.index(left), order.index(right)
        order[i], order[j] = order[j], order[i]
    return tuple(order)


#: Unreal's EARFaceBlendShape order (the UDP payload), ARKit spelling, then the 9 rotations.
UDP_ORDER: tuple[str, ...] = _unreal_blendshape_order() + ROTATIONS

assert len(UDP_ORDER) == 61 and set(UDP_ORDER[:52]) == set(ALL)

_FLOATS = struct.Struct(f">{len(UDP_ORDER)}f")


def _prefixed(text: str) -> bytes:
    data = text.encode("utf-8")
    return struct.pack(">i", len(data)) + data


def encode_livelink_packet(
    device_id: str,
    subject: str,
    frame: int,
    subframe: float,
    rate: Fraction,
    values: np.ndarray,
) -> bytes:
    """One Live Link Face UDP datagram; ``values`` = 61 floats in `UDP_ORDER`."""
    if len(values) != len(UDP_ORDER):
        raise ValueError(f"Live Link packet needs {len(UDP_ORDER)} values, got {len(values)}")
    return b"".join(
        [
            struct.pack(">B", PACKET_VERSION),
            _prefixed(device_id),
            _prefixed(subject),
            struct.pack(">ifiiB", frame, subframe, rate.numerator, rate.denominator, 61),
            _FLOATS.pack(*(float(v) for v in values)),
        ]
    )


class LiveLinkSinkParams(OperatorParams):
    host: str = Field("127.0.0.1", description="address of the machine running Unreal")
    port: int = Field(11111, ge=1, le=65535, description="Live Link Face UDP port in Unreal")
    subject: str = Field(
        "audio2anim", min_length=1, description="Live Link subject name shown in Unreal"
    )
    device_id: str = Field(
        "audio2anim", min_length=1, description="device id; Unreal tells senders apart by it"
    )


@register("sink.livelink")
class LiveLinkSink(Operator):
    """Sends each frame to Unreal as a Live Link Face (v6) UDP packet."""

    Params = LiveLinkSinkParams
    inputs: ClassVar[dict[str, Port]] = {"in": Port(ParamsStream, doc="parameters to send")}
    outputs: ClassVar[dict[str, Port]] = {}

    def __init__(self, params: LiveLinkSinkParams) -> None:
        super().__init__(params)
        self._columns = ColumnMap(UDP_ORDER, "sink.livelink")
        self._sock: socket.socket | None = None
        self._addr: tuple[str, int] | None = None
        self.sent = 0

    def setup(self) -> None:
        self._sock, self._addr = open_udp(self.params.host, self.params.port, "sink.livelink")

    def process(self, port: str, packet: Packet) -> Outputs:
        payload = packet.payload
        if not isinstance(payload, ParamsStream):
            raise TypeError(f"sink.livelink: expected Params, got {type(payload).__name__}")
        if self._sock is None or self._addr is None:
            raise RuntimeError("sink.livelink: process() before setup()")
        rate = Fraction(payload.frame_rate).limit_denominator(1001)
        fps = float(rate)
        for i, row in enumerate(self._columns.frames(payload)):
            # the frame number counted at the stream's own rate, from media time
            position = (packet.media_time + i / payload.frame_rate) * fps
            frame = math.floor(position + 1e-6)
            subframe = max(0.0, position - frame)
            data = encode_livelink_packet(
                self.params.device_id, self.params.subject, frame, subframe, rate, row
            )
            self._sock.sendto(data, self._addr)
            self.sent += 1
        return None

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None
