"""The live recipe of the Whisper viseme front end: a fine-tuned encoder on short windows of a
cached log-mel, as `bench/whisper_stream.py` scores it.

A ``whisper-viseme-head`` checkpoint is *live* when its sidecar carries ``"encoder_weights"``
(a safetensors file of the checkpoint folder: encoder tensors under Hugging Face's
``model.encoder.*`` names, laid over the base encoder's) and ``"streaming"`` (``window_s``,
``hop_s``, ``lookahead_s``: the settings it was scored with; ``trained_lookahead_frames``:
[lo, hi], the lookaheads its head was trained on). `LiveWhisperStream` then runs:

1. Log-mel cache: Whisper's STFT (Hann 400, hop 160), power, its mel filters, log10 floored at
   1e-10, computed once over the stream; mel frame j is centred at sample 160 j. Before the
   stream starts the audio is digital silence (zeros); at its end (``flush``) zeros follow.
2. Every hop of H encoder frames, the window of the last W encoder frames (2W mel frames)
   ending at E (a multiple of H from the stream's start), normalised as Whisper normalises one
   input: floored at the window's maximum − 8, scaled (x + 4) / 4.
3. The head (its layers side by side, each frame with its ``context`` neighbours, all from the
   same window) on frames E − L − H … E − L − 1 of that window: frame k gets the lookahead
   E − 1 − k ∈ [L, L + H − 1] frames. (A window that emits fewer frames — the stream's
   first, or one cut short by ``flush`` or the frames available — emits some of these.)

The encoder runs in torch, or in ONNX Runtime (``onnx``: the `OnnxModel` of the checkpoint's
export, `audio2anim.models.onnx_export.cached_export`). Encoder and head together are one
model call — normalized mel windows → the head's log-posteriors of those H frames of each
window (fixed positions, W − L − H … W − L − 1), no state of the stream's — so with
``batching`` (`audio2anim.models.model_call.ModelBatching`, from ``audio2anim serve``) the
windows of many sessions go through one call, the head included, and a session only slices
the frames it emits; the service's device ``cuda`` runs that call on a copy of the encoder
and the head on the GPU.

Algorithmic latency: the oldest frame of a hop waits L + H − 1 frames after its end, plus
2.5 ms (the last mel frame's Hann window reaches 40 samples past the window's end):
(L + H − 1) · 20 ms + 2.5 ms (122.5 ms for W = 1 s, L = 100 ms, H = 40 ms).
"""

from __future__ import annotations

import copy
import math
from types import SimpleNamespace

import numpy as np
import torch

from audio2anim.models.model_call import arun_steps, run_steps
from audio2anim.visemes import N_VISEMES

N_FFT, MEL_HOP = 400, 160
FRAME_SAMPLES = 320
FRAME_RATE = 50
SAMPLE_RATE = 16000
MEL_REACH = N_FFT // 2 - MEL_HOP  # samples the last mel frame of a window reads past its end
SILENCE_LOG10 = -10.0
BATCH = 16  # windows per encoder call when several are due at once


def live_latency_s(hop: int, lookahead: int) -> float:
    """Algorithmic latency (seconds) of the live recipe: hop and lookahead in encoder frames."""
    return (lookahead + hop - 1) / FRAME_RATE + MEL_REACH / SAMPLE_RATE


