"""Flite's English clustergen voices as a third TTS engine, with the synthesizer's own segment
times.

``flite -voice NAME -psdur -t TEXT -o out.wav`` writes the waveform and prints the Segment
relation on stdout as ``phone:end_time`` pairs, in the same lower-case "radio" ARPAbet phoneset
as Festival (``pau`` for silence).

Voices (Debian package ``flite``): ``awb`` (Scottish English male) and ``rms`` (US English
male), statistical parametric (clustergen) voices trained on recordings of two CMU ARCTIC
speakers, so they add speakers that neither espeak-ng nor Festival has. Flite's other voices are
left out: ``kal``/``kal16`` is Festival's ``kal`` speaker, a test voice of the shipped split, and
its printed segment times run past the audio; ``slt`` is the speaker of ``festival:slt``.
Flite falls back to its default voice on an unknown name, so the name is checked here.
"""

from __future__ import annotations

import subprocess
import tempfile
from pathlib import Path

import numpy as np

from audio2anim.audio import read_audio

from ..corpus import PhoneSegment, segments_from_ends
from . import binary
from .engine import StretchEngine

VOICES: tuple[str, ...] = ("awb", "rms")
_SILENCE = {"pau"}


def parse_psdur(text: str, duration: float, where: str = "<psdur>") -> list[PhoneSegment]:
    """``flite -psdur`` output (``pau:0.176 dh:0.284 …``) → contiguous ARPAbet segments
    covering [0, duration]."""
    ends: list[tuple[float, str]] = []
    for token in text.split():
        phone, sep, end = token.rpartition(":")
        try:
            if not sep or not phone:
                raise ValueError
            ends.append((float(end), phone))
        except ValueError:
            raise ValueError(f"{where}: bad segment {token!r} (expected phone:end_time)") from None
    if not ends:
        raise ValueError(f"{where}: no segments")
    return segments_from_ends(ends, duration, _SILENCE)


def synth(
    text: str, voice: str = "rms", duration_stretch: float = 1.0
) -> tuple[np.ndarray, int, list[PhoneSegment]]:
    """Speak ``text`` with a Flite voice → (float32 samples, rate, ARPAbet segments).

    ``duration_stretch`` > 1 speaks slower (Flite's ``duration_stretch`` feature).
    """
    binary.require("flite", voice, VOICES, "flite")
    with tempfile.TemporaryDirectory(prefix="a2a-flite-") as tmp:
        wav = Path(tmp) / "out.wav"
        cmd = ["flite", "-voice", voice, "--setf", f"duration_stretch={duration_stretch:.3f}"]
        proc = subprocess.run(
            [*cmd, "-psdur", "-t", text, "-o", str(wav)],
            capture_output=True,
            text=True,
            timeout=120,
        )
        if proc.returncode != 0 or not wav.exists():
            raise RuntimeError(f"flite ({voice}) failed for {text!r}: {proc.stderr.strip()[-300:]}")
        audio, rate = read_audio(wav)
        segments = parse_psdur(proc.stdout, len(audio) / rate, f"flite ({voice})")
    return audio, rate, segments


ENGINE = StretchEngine("flite", VOICES, synth)
