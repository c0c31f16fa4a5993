"""``feature.visemes``: 16 kHz audio → per-frame Oculus visemes, streaming.

Sits after ``resample`` and before a viseme predictor (the viseme method)::

    src → rs (resample 16000) → vis (feature.visemes) → pred (predictor.viseme_mlp|cnn) → smooth → …

Ports: ``in`` `Audio` (16 kHz mono) → ``out`` `Visemes` (IDs + probabilities [frames, 15] of
the 15 Oculus visemes, at ``frame_rate``). A packet's media time is that of its first frame;
frame j of a 50 Hz stream covers the audio [20 j, 20 j + 20) ms.

Backends (``backend``):

- ``torch`` (default) / ``onnx``: the trained viseme front end (``model``, default
  ``checkpoints/viseme-frontend``): log-mel frames (`models.logmel.LogMelStream`, 100 Hz) →
  causal convs + GRU → posteriors, carried across packets (`models.viseme_frontend.VisemeStream`;
  ONNX Runtime runs the exported stateful graph). The model labels each 10 ms frame after
  hearing ``lookahead`` more frames (40 ms for the shipped model): that is this operator's
  ``latency()``, plus 10 ms at 50 Hz (a 20 ms frame averages two 10 ms ones, so its first half
  waits for its second). The output equals the offline
  ``downsample_posteriors(front.posteriors(logmel(audio)))`` whatever the block sizes.
- ``pocketsphinx``: phone-loop recognition (no words, no language model beyond phone bigrams)
  with the en-us acoustic model of the pocketsphinx wheel; ARPAbet phones → visemes
  (`audio2anim.visemes.viseme_of`), one-hot probabilities. The decoder is fed every block; a frame
  leaves once the partial hypothesis has moved ``stable_ms`` past it (its phone rarely
  changes after that), which is this backend's ``latency()``. A new utterance starts every
  ``restart_s`` seconds so memory stays bounded on endless live input.

Params: ``model``, ``backend``, ``frame_rate`` (50 = what the viseme predictors take, or 100),
``viseme_bias`` (trained front end only: log-odds offsets per viseme, e.g. ``{PP: 1.5}``, that
replace the checkpoint's own ``viseme_bias``; ``{}`` = none: each posterior is reweighted by
e^(new − stored) and renormalized, which is what the model would output with that bias),
``stable_ms`` and ``restart_s`` (pocketsphinx only).

Example node::

    vis: {op: feature.visemes, params: {model: checkpoints/viseme-frontend, frame_rate: 50}}
    vis: {op: feature.visemes, params: {backend: pocketsphinx, stable_ms: 120}}
    vis: {op: feature.visemes, params: {viseme_bias: {PP: 1.5}}}   # lips close more eagerly
"""

from __future__ import annotations

from typing import Literal

import numpy as np
from pydantic import Field, field_validator, model_validator

from audio2anim.audio import MODEL_RATE as SAMPLE_RATE
from audio2anim.graph.operator import Operator, OperatorParams, Outputs, Port
from audio2anim.graph.packets import Packet
from audio2anim.graph.registry import register
from audio2anim.resources import require_checkpoint
from audio2anim.streams import Audio, Visemes
from audio2anim.visemes import N_VISEMES

from .torch_threads import configure_torch_threads

FRAME_S = 0.01  # the recognizers' native frame: 10 ms


class VisemeFeatureParams(OperatorParams):
    model: str = Field(
        "checkpoints/viseme-frontend", description="viseme front-end checkpoint directory"
    )
    backend: Literal["torch", "onnx", "pocketsphinx"] = Field(
        "torch", description="trained front end (torch or ONNX Runtime) or pocketsphinx phones"
    )
    frame_rate: Literal[50, 100] = Field(
        50, description="output frames per second (50: pairs of 10 ms frames averaged)"
    )
    stable_ms: float = Field(
        120.0, ge=0, le=2000, description="pocketsphinx: age of a frame before it is emitted"
    )
    restart_s: float = Field(
        20.0, ge=1, le=600, description="pocketsphinx: start a new utterance after this long"
    )
    viseme_bias: dict[str, float] | None = Field(
        None,
        description="trained front end: log-odds offset per viseme, e.g. {PP: 1.5}, replacing "
        "the checkpoint's (None: the checkpoint's; {}: none)",
    )

    @field_validator("viseme_bias")
    @classmethod
    def _known_visemes(cls, bias):
        from audio2anim.models.class_bias import check_bias_names
        from audio2anim.visemes import VISEMES

        check_bias_names(bias or {}, VISEMES, "viseme_bias", "viseme")
        return bias

    @model_validator(mode="after")
    def _bias_needs_a_model(self):
        if self.viseme_bias is not None and self.backend == "pocketsphinx":
            raise ValueError("viseme_bias applies to the trained front end (backend torch or onnx)")
        return self


