from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class StreamRequest(_message.Message):
    __slots__ = ("start", "audio", "end")
    class Start(_message.Message):
        __slots__ = ("rate", "format", "graph")
        RATE_FIELD_NUMBER: _ClassVar[int]
        FORMAT_FIELD_NUMBER: _ClassVar[int]
        GRAPH_FIELD_NUMBER: _ClassVar[int]
        rate: int
        format: str
        graph: str
        def __init__(self, rate: _Optional[int] = ..., format: _Optional[str] = ..., graph: _Optional[str] = ...) -> None: ...
    class End(_message.Message):
        __slots__ = ()
        def __init__(self) -> None: ...
    START_FIELD_NUMBER: _ClassVar[int]
    AUDIO_FIELD_NUMBER: _ClassVar[int]
    END_FIELD_NUMBER: _ClassVar[int]
    start: StreamRequest.Start
    audio: bytes
    end: StreamRequest.End
    def __init__(self, start: _Optional[_Union[StreamRequest.Start, _Mapping]] = ..., audio: _Optional[bytes] = ..., end: _Optional[_Union[StreamRequest.End, _Mapping]] = ...) -> None: ...

class StreamResponse(_message.Message):
    __slots__ = ("header", "frame", "end", "error")
    class Header(_message.Message):
        __slots__ = ("session", "graph", "names", "fps", "visemes", "algorithmic_latency_ms")
        SESSION_FIELD_NUMBER: _ClassVar[int]
        GRAPH_FIELD_NUMBER: _ClassVar[int]
        NAMES_FIELD_NUMBER: _ClassVar[int]
        FPS_FIELD_NUMBER: _ClassVar[int]
        VISEMES_FIELD_NUMBER: _ClassVar[int]
        ALGORITHMIC_LATENCY_MS_FIELD_NUMBER: _ClassVar[int]
        session: str
        graph: str
        names: _containers.RepeatedScalarFieldContainer[str]
        fps: float
        visemes: _containers.RepeatedScalarFieldContainer[str]
        algorithmic_latency_ms: float
        def __init__(self, session: _Optional[str] = ..., graph: _Optional[str] = ..., names: _Optional[_Iterable[str]] = ..., fps: _Optional[float] = ..., visemes: _Optional[_Iterable[str]] = ..., algorithmic_latency_ms: _Optional[float] = ...) -> None: ...
    class Frame(_message.Message):
        __slots__ = ("t", "values", "visemes", "audio_end")
        T_FIELD_NUMBER: _ClassVar[int]
        VALUES_FIELD_NUMBER: _ClassVar[int]
        VISEMES_FIELD_NUMBER: _ClassVar[int]
        AUDIO_END_FIELD_NUMBER: _ClassVar[int]
        t: float
        values: _containers.RepeatedScalarFieldContainer[float]
        visemes: _containers.RepeatedScalarFieldContainer[float]
        audio_end: float
        def __init__(self, t: _Optional[float] = ..., values: _Optional[_Iterable[float]] = ..., visemes: _Optional[_Iterable[float]] = ..., audio_end: _Optional[float] = ...) -> None: ...
    class End(_message.Message):
        __slots__ = ("frames", "dropped")
        FRAMES_FIELD_NUMBER: _ClassVar[int]
        DROPPED_FIELD_NUMBER: _ClassVar[int]
        frames: int
        dropped: int
        def __init__(self, frames: _Optional[int] = ..., dropped: _Optional[int] = ...) -> None: ...
    class Error(_message.Message):
        __slots__ = ("message",)
        MESSAGE_FIELD_NUMBER: _ClassVar[int]
        message: str
        def __init__(self, message: _Optional[str] = ...) -> None: ...
    HEADER_FIELD_NUMBER: _ClassVar[int]
    FRAME_FIELD_NUMBER: _ClassVar[int]
    END_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    header: StreamResponse.Header
    frame: StreamResponse.Frame
    end: StreamResponse.End
    error: StreamResponse.Error
    def __init__(self, header: _Optional[_Union[StreamResponse.Header, _Mapping]] = ..., frame: _Optional[_Union[StreamResponse.Frame, _Mapping]] = ..., end: _Optional[_Union[StreamResponse.End, _Mapping]] = ..., error: _Optional[_Union[StreamResponse.Error, _Mapping]] = ...) -> None: ...
