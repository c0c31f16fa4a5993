"""Streaming viseme recognizers: 16 kHz audio → per-10 ms-frame viseme probabilities [frames, 15].

Each recognizer has ``push(samples)`` → the probabilities of the frames completed so far,
``flush()`` → the rest at end of stream, and ``reset()`` → a fresh stream.

- `TorchFrontEndStream`: the trained viseme front end (a `models.viseme_frontend` checkpoint):
  log-mel frames (`models.logmel.LogMelStream`, 100 Hz) → causal convs + GRU → posteriors,
  carried across calls (`models.viseme_frontend.VisemeStream`). A frame's posteriors come out
  ``lookahead`` frames after it (40 ms for the shipped model). The concatenated output equals
  the offline ``front.posteriors(logmel(audio))`` whatever the block sizes.
- `OnnxFrontEndStream`: the same through ONNX Runtime (the exported stateful graph; history and
  GRU state carried between calls, as inputs and outputs of each call, so the call can be
  batched with other sessions': ``batching``, `audio2anim.models.model_call`).
  Both are timed by bench/model_cost.py.
- `PocketsphinxVisemes`: phone-loop recognition (no words, no language model beyond phone
  bigrams) with the en-us acoustic model of the pocketsphinx wheel; ARPAbet phones → visemes
  (`audio2anim.visemes.viseme_of`), one-hot probabilities. The decoder is fed every block; a
  frame leaves once the partial hypothesis has moved ``stable_ms`` past it (its phone rarely
  changes after that). A new utterance starts every ``restart_s`` seconds so memory stays
  bounded on endless input.

`bias_reweighting(model_dir, asked)` gives the factors per viseme that turn a front end's
posteriors into those it would give with ``asked`` as its ``viseme_bias``;
`frontend_lookahead_s(model_dir)` is how long a front end waits before labelling a frame.
"""

from __future__ import annotations

import numpy as np

from audio2anim.audio import MODEL_RATE as SAMPLE_RATE
from audio2anim.models.model_call import arun_steps, run_steps
from audio2anim.visemes import N_VISEMES

FRAME_S = 0.01  # the recognizers' native frame: 10 ms


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
    log-mel: push(samples) → 100 Hz posteriors."""

    def __init__(self, model_dir, batching=None) -> None:
        from audio2anim.models.logmel import SILENCE_LOGMEL, LogMelConfig
        from audio2anim.models.model_call import model_call
        from audio2anim.models.predictor_stream import cached_onnx_model

        self.onnx = cached_onnx_model(model_dir)
        # the GRU state's batch axis is 1 ([layers, B, hidden]), in and out
        self.call = model_call(self.onnx, batching, {"h0": 1, "h1": 1})
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

    def _run(self, lm: np.ndarray):
        """The body of `push` and `flush`: one model call (yielded, see
        `audio2anim.models.model_call.run_steps`) for the log-mel frames ``lm``."""
        if len(lm) == 0:
            return np.zeros((0, N_VISEMES), np.float32)
        self.seen += len(lm)
        feeds = {"logmel": lm[None].astype(np.float32), "history": self.history, "h0": self.h0}
        out = yield feeds
        probs, self.history, self.h0 = out["probs"], out["history_out"], out["h1"]
        drop = min(self.skip, probs.shape[1])
        self.skip -= drop
        return probs[0, drop:]

    def _tail(self) -> np.ndarray:
        hp = self.onnx.hp
        n = hp["lookahead"] if self.seen else 0
        return np.full((n, hp["n_mels"]), self.silence, np.float32)

    def push(self, samples: np.ndarray) -> np.ndarray:
        return run_steps(self._run(self.logmel.push(samples)), self.call)

    def flush(self) -> np.ndarray:
        return run_steps(self._run(self._tail()), self.call)

    async def apush(self, samples: np.ndarray) -> np.ndarray:
        """`push`, its model call awaited (a batched caller's ``acall``)."""
        return await arun_steps(self._run(self.logmel.push(samples)), self.call.acall)

    async def aflush(self) -> np.ndarray:
        return await arun_steps(self._run(self._tail()), self.call.acall)


def bias_reweighting(model_dir, asked: dict[str, float]) -> np.ndarray:
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
    ``flush()`` → the rest. bench/real_speech.py scores it offline."""

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


def frontend_lookahead_s(model_dir) -> float:
    """Seconds of audio a trained front end hears past a frame before labelling it."""
    from audio2anim.models.checkpoint import read_sidecar

    return read_sidecar(model_dir)["hparams"]["lookahead"] * FRAME_S