class TorchFrontEndStream:
    """Log-mel + `VisemeStream`: push(samples) → 100 Hz posteriors of the completed frames."""

    def __init__(self, model_dir) -> None:
        from audio2anim.models.checkpoint import load
        from audio2anim.models.logmel import LogMelConfig

        model, side = load(model_dir)
        self.model = model
        self.cfg = LogMelConfig.from_dict(_logmel_config(side))
        self.reset()

    def reset(self) -> None:
        from audio2anim.models.logmel import LogMelStream
        from audio2anim.models.viseme_frontend import VisemeStream

        self.logmel = LogMelStream(self.cfg)
        self.stream = VisemeStream(self.model)

    def push(self, samples: np.ndarray) -> np.ndarray:
        return self.stream.push(self.logmel.push(samples))

    def flush(self) -> np.ndarray:
        return self.stream.flush()


class OnnxFrontEndStream:
    """The exported stateful front-end graph (history + GRU state carried between calls), with
    log-mel: push(samples) → 100 Hz posteriors. Both backends are timed by bench/model_cost.py."""

    def __init__(self, model_dir) -> None:
        from audio2anim.models.logmel import LogMelConfig
        from audio2anim.models.onnx_export import OnnxModel
        from audio2anim.models.predictor_stream import export_to_temp
        from audio2anim.models.viseme_frontend import SILENCE_LOGMEL

        path, self._tmp = export_to_temp(model_dir)
        self.onnx = OnnxModel(path)
        self.cfg = LogMelConfig.from_dict(_logmel_config(self.onnx.meta))
        self.silence = SILENCE_LOGMEL
        self.reset()

    def reset(self) -> None:
        from audio2anim.models.logmel import LogMelStream

        hp = self.onnx.hp
        self.logmel = LogMelStream(self.cfg)
        pad = hp["conv_layers"] * (hp["kernel"] - 1)
        self.history = np.zeros((1, hp["n_mels"], pad), np.float32)
        self.h0 = np.zeros((1, 1, hp["hidden"]), np.float32)
        self.skip = hp["lookahead"]  # the first outputs label frames before the stream
        self.seen = 0

    def _run(self, lm: np.ndarray) -> np.ndarray:
        if len(lm) == 0:
            return np.zeros((0, N_VISEMES), np.float32)
        self.seen += len(lm)
        feeds = {"logmel": lm[None].astype(np.float32), "history": self.history, "h0": self.h0}
        probs, self.history, self.h0 = self.onnx.session.run(None, feeds)
        drop = min(self.skip, probs.shape[1])
        self.skip -= drop
        return probs[0, drop:]

    def push(self, samples: np.ndarray) -> np.ndarray:
        return self._run(self.logmel.push(samples))

    def flush(self) -> np.ndarray:
        hp = self.onnx.hp
        n = hp["lookahead"] if self.seen else 0
        return self._run(np.full((n, hp["n_mels"]), self.silence, np.float32))


def _reweight(model_dir, asked: dict[str, float]) -> np.ndarray:
    """e^(asked − stored bias) per viseme: posteriors times this, renormalized, are those of
    the model with ``asked`` as its ``viseme_bias``."""
    from audio2anim.models.checkpoint import read_sidecar
    from audio2anim.visemes import VISEMES

    stored = read_sidecar(model_dir)["hparams"].get("viseme_bias", {})
    delta = [asked.get(v, 0.0) - stored.get(v, 0.0) for v in VISEMES]
    return np.exp(np.asarray(delta, np.float32))


def _logmel_config(sidecar: dict) -> dict:
    from audio2anim.models.logmel import LogMelConfig

    feat = dict(sidecar.get("feature", {}))
    feat.pop("kind", None)
    names = LogMelConfig.__dataclass_fields__
    return {k: v for k, v in feat.items() if k in names}


