"""espeak-ng through its C library (ctypes), with exact phoneme timings: the speech of the
``espeak:`` voices (`audio2anim.data.tts.espeak`) and the pronunciations of `audio2anim.data.g2p`.

``libespeak-ng.so.1`` initialized with ``AUDIO_OUTPUT_SYNCHRONOUS`` and
``espeakINITIALIZE_PHONEME_EVENTS`` calls our synth callback with the audio and with
``espeakEVENT_PHONEME`` events whose ``audio_position`` (ms from the start of the message) is
where the phoneme starts in that audio. The library keeps global state, so one `ESpeak` per
process, guarded by a lock; worker processes each make their own.

Phoneme names are espeak's own English mnemonics (``S``, ``i:``, ``@2``, ``o@``, …); pauses
(``_``, ``_:``, ``_!``, …) become ``sil``. See `audio2anim.visemes` for their visemes.
"""

from __future__ import annotations

import ctypes
import threading

import numpy as np

from .corpus import PhoneSegment

_AUDIO_OUTPUT_SYNCHRONOUS = 2
_INITIALIZE_PHONEME_EVENTS = 0x0001
_EVENT_LIST_TERMINATED = 0
_EVENT_PHONEME = 7
_CHARS_UTF8 = 1
_PARAM_RATE = 1
_PARAM_VOLUME = 2
_PARAM_PITCH = 3
_PARAM_RANGE = 4


class _Event(ctypes.Structure):
    # espeak_EVENT from speak_lib.h (API revision 12)
    _fields_ = [
        ("type", ctypes.c_int),
        ("unique_identifier", ctypes.c_uint),
        ("text_position", ctypes.c_int),
        ("length", ctypes.c_int),
        ("audio_position", ctypes.c_int),
        ("sample", ctypes.c_int),
        ("user_data", ctypes.c_void_p),
        ("id", ctypes.c_char * 8),
    ]


_Callback = ctypes.CFUNCTYPE(
    ctypes.c_int, ctypes.POINTER(ctypes.c_short), ctypes.c_int, ctypes.POINTER(_Event)
)


def is_pause(name: str) -> bool:
    """espeak reports pauses as phonemes named ``_``, ``_:``, ``_!``, ``_^_`` and so on."""
    return name.startswith("_")


class ESpeak:
    """One espeak-ng engine in this process. ``synth`` returns audio and phone segments."""

    _lock = threading.Lock()
    _instance: ESpeak | None = None

    def __new__(cls) -> ESpeak:
        with cls._lock:
            if cls._instance is None:
                self = super().__new__(cls)
                self._init_library()
                cls._instance = self
            return cls._instance

    def _init_library(self) -> None:
        try:
            self._lib = ctypes.CDLL("libespeak-ng.so.1")
        except OSError as exc:
            raise RuntimeError(
                "libespeak-ng.so.1 not found: install the Debian package libespeak-ng1 (setup.sh)"
            ) from exc
        rate = self._lib.espeak_Initialize(
            _AUDIO_OUTPUT_SYNCHRONOUS, 0, None, _INITIALIZE_PHONEME_EVENTS
        )
        if rate <= 0:
            raise RuntimeError(f"espeak_Initialize failed (returned {rate})")
        self.sample_rate = int(rate)
        self._chunks: list[np.ndarray] = []
        self._events: list[tuple[int, str]] = []
        self._callback = _Callback(self._on_synth)  # keep a reference: C holds the pointer
        self._lib.espeak_SetSynthCallback(self._callback)

    def _on_synth(self, wav, n_samples, events) -> int:
        if n_samples > 0:
            self._chunks.append(np.ctypeslib.as_array(wav, (n_samples,)).copy())
        i = 0
        while events[i].type != _EVENT_LIST_TERMINATED:
            event = events[i]
            if event.type == _EVENT_PHONEME:
                name = event.id.decode("utf-8", errors="replace").rstrip("\x00")
                self._events.append((event.audio_position, name))
            i += 1
        return 0

    def synth(
        self, text: str, voice: str = "en-us", rate: int = 175, pitch: int = 50, range_: int = 50
    ) -> tuple[np.ndarray, int, list[PhoneSegment]]:
        """Speak ``text``; returns (float32 samples, sample rate, espeak phone segments).

        ``voice`` is an espeak voice name with an optional variant (``en-gb+f3``); ``rate`` in
        words per minute (80–450), ``pitch`` and ``range_`` 0–100. Segments cover the audio
        exactly; pauses and the lead-in/out are ``sil``.
        """
        with self._lock:
            if self._lib.espeak_SetVoiceByName(voice.encode()) != 0:
                raise ValueError(f"espeak-ng: unknown voice {voice!r}")
            self._lib.espeak_SetParameter(_PARAM_RATE, int(rate), 0)
            self._lib.espeak_SetParameter(_PARAM_PITCH, int(pitch), 0)
            self._lib.espeak_SetParameter(_PARAM_RANGE, int(range_), 0)
            self._lib.espeak_SetParameter(_PARAM_VOLUME, 100, 0)
            self._chunks, self._events = [], []
            data = text.encode("utf-8") + b"\x00"
            err = self._lib.espeak_Synth(data, len(data), 0, 0, 0, _CHARS_UTF8, None, None)
            if err != 0:
                raise RuntimeError(f"espeak_Synth failed with error {err} for {text!r}")
            self._lib.espeak_Synchronize()
            chunks, events = self._chunks, self._events
        audio = (np.concatenate(chunks) if chunks else np.zeros(0, np.int16)).astype(np.float32)
        audio /= 32768.0
        duration = len(audio) / self.sample_rate
        return audio, self.sample_rate, segments_from_events(events, duration)


def segments_from_events(events: list[tuple[int, str]], duration: float) -> list[PhoneSegment]:
    """Phoneme start events (ms, name) → contiguous segments covering [0, duration].

    A phoneme lasts until the next event; zero-length phonemes (two events at one time) are
    dropped; consecutive pauses merge into one ``sil``.
    """
    starts: list[tuple[float, str]] = [(0.0, "sil")]
    for ms, name in events:
        t = min(ms / 1000.0, duration)
        phone = "sil" if is_pause(name) else name
        if t <= starts[-1][0]:
            starts[-1] = (starts[-1][0], phone)
            continue
        starts.append((t, phone))
    segments: list[PhoneSegment] = []
    for i, (t, phone) in enumerate(starts):
        end = starts[i + 1][0] if i + 1 < len(starts) else duration
        if end <= t:
            continue
        if segments and segments[-1].phone == "sil" and phone == "sil":
            segments[-1] = PhoneSegment(segments[-1].start, end, "sil")
        else:
            segments.append(PhoneSegment(t, end, phone))
    return segments