class LiveWhisperStream:
    """16 kHz samples → viseme posteriors [k, 15] at 50 Hz by the live recipe (module doc).
    ``push``/``flush``/``reset`` as `audio2anim.models.whisper_head.WhisperVisemeStream`; over a
    stream the output has ``len(samples) // 320`` frames, frame j covering [20 j, 20 j + 20) ms."""

    def __init__(
        self, whisper, head, window: int, hop: int, lookahead: int, onnx=None, batching=None
    ) -> None:
        if hop < 1 or lookahead < head.context or hop + lookahead > window:
            raise ValueError(
                f"live windows: need 1 ≤ hop, lookahead ≥ the head's context ({head.context}) "
                f"and hop + lookahead ≤ window (frames {hop}, {lookahead}, {window})"
            )
        self.whisper, self.head, self.onnx = whisper, head.eval(), onnx
        self.window, self.hop, self.lookahead = window, hop, lookahead
        self.hann = torch.hann_window(N_FFT)
        self.filters_t = whisper.filters.T.contiguous()  # [n_mels, 201]
        if batching is None:
            self.encode = self._encoder("cpu")
        else:
            where = "torch" if onnx is None else str(onnx.path)
            # the encoder's identity, not the object's: the same key in every process (a Ray
            # Serve model worker finds the model a session calls by it)
            who = f"{whisper.source}+{getattr(whisper, 'tuned_from', '')}"
            key = (f"whisper-encoder@{who}/{head.layers}/{where}/head-{_digest(self.head)}/"
                   f"w{window}h{hop}l{lookahead}")  # fmt: skip
            self.encode = batching.caller(key, self._encoder, {})
        self.reset()

    def _encoder(self, device: str):
        """Encoder and head as one model call on ``device``: {"mel": log10 mel windows [B,
        n_mels, 2W]} (normalized here, step 2) → {"logp": the head's log-posteriors of window frames W − L − H … W − L − 1
        [B, H, 15]}."""
        layers, onnx, head = self.head.layers, self.onnx, self.head
        c, hop = head.context, self.hop
        lo = self.window - self.lookahead - hop  # the first frame the head reads
        whisper = self.whisper
        if device != "cpu":  # copies on the device; `encode_features` reads model.model.encoder
            head = copy.deepcopy(head).to(device).eval()
            enc = copy.deepcopy(whisper.model.model.encoder).to(device).eval()
            whisper = SimpleNamespace(model=SimpleNamespace(model=SimpleNamespace(encoder=enc)))
        encode_features = type(self.whisper).encode_features

        def run(feeds):
            with torch.inference_mode():
                mel = torch.from_numpy(feeds["mel"]).to(device)
                mel = _normalized(mel)
                if device == "cpu" and onnx is not None:
                    feats = torch.from_numpy(onnx.states(mel.numpy()))
                else:
                    states = encode_features(whisper, mel, layers=True)
                    feats = torch.cat([states[k] for k in layers], -1).float()
                f = feats[:, lo - c : lo + hop + c]  # [B, H + 2c, D]
                ctx = torch.cat([f[:, j : j + hop] for j in range(2 * c + 1)], -1)
                logp = head(ctx.reshape(len(f) * hop, -1)).reshape(len(f), hop, -1)
                return {"logp": logp.cpu().numpy()}

        return run

    @property
    def latency_frames(self) -> int:
        return self.lookahead + self.hop - 1

    def latency_s(self) -> float:
        return live_latency_s(self.hop, self.lookahead)

    def reset(self) -> None:
        pad = self.window * FRAME_SAMPLES + N_FFT  # zeros before the stream: silence
        # the audio kept: _buf[_lo:_hi]; appended in place, trimmed by moving _lo
        self._buf = np.zeros(4 * pad, np.float32)
        self._lo, self._hi = 0, pad
        self.audio_start = -pad  # stream sample index of audio[0]
        self.samples = 0  # samples pushed
        self.mel = torch.zeros(self.filters_t.shape[0], 0)
        self.mel_start = self.mel_next = -2 * self.window  # mel frame index of mel[:, 0]; next
        self.emitted = 0

    # -- pieces ----------------------------------------------------------------------------

    def _end_for(self, frame: int) -> int:
        """The window end (encoder frames, on the hop grid) that emits ``frame``."""
        return math.ceil((frame + 1 + self.lookahead) / self.hop) * self.hop

    def _mel_upto(self, hi: int) -> None:
        """Compute the cached log10 mel frames up to ``hi`` (exclusive)."""
        lo = self.mel_next
        if hi <= lo:
            return
        a = MEL_HOP * lo - N_FFT // 2 - self.audio_start
        b = MEL_HOP * (hi - 1) + N_FFT // 2 - self.audio_start
        x = torch.from_numpy(self.audio[a:b].copy())
        spec = torch.stft(x, N_FFT, MEL_HOP, window=self.hann, center=False, return_complex=True)
        mel = torch.clamp(self.filters_t @ (spec.abs() ** 2), min=1e-10).log10()
        self.mel = torch.cat([self.mel, mel], 1)
        self.mel_next = hi

    def _window_input(self, end: int) -> torch.Tensor:
        """The log10 mel of the window ending at ``end`` (the model call normalizes it)."""
        a = 2 * (end - self.window) - self.mel_start
        return self.mel[:, a : a + 2 * self.window]

    def _run(self, jobs: list[tuple[int, int, int]]):
        """jobs: (window end, first frame, last frame + 1) → log-posteriors of those frames;
        each model call is yielded (`audio2anim.models.model_call.run_steps`)."""
        lo = self.window - self.lookahead - self.hop  # window frame of the call's first row
        outs = []
        for i in range(0, len(jobs), BATCH):
            chunk = jobs[i : i + BATCH]
            with torch.inference_mode():
                x = torch.stack([self._window_input(e) for e, _, _ in chunk])
            mel = np.ascontiguousarray(x.numpy(), np.float32)
            logp = (yield {"mel": mel})["logp"]  # [B, H, 15]
            for b, (e, k0, k1) in enumerate(chunk):
                # frame k is row k − (e − W) − lo: within [0, H) (module doc, step 3)
                outs.append(logp[b, k0 - (e - self.window) - lo : k1 - (e - self.window) - lo])
        if not outs:
            return np.zeros((0, N_VISEMES), np.float32)
        return np.concatenate(outs).astype(np.float32, copy=False)

    def _advance(self, limit: int):
        """Emit every frame below ``limit`` whose window's audio has arrived (a generator of
        encoder calls, as `_run`)."""
        jobs = []
        k = self.emitted
        while k < limit:
            e = self._end_for(k)
            if self.samples < FRAME_SAMPLES * e + MEL_REACH:
                break
            k1 = min(e - self.lookahead, limit)
            jobs.append((e, k, k1))
            k = k1
        if not jobs:
            return np.zeros((0, N_VISEMES), np.float32)
        with torch.inference_mode():
            self._mel_upto(2 * jobs[-1][0])
        out = yield from self._run(jobs)
        self.emitted = k
        self._trim()
        return out

    def _trim(self) -> None:
        """Drop the mel and audio no later window reads."""
        first_mel = 2 * (self._end_for(self.emitted) - self.window)
        drop = first_mel - self.mel_start
        if drop > 0:
            self.mel = self.mel[:, drop:]
            self.mel_start = first_mel
        keep = MEL_HOP * self.mel_next - N_FFT // 2  # the next mel frame's first sample
        drop = min(keep, MEL_HOP * first_mel - N_FFT // 2) - self.audio_start
        if drop > 0:
            self._lo += drop
            self.audio_start += drop

    @property
    def audio(self) -> np.ndarray:
        """The samples kept, from stream sample ``audio_start`` (a view)."""
        return self._buf[self._lo : self._hi]

    def _append(self, x: np.ndarray) -> None:
        n = self._hi - self._lo
        if self._hi + len(x) > len(self._buf):  # move what is kept to the front, or grow
            buf = self._buf if 2 * (n + len(x)) <= len(self._buf) else (
                np.empty(2 * (n + len(x)), np.float32))  # fmt: skip
            buf[:n] = self._buf[self._lo : self._hi]
            self._buf, self._lo, self._hi = buf, 0, n
        self._buf[self._hi : self._hi + len(x)] = x
        self._hi += len(x)
        self.samples += len(x)

    # -- the stream ------------------------------------------------------------------------

    def _push(self, samples: np.ndarray):
        self._append(np.asarray(samples, np.float32).reshape(-1))
        out = yield from self._advance(self.samples // FRAME_SAMPLES - self.lookahead)
        return np.exp(out)

    def _flush(self):
        n = self.samples // FRAME_SAMPLES
        if self.emitted < n:
            need = FRAME_SAMPLES * self._end_for(n - 1) + MEL_REACH - self.samples
            self._append(np.zeros(max(0, need), np.float32))
        out = np.exp((yield from self._advance(n)))
        self.reset()
        return out

    def push(self, samples: np.ndarray) -> np.ndarray:
        return run_steps(self._push(samples), self.encode)

    def flush(self) -> np.ndarray:
        return run_steps(self._flush(), self.encode)

    async def apush(self, samples: np.ndarray) -> np.ndarray:
        """`push`, its encoder calls awaited (a batched caller's ``acall``)."""
        return await arun_steps(self._push(samples), self.encode.acall)

    async def aflush(self) -> np.ndarray:
        return await arun_steps(self._flush(), self.encode.acall)


def _normalized(mel: torch.Tensor) -> torch.Tensor:
    """Whisper's normalization of each input of a batch [B, n_mels, T] (module doc, step 2)."""
    top = mel.amax(dim=(1, 2), keepdim=True)
    return (torch.maximum(mel, top - 8.0) + 4.0) / 4.0


def _digest(head) -> str:
    """A short hash of the head's weights (part of the batcher's key: a call runs one head),
    computed once per head object."""
    digest = getattr(head, "_audio2anim_digest", None)
    if digest is None:
        import hashlib

        h = hashlib.sha1()
        for name, t in sorted(head.state_dict().items()):
            h.update(name.encode())
            h.update(t.detach().cpu().contiguous().numpy().tobytes())
        digest = h.hexdigest()[:12]
        head._audio2anim_digest = digest
    return digest


__all__ = ["LiveWhisperStream", "live_latency_s"]