class PocketsphinxVisemes:
    """Streaming phone-loop decoding (see the module docstring): ``push(samples)`` of 16 kHz
    audio → one-hot visemes [frames, 15] of the 10 ms frames now ``stable_ms`` old;
    ``flush()`` → the rest. Also used by bench/real_speech.py to score it offline."""

    def __init__(self, stable_ms: float, restart_s: float) -> None:
        import os

        from pocketsphinx import Decoder, get_model_path

        from audio2anim.visemes import viseme_of

        base = os.path.join(get_model_path(), "en-us")
        self.decoder = Decoder(
            hmm=os.path.join(base, "en-us"),
            allphone=os.path.join(base, "en-us-phone.lm.bin"),
            lw=2.0,
            beam=1e-20,
            pbeam=1e-20,
            samprate=SAMPLE_RATE,
            loglevel="FATAL",
        )
        self.viseme_of = viseme_of
        self.stable = round(stable_ms / 1000 / FRAME_S)
        self.restart = round(restart_s * SAMPLE_RATE)
        self.eye = np.eye(N_VISEMES, dtype=np.float32)
        self._start()

    def reset(self) -> None:
        if self.in_utterance:
            self.decoder.end_utt()
        self._start()

    def _start(self) -> None:
        self.decoder.start_utt()
        self.in_utterance = True
        self.utt_samples = 0
        self.utt_emitted = 0  # frames of this utterance already emitted

    def _viseme(self, phone: str) -> int:
        try:
            return self.viseme_of(phone, "arpabet")
        except ValueError:  # a filler or noise unit the table does not know: no lip shape
            return 0

    def _frames(self, upto: int) -> np.ndarray:
        """One-hot visemes of this utterance's frames [utt_emitted, upto) from the current
        (partial or final) segmentation; frames no segment covers are silence."""
        n = upto - self.utt_emitted
        if n <= 0:
            return np.zeros((0, N_VISEMES), np.float32)
        ids = np.zeros(n, np.int64)
        for seg in self.decoder.seg() or ():
            a = max(seg.start_frame, self.utt_emitted)
            b = min(seg.end_frame + 1, upto)
            if b > a:
                ids[a - self.utt_emitted : b - self.utt_emitted] = self._viseme(seg.word)
        self.utt_emitted = upto
        return self.eye[ids]

    def push(self, samples: np.ndarray) -> np.ndarray:
        pcm = (np.clip(samples, -1.0, 1.0) * 32767).astype(np.int16)
        self.decoder.process_raw(pcm.tobytes(), False, False)
        self.utt_samples += len(pcm)
        if self.utt_samples >= self.restart:
            out = self._end()
            self._start()
            return out
        return self._frames(self.utt_samples // 160 - self.stable)

    def _end(self) -> np.ndarray:
        self.decoder.end_utt()
        self.in_utterance = False
        return self._frames(self.utt_samples // 160)

    def flush(self) -> np.ndarray:
        return self._end()


@register("feature.visemes")
class VisemeFeatures(Operator):
    """16 kHz audio → Oculus viseme IDs and probabilities (trained front end or pocketsphinx)."""

    Params = VisemeFeatureParams
    inputs = {"in": Port(Audio, doc="16 kHz mono audio")}
    outputs = {"out": Port(Visemes, doc="viseme IDs + probabilities at frame_rate")}
    executor = "thread"

    @classmethod
    def required_modules(cls, params: VisemeFeatureParams) -> tuple[str, ...]:
        return ("pocketsphinx",) if params.backend == "pocketsphinx" else ()

    def setup(self) -> None:
        p = self.params
        configure_torch_threads()
        self.reweight = None  # posteriors as the model gives them
        if p.backend == "pocketsphinx":
            self.recognizer = PocketsphinxVisemes(p.stable_ms, p.restart_s)
        else:
            model_dir = require_checkpoint(p.model, "feature.visemes: model")
            cls = TorchFrontEndStream if p.backend == "torch" else OnnxFrontEndStream
            self.recognizer = cls(model_dir)
            if p.viseme_bias is not None:
                self.reweight = _reweight(model_dir, p.viseme_bias)
        # first calls allocate; pay for that here, not on the first live packet
        self.recognizer.push(np.zeros(SAMPLE_RATE // 2, np.float32))
        self.recognizer.flush()
        self.recognizer.reset()
        self.factor = 100 // p.frame_rate
        self.pending = np.zeros((0, N_VISEMES), np.float32)  # 10 ms frames not yet paired
        self.start: float | None = None
        self.emitted = 0

    def latency(self) -> float:
        p = self.params
        pairing = FRAME_S if p.frame_rate == 50 else 0.0
        if p.backend == "pocketsphinx":
            return p.stable_ms / 1000 + pairing
        try:
            from audio2anim.models.checkpoint import read_sidecar

            side = read_sidecar(require_checkpoint(p.model, "feature.visemes: model"))
            return side["hparams"]["lookahead"] * FRAME_S + pairing
        except (OSError, ValueError, KeyError):
            return pairing

    def process(self, port: str, packet: Packet) -> Outputs:
        configure_torch_threads()
        audio: Audio = packet.payload
        audio.require_rate(SAMPLE_RATE, "feature.visemes")
        if self.start is None:
            self.start = packet.media_time
        return self._emit(self.recognizer.push(audio.samples))

    def flush(self) -> Outputs:
        configure_torch_threads()
        return self._emit(self.recognizer.flush())

    def _emit(self, probs: np.ndarray) -> Outputs:
        if len(probs) == 0:
            return None
        if self.reweight is not None:
            probs = probs * self.reweight
            probs /= probs.sum(axis=1, keepdims=True)
        x = np.concatenate([self.pending, probs]) if len(self.pending) else probs
        n = len(x) // self.factor
        self.pending = x[n * self.factor :]
        if n == 0:
            return None
        x = x[: n * self.factor].reshape(n, self.factor, N_VISEMES).mean(axis=1)
        x = np.ascontiguousarray(x, dtype=np.float32)
        t = (self.start or 0.0) + self.emitted / self.params.frame_rate
        self.emitted += n
        payload = Visemes(x.argmax(axis=1), x, float(self.params.frame_rate))
        return (Packet(payload, t),)
