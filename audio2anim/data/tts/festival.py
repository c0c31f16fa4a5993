"""Festival's English voices as a second TTS engine, with the synthesizer's own segment times.

Festival is driven in batch mode (``festival -b script.scm``): the script selects a voice,
synthesizes the text, and saves the waveform (``utt.save.wave``) and the Segment relation
(``utt.save.segs``: one ``end_time 100 phone`` line per segment). Festival's English voices use
the lower-case "radio" ARPAbet phoneset (``pau`` for silence), which we upper-case to ARPAbet.

Voices (Debian packages): ``kal`` (festvox-kallpc16k, US male diphone), ``ked``
(festvox-kdlpc16k, US male diphone), ``slt`` (festvox-us-slt-hts, US female HTS).
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

VOICES: dict[str, str] = {
    "kal": "voice_kal_diphone",
    "ked": "voice_ked_diphone",
    "slt": "voice_cmu_us_slt_arctic_hts",
}
_SILENCE = {"pau", "h#", "sil", "#"}


def _scheme_string(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def parse_segs(text: str, duration: float, where: str = "<segs>") -> list[PhoneSegment]:
    """``utt.save.segs`` output → contiguous ARPAbet segments covering [0, duration]."""
    ends: list[tuple[float, str]] = []
    body = text.split("#", 1)[1] if "#" in text else text
    for line in body.splitlines():
        parts = line.split()
        if len(parts) < 3:
            continue
        try:
            end = float(parts[0])
        except ValueError:
            raise ValueError(f"{where}: bad segment line {line!r}") from None
        ends.append((end, parts[2]))
    return segments_from_ends(ends, duration, _SILENCE)


def synth(
    text: str, voice: str = "kal", duration_stretch: float = 1.0
) -> tuple[np.ndarray, int, list[PhoneSegment]]:
    """Speak ``text`` with a Festival voice → (float32 samples, rate, ARPAbet segments).

    ``duration_stretch`` > 1 speaks slower (Festival's ``Duration_Stretch`` parameter).
    """
    binary.require("festival", voice, VOICES, "festival")
    with tempfile.TemporaryDirectory(prefix="a2a-festival-") as tmp:
        wav, segs, script = Path(tmp) / "out.wav", Path(tmp) / "out.segs", Path(tmp) / "in.scm"
        script.write_text(
            f"({VOICES[voice]})\n"
            f"(Parameter.set 'Duration_Stretch {float(duration_stretch):.3f})\n"
            f"(set! utt (Utterance Text {_scheme_string(text)}))\n"
            "(utt.synth utt)\n"
            f"(utt.save.wave utt {_scheme_string(str(wav))} 'riff)\n"
            f"(utt.save.segs utt {_scheme_string(str(segs))})\n"
        )
        proc = subprocess.run(
            ["festival", "-b", str(script)], capture_output=True, text=True, timeout=120
        )
        if proc.returncode != 0 or not wav.exists() or not segs.exists():
            raise RuntimeError(
                f"festival ({voice}) failed for {text!r}: {proc.stderr.strip()[-300:]}"
            )
        audio, rate = read_audio(wav)
        segments = parse_segs(segs.read_text(), len(audio) / rate, str(segs))
    return audio, rate, segments


ENGINE = StretchEngine("festival", VOICES, synth)
