"""Training recipes of the seven models, on a `TrainingData` export.

| model            | input → output                               | loss                          |
|------------------|----------------------------------------------|-------------------------------|
| viseme-frontend  | log-mel 100 Hz → viseme logits (delayed L)   | cross-entropy                 |
| wav2vec2         | audio → phone CTC logits 50 Hz               | CTC                           |
| viseme-mlp / cnn | viseme one-hots 50 Hz → 30 params            | weighted MSE, normalized params |
| w2v-cnn / attention | wav2vec2 features 50 Hz → 30 params       | weighted MSE, normalized params |
| w2v-ar           | features + own previous params → params      | weighted MSE, parallel scheduled sampling (2 passes, p 0.3 → 0.9), noise 0.3, history hidden for half the crops |

Batches are random crops (``crop_s`` seconds, utterances drawn ∝ length) gathered from one
tensor of all training utterances on the device. Front ends train on augmented audio (speed
perturbation ±10 %, gain, random EQ curve, noise at 5–40 dB SNR) so they hold up beyond the
training voices and clean TTS. Predictor losses weight the frames of P/B/M, rounded and open
vowel segments higher (``LIPSYNC_WEIGHTS``; with ``lipsync_frontend`` the viseme front end's
frame loss too). Viseme predictors train on one-hots blurred like a recognizer's output (label
smoothing, random soft frames, ±1 frame jitter) so they accept posteriors too. w2v predictors
train on the features of a trained wav2vec2 checkpoint (``frontend``), computed once per
utterance with its streaming (chunked) attention.

An epoch is ``steps_per_epoch`` steps; validation (held-out voices) after each; early
stopping after ``patience`` epochs without improvement, or when ``max_minutes`` runs out; the
best weights are kept. The learning rate follows a warm-up + cosine schedule over the epochs or
the time budget, whichever ends first. The final evaluation on the test voices goes into the
sidecar (`audio2anim.train.evaluate`).
"""

from __future__ import annotations

import copy
import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch.nn import functional as F

from ..models.checkpoint import MODELS
from .data import HOP, PARAM_NAMES, TrainingData, Utterance

N_VISEMES = 15
OUT_DIM = len(PARAM_NAMES)

# model hyper-parameters: "full" for the shipped checkpoints, "tiny" for tests
HPARAMS: dict[str, dict[str, dict]] = {
    "full": {
        "viseme-frontend": dict(channels=128, hidden=128, conv_layers=2, kernel=3, lookahead=6),
        "wav2vec2": dict(chunk_frames=5, left_chunks=10),
        "viseme-mlp": dict(past=12, lookahead=3, hidden=256, layers=2),
        "viseme-cnn": dict(lookahead=3, channels=128, layers=4, kernel=5),
        "w2v-cnn": dict(lookahead=3, channels=128, layers=4, kernel=5),
        "w2v-ar": dict(lookahead=3, channels=128, layers=4, kernel=5, prev_frames=4),
        "w2v-attention": dict(
            lookahead=3, channels=128, layers=3, kernel=5, attn_layers=2, heads=4, attn_window=50
        ),
    },
    "tiny": {
        "viseme-frontend": dict(channels=16, hidden=16, conv_layers=1, kernel=3, lookahead=2),
        "wav2vec2": dict(
            chunk_frames=4,
            left_chunks=4,
            hidden_size=32,
            num_hidden_layers=1,
            num_attention_heads=2,
            intermediate_size=64,
            conv_dim=(16,) * 7,
            num_conv_pos_embedding_groups=4,
        ),
        "viseme-mlp": dict(past=4, lookahead=1, hidden=32, layers=2),
        "viseme-cnn": dict(lookahead=1, channels=16, layers=2, kernel=3),
        "w2v-cnn": dict(lookahead=1, channels=16, layers=2, kernel=3),
        "w2v-ar": dict(lookahead=1, channels=16, layers=2, kernel=3, prev_frames=2),
        "w2v-attention": dict(
            lookahead=1, channels=16, layers=2, kernel=3, attn_layers=1, heads=2, attn_window=8
        ),
    },
}
DEFAULT_LR = {"viseme-frontend": 2e-3, "wav2vec2": 1e-3}
# Predictor loss weight of the frames of each lip-sync segment class (none, bilabial, rounded,
# open; windows as `metrics.segment_frames`). A plain MSE regresses to the mean where the input is
# ambiguous (a short P/B/M the front end half-heard), which leaves the lips slightly open; the
# weights move that mean towards the shapes the lip-sync figures (and viewers) check.
LIPSYNC_WEIGHTS = (1.0, 6.0, 3.0, 2.0)
# w2v-ar scheduled sampling: fed-back fraction start → end (reached at half the run), passes,
# noise added to what is fed back, fraction of crops trained with no history at all
AR_SCHEDULE = {"start": 0.3, "end": 0.9, "passes": 2, "noise": 0.3, "prev_dropout": 0.5}


@dataclass
class TrainOptions:
    """Everything a training run depends on (recorded in the sidecar)."""

    model: str
    out: str
    device: str = "cpu"
    epochs: int = 40
    seed: int = 0
    steps_per_epoch: int = 100
    batch: int = 32
    crop_s: float = 4.0
    lr: float | None = None
    patience: int = 6
    max_minutes: float | None = None
    frontend: str | None = None
    w2v_feature: str | None = None  # w2v-*: "posteriors" or "hidden-N" (default: the checkpoint's)
    # w2v-*: learn from the features of augmented audio (gain, EQ, noise: `augment_audio`), as
    # the viseme predictors learn from the front end's posteriors of it
    w2v_augment: bool = False
    # viseme-*: "onehot" (blurred true visemes), "frontend" (the viseme front end's posteriors
    # of the training audio), "mixed" (half of each); "auto" = mixed when --frontend is given
    viseme_input: str = "auto"
    # viseme-*: the front end's posteriors of the training audio, softened per crop by a random
    # temperature in this range (argmax kept, the runner-up nearer it): on voices it never heard,
    # the front end is that unsure, and a predictor trained on near one-hots ignores a P/B/M
    # posterior of 0.3; (1, 1) leaves them as they are
    posterior_temperature: tuple[float, float] = (1.0, 1.0)
    # front ends: speed perturbation by a random factor in [1 - s, 1 + s] per batch (tempo,
    # pitch and formants together: a cheap stand-in for more speakers); 0 turns it off
    speed_perturb: float = 0.1
    # viseme front end: vocal tract length perturbation, each crop's spectrum stretched by a
    # random factor in [1 - v, 1 + v] (formants move, tempo does not); 0 turns it off
    vtlp: float = 0.0
    # viseme front end: SpecAugment-style masks on the log-mel input (2 bands of ≤ 8 mels and
    # 2 spans of ≤ 4 frames per crop, set to the band means)
    spec_augment: bool = False
    # front ends: the range of the random gain (dB) and of the random EQ (± dB) of
    # `augment_audio`
    gain_db: tuple[float, float] = (-12.0, 6.0)
    eq_db: float = 6.0
    # front ends: the fraction of training crops put in a random room (`add_reverb`); 0: none
    reverb: float = 0.0
    # viseme front end: weight its frame loss by LIPSYNC_WEIGHTS too (P/B/M, rounded and open
    # frames count more), as the predictors' losses always are
    lipsync_frontend: bool = False
    # viseme front end: also learn the mean posteriors of these trained front ends (knowledge
    # distillation: an ensemble's accuracy in one network); the loss is the mean of the label
    # cross-entropy and the cross-entropy against their posteriors
    distill_from: tuple[str, ...] = ()
    # how often crops come from each training voice, relative to its share of the audio: voice
    # name ("festival:ked") or engine ("espeak") → weight; a full name wins over its engine
    voice_weights: dict = field(default_factory=dict)
    size: str = "full"
    split_seed: int | None = None  # the split by voice; None: ``seed`` (runs before this option)
    val_max_utts: int = 200
    command: str = ""
    hparams: dict = field(default_factory=dict)  # overrides of HPARAMS[size][model]

    @property
    def data_split_seed(self) -> int:
        """The seed of the split by voice: ``split_seed``, or ``seed`` when that is unset."""
        return self.seed if self.split_seed is None else self.split_seed


# ----------------------------------------------------------------------------- device data


def crop_weights(utts: list[Utterance], voice_weights: dict) -> np.ndarray:
    """Per-utterance crop weights from ``voice_weights`` (voice or engine → weight, default 1);
    a ValueError names a key that matches no voice, a negative weight, or an all-zero result."""
    voices = sorted({u.voice for u in utts})
    for key, w in voice_weights.items():
        if not any(v == key or v.split(":")[0] == key for v in voices):
            raise ValueError(
                f"voice weight {key!r} matches no training voice ({', '.join(voices)})"
            )
        if w < 0:
            raise ValueError(f"voice weight {key!r}: {w} is negative")
    out = np.array(
        [voice_weights.get(u.voice, voice_weights.get(u.voice.split(":")[0], 1.0)) for u in utts],
        np.float32,
    )
    if not out.any():
        raise ValueError("voice weights leave no training voice")
    return out


class FrameSet:
    """The utterances of one split as flat device tensors, with random-crop gathering."""

    def __init__(
        self,
        utts: list[Utterance],
        device,
        features: list[np.ndarray] | None = None,
        voice_weights: dict | None = None,
    ):
        self.utts = utts
        self.device = device
        nf = np.array([u.frames for u in utts], np.int64)
        self.nf = torch.as_tensor(nf, device=device)
        self.off = torch.as_tensor(np.concatenate([[0], np.cumsum(nf)[:-1]]), device=device)
        self.audio = torch.as_tensor(np.concatenate([u.audio for u in utts]), device=device)
        self.targets = torch.as_tensor(np.concatenate([u.targets for u in utts]), device=device)
        self.vis100 = torch.as_tensor(np.concatenate([u.vis100 for u in utts]), device=device)
        self.vis50 = torch.as_tensor(np.concatenate([u.vis50 for u in utts]), device=device)
        self.features = (
            None
            if features is None
            else torch.as_tensor(np.concatenate(features).astype(np.float32), device=device)
        )
        self.lipsync = torch.as_tensor(
            np.concatenate([lipsync_classes(u) for u in utts]), device=device
        )
        self.weights = self.nf.float() * torch.as_tensor(
            crop_weights(utts, voice_weights or {}), device=device
        )

    def crop(self, batch: int, frames: int, gen: torch.Generator):
        """Random crops → (utt index [B], start frame [B], flat frame index [B, F], mask [B, F])."""
        u = torch.multinomial(self.weights, batch, replacement=True, generator=gen)
        n = self.nf[u]
        room = (n - frames + 1).clamp(min=1)
        start = (torch.rand(batch, device=self.device, generator=gen) * room).long()
        rel = start[:, None] + torch.arange(frames, device=self.device)
        mask = rel < n[:, None]
        idx = self.off[u][:, None] + torch.minimum(rel, n[:, None] - 1)
        return u, start, idx, mask

    def audio_of(self, idx: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """[B, F] frame indices → [B, F * 320] samples (zeros past the utterance end)."""
        s = idx[:, :, None] * HOP + torch.arange(HOP, device=self.device)
        a = self.audio[s] * mask[:, :, None]
        return a.flatten(1)

    def index100(self, idx: torch.Tensor) -> torch.Tensor:
        """[B, F] 50 Hz frame indices → [B, 2F] indices of their 100 Hz frames."""
        return (idx[:, :, None] * 2 + torch.arange(2, device=self.device)).flatten(1)

    def vis100_of(self, idx: torch.Tensor) -> torch.Tensor:
        return self.vis100[self.index100(idx)]


def teacher_posteriors(frontends, utts: list[Utterance], device) -> torch.Tensor:
    """[sum of 2 * frames, 15]: the mean 100 Hz posteriors of trained viseme front ends on each
    utterance's clean audio, laid out as `FrameSet.vis100` (the distillation targets)."""
    from tqdm import tqdm

    from audio2anim.models.checkpoint import load
    from audio2anim.models.logmel import logmel

    models = [load(d, device=str(device))[0].eval() for d in frontends]
    out = []
    for u in tqdm(utts, desc="teacher posteriors", unit="utt", leave=False, mininterval=2.0):
        lm = logmel(u.audio)
        p = np.mean([m.posteriors(lm) for m in models], axis=0)
        n = 2 * u.frames  # the last frame repeats where the log-mel is a frame short
        out.append(p[:n] if len(p) >= n else np.pad(p, ((0, n - len(p)), (0, 0)), mode="edge"))
    return torch.as_tensor(np.concatenate(out), dtype=torch.float32, device=device)


def lipsync_classes(utt: Utterance) -> np.ndarray:
    """[frames] int64: the lip-sync class (0 none, 1 bilabial, 2 rounded, 3 open) of each 50 Hz
    frame, over the same segment windows the figures use; bilabial wins where windows overlap."""
    from .metrics import segment_frames

    out = np.zeros(utt.frames, np.int64)
    for code in (3, 2, 1):
        for s, e, c in zip(utt.seg_start, utt.seg_end, utt.seg_class, strict=True):
            if c == code:
                out[segment_frames(float(s), float(e), utt.frames)] = code
    return out


def speed_perturb(audio: torch.Tensor, amount: float, gen: torch.Generator):
    """Resample [B, F * 320] audio by one random factor r in [1 - amount, 1 + amount] (played
    r times faster: shorter, higher) → (audio [B, F' * 320], r), F' = round(F / r). Frame-wise
    labels follow with `stretch_frames`; label sequences (CTC) are unchanged."""
    frames = audio.shape[1] // HOP
    if amount <= 0:
        return audio, 1.0
    r = 1.0 + amount * (2 * float(torch.rand(1, device=audio.device, generator=gen)) - 1)
    n = max(1, round(frames / r)) * HOP
    out = F.interpolate(audio[:, None], size=n, mode="linear", align_corners=False)[:, 0]
    return out, r


def stretch_frames(x: torch.Tensor, r: float, n: int) -> torch.Tensor:
    """Frame-wise [B, T, ...] values of audio sped up by ``r`` → [B, n, ...]: new frame t covers
    old frame floor((t + 0.5) r)."""
    src = ((torch.arange(n, device=x.device) + 0.5) * r).long().clamp(max=x.shape[1] - 1)
    return x[:, src]


def augment_audio(
    x: torch.Tensor,
    gen: torch.Generator,
    gain_db=(-12.0, 6.0),
    eq_db: float = 6.0,
    reverb: float = 0.0,
) -> torch.Tensor:
    """Random gain (uniform in ``gain_db``), smooth random EQ (±``eq_db`` at 6 control points
    over 0…8 kHz), white/brown noise at 5–40 dB SNR and, for a ``reverb`` fraction of the crops,
    a room (`add_reverb`). Real recordings arrive at any level, through any microphone and in
    any room; these ranges are what the front end learns to ignore."""
    b, n = x.shape
    dev = x.device

    def rand(*shape):
        return torch.rand(*shape, device=dev, generator=gen)

    if reverb > 0:
        x = torch.where(rand(b, 1) < reverb, add_reverb(x, gen), x)
    spec = torch.fft.rfft(x, dim=-1)
    ctrl = ((rand(b, 1, 6) * 2 - 1) * eq_db).float()  # dB at 6 control points over 0..8 kHz
    curve = F.interpolate(ctrl, size=spec.shape[-1], mode="linear", align_corners=True)[:, 0]
    x = torch.fft.irfft(spec * 10 ** (curve / 20), n=n, dim=-1)
    rms = x.pow(2).mean(-1, keepdim=True).sqrt().clamp(min=1e-4)
    white = torch.randn(b, n, device=dev, generator=gen)
    brown = torch.cumsum(torch.randn(b, n, device=dev, generator=gen), -1)
    brown = brown - brown.mean(-1, keepdim=True)
    brown = brown / brown.std(-1, keepdim=True).clamp(min=1e-6)
    mix = rand(b, 1)
    noise = mix * white + (1 - mix) * brown
    snr_db = 5 + 35 * rand(b, 1)
    use_noise = (rand(b, 1) < 0.7).float()
    x = x + use_noise * noise * rms / 10 ** (snr_db / 20)
    lo, hi = gain_db
    gain = 10 ** ((lo + rand(b, 1) * (hi - lo)) / 20)
    return (x * gain).clamp(-1, 1)


def add_reverb(x: torch.Tensor, gen: torch.Generator, sr: int = 16000) -> torch.Tensor:
    """Audio [B, N] in a random room each: convolved with a synthetic impulse response, the
    direct sound at t = 0 (so labels keep their times) plus exponentially decaying noise with
    RT60 0.15–0.8 s at a direct-to-reverberant ratio of −5…+15 dB; the level is kept."""
    b, n = x.shape
    dev = x.device
    length = int(0.8 * sr)
    t = torch.arange(length, device=dev) / sr
    rt60 = 0.15 + 0.65 * torch.rand(b, 1, device=dev, generator=gen)
    tail = torch.randn(b, length, device=dev, generator=gen) * torch.exp(-6.9 * t / rt60)
    tail[:, 0] = 0.0  # the reverberant part only, for its level
    drr_db = -5 + 20 * torch.rand(b, 1, device=dev, generator=gen)
    rir = tail / tail.pow(2).sum(-1, keepdim=True).sqrt().clamp(min=1e-9) * 10 ** (-drr_db / 20)
    rir[:, 0] = 1.0  # the direct sound
    size = n + length
    wet = torch.fft.irfft(torch.fft.rfft(x, size) * torch.fft.rfft(rir, size), size)[:, :n]
    scale = x.pow(2).mean(-1, keepdim=True).sqrt() / wet.pow(2).mean(-1, keepdim=True).sqrt()
    return wet * scale.nan_to_num(1.0).clamp(max=10.0)


def vtlp_filterbanks(amount: float, b: int, gen: torch.Generator, device) -> torch.Tensor:
    """One `vtlp_filterbank` per crop, factors uniform in [1 - amount, 1 + amount] → [B, K, M]."""
    from audio2anim.models.logmel import vtlp_filterbank

    alphas = 1 + amount * (2 * torch.rand(b, generator=gen, device=device) - 1)
    return torch.as_tensor(
        np.stack([vtlp_filterbank(float(a)) for a in alphas.cpu()]), device=device
    )


def spec_augment(
    lm: torch.Tensor, fill: torch.Tensor, gen: torch.Generator, bands=(2, 8), spans=(2, 4)
) -> torch.Tensor:
    """Log-mel [B, T, M] with ``bands[0]`` random mel bands of width 0…``bands[1]`` and
    ``spans[0]`` random spans of 0…``spans[1]`` frames per crop set to ``fill`` [M]."""
    b, t, m = lm.shape
    dev = lm.device

    def masks(count: int, width: int, size: int) -> torch.Tensor:
        w = torch.randint(0, width + 1, (b, count, 1), device=dev, generator=gen)
        start = (torch.rand(b, count, 1, device=dev, generator=gen) * (size - w + 1)).long()
        pos = torch.arange(size, device=dev)
        return ((pos >= start) & (pos < start + w)).any(1)  # [B, size]

    hit = masks(*bands, m)[:, None, :] | masks(*spans, t)[:, :, None]
    return torch.where(hit, fill.to(lm.dtype), lm)


def blurred_onehots(ids: torch.Tensor, gen: torch.Generator, train: bool = True) -> torch.Tensor:
    """Viseme ids [B, F] → [B, F, 15] inputs; in training blurred like recognizer posteriors."""
    x = F.one_hot(ids, N_VISEMES).float()
    if not train:
        return x
    b, f, _ = x.shape
    dev = ids.device
    shift = int(torch.randint(-1, 2, (1,), device=dev, generator=gen).item())
    if shift:
        x = torch.roll(x, shift, dims=1)
    eps = torch.rand(b, 1, 1, device=dev, generator=gen) * 0.3
    x = x * (1 - eps) + eps / N_VISEMES
    soft = torch.softmax(torch.randn(b, f, N_VISEMES, device=dev, generator=gen) * 2, -1)
    replace = (torch.rand(b, f, 1, device=dev, generator=gen) < 0.08).float()
    return x * (1 - replace) + soft * replace


def soften(post: torch.Tensor, temperature: tuple[float, float], gen: torch.Generator):
    """Posteriors [B, F, C] → the same at a random temperature in ``temperature`` per crop:
    ``softmax(log p / T)``, the ranking kept and the distribution flatter for T > 1."""
    lo, hi = temperature
    if (lo, hi) == (1.0, 1.0):
        return post
    t = lo + (hi - lo) * torch.rand(post.shape[0], 1, 1, device=post.device, generator=gen)
    return torch.softmax(post.clamp(min=1e-6).log() / t, -1)


def crop_ctc_labels(utt: Utterance, start_frame: int, frames: int) -> list[int]:
    """CTC phone ids of the segments whose midpoint falls in the crop, silences collapsed."""
    t0 = start_frame * HOP / 16000
    t1 = min(start_frame + frames, utt.frames) * HOP / 16000
    mid = (utt.seg_start + utt.seg_end) / 2
    sel = utt.seg_label[(mid >= t0) & (mid < t1)].astype(int).tolist()
    out: list[int] = []
    for lab in sel:
        if lab == 1 and (not out or out[-1] == 1):
            continue
        out.append(lab)
    while out and out[-1] == 1:
        out.pop()
    return out


# ----------------------------------------------------------------------------- training loop


MAX_BAD_STEPS = 50  # non-finite steps in a row that end a run as diverged


def fit(model, step_fn, val_fn, opts: TrainOptions, params=None, lr: float = 1e-3) -> dict:
    """Generic loop: AdamW, warm-up + cosine, validation each epoch, early stopping.

    A step whose loss or gradient is not finite is skipped (counted per epoch as
    ``skipped_steps``); ``MAX_BAD_STEPS`` of them in a row raise ``RuntimeError``.

    ``step_fn(epoch_progress) → loss tensor``; ``val_fn() → (score, metrics)``, lower score is
    better. Restores the best weights and returns the training history.
    """
    from tqdm import tqdm

    params = list(params if params is not None else model.parameters())
    optim = torch.optim.AdamW(params, lr=lr, weight_decay=0.01)
    total_steps = opts.epochs * opts.steps_per_epoch
    budget_s = None if opts.max_minutes is None else opts.max_minutes * 60
    warmup = max(1, min(200, total_steps // 20))
    t_start = time.monotonic()
    best, best_state, bad = math.inf, copy.deepcopy(model.state_dict()), 0
    history = []
    step = bad_run = 0
    stop_reason = "epochs"
    for epoch in range(opts.epochs):
        model.train()
        bar = tqdm(
            range(opts.steps_per_epoch),
            desc=f"{opts.model} {epoch + 1}/{opts.epochs}",
            leave=False,
            mininterval=2.0,
        )
        run_loss, finite, skipped = 0.0, 0, 0
        for _ in bar:
            elapsed = time.monotonic() - t_start
            progress = step / total_steps
            if budget_s:
                progress = max(progress, elapsed / budget_s)
            factor = (
                min(1.0, (step + 1) / warmup) * 0.5 * (1 + math.cos(math.pi * min(progress, 1)))
            )
            for g in optim.param_groups:
                g["lr"] = lr * max(factor, 0.02)
            loss = step_fn(min(progress, 1.0))
            optim.zero_grad(set_to_none=True)
            step += 1
            value = float(loss.detach())
            finite_step = math.isfinite(value)
            if finite_step:
                loss.backward()
                norm = torch.nn.utils.clip_grad_norm_(params, 1.0)
                finite_step = bool(torch.isfinite(norm))
            # one bad batch (a NaN/inf loss or gradient, e.g. bf16 overflow) is skipped rather
            # than written into the weights, where it would spoil every later step
            if not finite_step:
                skipped += 1
                bad_run += 1
                if bad_run >= MAX_BAD_STEPS:
                    raise RuntimeError(
                        f"{opts.model}: loss or gradient not finite for {bad_run} steps in a "
                        f"row (up to step {step}, epoch {epoch + 1}); training diverged"
                    )
                continue
            bad_run = 0
            optim.step()
            run_loss += value
            finite += 1
            if step % 20 == 0:
                bar.set_postfix(loss=f"{run_loss / finite:.4f}")
        model.eval()
        with torch.no_grad():
            score, val_metrics = val_fn()
        entry = {
            "epoch": epoch + 1,
            "train_loss": run_loss / finite if finite else math.nan,
            **({"skipped_steps": skipped} if skipped else {}),
            "val_score": score,
            **val_metrics,
            "seconds": round(time.monotonic() - t_start, 1),
        }
        history.append(entry)
        tqdm.write(
            f"{opts.model} epoch {epoch + 1}: train {entry['train_loss']:.4f} val {score:.4f} "
            + " ".join(f"{k} {v:.4f}" for k, v in val_metrics.items() if isinstance(v, float))
        )
        if score < best - 1e-5:
            best, best_state, bad = score, copy.deepcopy(model.state_dict()), 0
        else:
            bad += 1
            if bad >= opts.patience:
                stop_reason = "early stopping"
                break
        if budget_s and time.monotonic() - t_start > budget_s:
            stop_reason = "time budget"
            break
    model.load_state_dict(best_state)
    model.eval()
    return {
        "epochs_run": len(history),
        "steps": step,
        "stop_reason": stop_reason,
        "best_val_score": best,
        "seconds": round(time.monotonic() - t_start, 1),
        "history": history,
    }


# ----------------------------------------------------------------------------- recipes


def _val_subset(utts: list[Utterance], n: int) -> list[Utterance]:
    if len(utts) <= n:
        return utts
    step = len(utts) / n
    return [utts[int(i * step)] for i in range(n)]


def _padded(arrays: list[np.ndarray], device) -> tuple[torch.Tensor, torch.Tensor]:
    """Stack variable-length [T, ...] arrays → (padded [B, Tmax, ...], mask [B, Tmax])."""
    tmax = max(len(a) for a in arrays)
    out = np.zeros((len(arrays), tmax, *arrays[0].shape[1:]), arrays[0].dtype)
    mask = np.zeros((len(arrays), tmax), bool)
    for i, a in enumerate(arrays):
        out[i, : len(a)] = a
        mask[i, : len(a)] = True
    return torch.as_tensor(out, device=device), torch.as_tensor(mask, device=device)


def _hparams(opts: TrainOptions) -> dict:
    hp = dict(HPARAMS[opts.size][opts.model])
    hp.update(opts.hparams)
    return hp


def train_viseme_frontend(data: TrainingData, opts: TrainOptions):
    from audio2anim.models.checkpoint import build
    from audio2anim.models.logmel import DEFAULT as LM
    from audio2anim.models.logmel import logmel_torch

    dev = torch.device(opts.device)
    train, val, _ = data.split(opts.data_split_seed)
    model = build("viseme-frontend", dict(n_mels=LM.n_mels, **_hparams(opts))).to(dev)
    tset = FrameSet(train, dev, voice_weights=opts.voice_weights)
    # normalization statistics from (clean) training audio
    with torch.no_grad():
        minute = 16000 * 60
        stop = min(len(tset.audio), 10 * minute)
        sample = torch.cat(
            [logmel_torch(tset.audio[i : i + minute]) for i in range(0, stop, minute)]
        )
        model.set_normalization(sample.mean(0), sample.std(0))
    gen = torch.Generator(device=dev).manual_seed(opts.seed)
    frames = int(opts.crop_s * 50)
    lk = model.lookahead
    val_utts = _val_subset(val, opts.val_max_utts)
    val_lm, val_mask = _padded([_logmel_np(u.audio) for u in val_utts], dev)
    val_lab, _ = _padded([u.vis100 for u in val_utts], dev)
    lipsync_w = torch.tensor(LIPSYNC_WEIGHTS, device=dev)
    soft = teacher_posteriors(opts.distill_from, train, dev) if opts.distill_from else None

    def step_fn(progress):
        _, _, idx, mask = tset.crop(opts.batch, frames, gen)
        audio, r = speed_perturb(tset.audio_of(idx, mask), opts.speed_perturb, gen)
        n100 = 2 * (audio.shape[1] // HOP)
        labels = stretch_frames(tset.vis100_of(idx), r, n100)
        m100 = stretch_frames(mask.repeat_interleave(2, dim=1), r, n100)
        fb = vtlp_filterbanks(opts.vtlp, len(audio), gen, dev) if opts.vtlp else None
        audio = augment_audio(audio, gen, opts.gain_db, opts.eq_db, opts.reverb)
        lm = logmel_torch(audio, filterbank=fb)
        logits = model(spec_augment(lm, model.in_mean, gen) if opts.spec_augment else lm)
        n = labels.shape[1] - lk
        loss = F.cross_entropy(
            logits[:, lk:].reshape(-1, N_VISEMES), labels[:, :n].reshape(-1), reduction="none"
        )
        if soft is not None:
            q = stretch_frames(soft[tset.index100(idx)], r, n100)[:, :n]
            kd = -(q * F.log_softmax(logits[:, lk:], -1)).sum(-1).reshape(-1)
            loss = 0.5 * (loss + kd)
        w = m100[:, :n].reshape(-1).float()
        if opts.lipsync_frontend:
            cls = stretch_frames(tset.lipsync[idx].repeat_interleave(2, dim=1), r, n100)
            w = w * lipsync_w[cls[:, :n].reshape(-1)]
        return (loss * w).sum() / w.sum().clamp(min=1)

    def val_fn():
        pad = torch.full((val_lm.shape[0], lk, val_lm.shape[2]), math.log(LM.floor), device=dev)
        logits = model(torch.cat([val_lm, pad], 1))[:, lk:]
        pred = logits.argmax(-1)
        m = val_mask
        acc = float((pred == val_lab)[m].float().mean())
        ce = float(F.cross_entropy(logits[m], val_lab[m]))
        return 1 - acc, {"val_accuracy": acc, "val_ce": ce}

    hist = fit(model, step_fn, val_fn, opts, lr=opts.lr or DEFAULT_LR["viseme-frontend"])
    sidecar = {
        "feature": {"kind": "logmel", **LM.to_dict()},
        "input_frame_rate": LM.frame_rate,
        "output_frame_rate": LM.frame_rate,
        "lookahead_frames": lk,
        "lookahead_ms": lk * 1000 / LM.frame_rate,
        "visemes": _viseme_names(),
    }
    return model.cpu(), sidecar, hist


def _logmel_np(audio: np.ndarray) -> np.ndarray:
    from audio2anim.models.logmel import logmel

    return logmel(audio)


def _viseme_names() -> list[str]:
    try:
        from audio2anim.data.visemes import VISEMES

        return list(VISEMES)
    except ImportError:  # the training machine may ship without the data package
        return [
            "sil",
            "PP",
            "FF",
            "TH",
            "DD",
            "kk",
            "CH",
            "SS",
            "nn",
            "RR",
            "aa",
            "E",
            "ih",
            "oh",
            "ou",
        ]


def train_wav2vec2(data: TrainingData, opts: TrainOptions):
    from audio2anim.models import wav2vec as W

    from .metrics import ctc_greedy, edit_distance

    dev = torch.device(opts.device)
    train, val, _ = data.split(opts.data_split_seed)
    hp = _hparams(opts)
    chunk, left = hp.pop("chunk_frames"), hp.pop("left_chunks")
    front = W.build_small(chunk_frames=chunk, left_chunks=left, seed=opts.seed, **hp).to(dev)
    tset = FrameSet(train, dev, voice_weights=opts.voice_weights)
    gen = torch.Generator(device=dev).manual_seed(opts.seed)
    frames = int(opts.crop_s * 50)
    use_amp = dev.type == "cuda"
    val_utts = _val_subset(val, min(opts.val_max_utts, 100))

    def ctc_loss(audio, mask, labels):
        with torch.autocast(dev.type, dtype=torch.bfloat16, enabled=use_amp):
            logits, _ = front.run(F.pad(audio, (W.LEFT_PAD, 0)))
        logp = torch.log_softmax(logits.float(), -1).transpose(0, 1)
        in_len = mask.sum(1)
        tgt_len = torch.as_tensor([len(lab) for lab in labels], device=dev)
        flat = torch.as_tensor([x for lab in labels for x in lab], device=dev, dtype=torch.long)
        return F.ctc_loss(logp, flat, in_len, tgt_len, blank=0, zero_infinity=True)

    def step_fn(progress):
        u, start, idx, mask = tset.crop(opts.batch, frames, gen)
        audio, r = speed_perturb(tset.audio_of(idx, mask), opts.speed_perturb, gen)
        mask = stretch_frames(mask, r, audio.shape[1] // HOP)
        audio = augment_audio(audio, gen, opts.gain_db, opts.eq_db, opts.reverb)
        labels = [
            crop_ctc_labels(train[i], s, frames)
            for i, s in zip(u.tolist(), start.tolist(), strict=True)
        ]
        return ctc_loss(audio, mask, labels)

    def val_fn():
        errs = total = 0
        losses = []
        for i in range(0, len(val_utts), 16):
            group = val_utts[i : i + 16]
            audio, mask = _padded([u.audio.reshape(-1, HOP) for u in group], dev)
            audio = audio.flatten(1)
            labels = [u.ctc_labels().tolist() for u in group]
            losses.append(float(ctc_loss(audio, mask, labels)))
            with torch.autocast(dev.type, dtype=torch.bfloat16, enabled=use_amp):
                logits, _ = front.run(F.pad(audio, (W.LEFT_PAD, 0)))
            ids = logits.argmax(-1).cpu().numpy()
            for j, lab in enumerate(labels):
                ref = [x for x in lab if x != 1]
                hyp = ctc_greedy(ids[j, : int(mask[j].sum())])
                errs += edit_distance(hyp, ref)
                total += len(ref)
        per = errs / max(1, total)
        return per, {"val_per": per, "val_ctc": float(np.mean(losses))}

    hist = fit(front, step_fn, val_fn, opts, lr=opts.lr or DEFAULT_LR["wav2vec2"])
    sidecar = {
        "feature": {"kind": "raw-audio", "sample_rate": 16000, "left_pad": W.LEFT_PAD},
        "output_frame_rate": front.frame_rate,
        "lookahead_frames": front.lookahead_frames,
        "lookahead_ms": front.lookahead_frames * 20,
        "n_parameters": sum(p.numel() for p in front.parameters()),
    }
    return front.cpu(), sidecar, hist


# (frontend dir, its weights' mtime, device) -> {utterance id: features}; lets the three w2v
# predictors of one process (scripts/train_all.py) share one feature extraction
_FEATURE_CACHE: dict[tuple, dict[str, np.ndarray]] = {}


def w2v_features(
    frontend_dir: str,
    utts: list[Utterance],
    device,
    feature: str | None = None,
    augment_seed: int | None = None,
) -> tuple[list[np.ndarray], dict]:
    """Per-utterance features of a wav2vec2 checkpoint (streaming/chunked attention), of the
    clean audio or, with ``augment_seed``, of audio through `augment_audio` (gain, EQ, noise)."""
    from tqdm import tqdm

    from audio2anim.models.wav2vec import load_wav2vec2

    front = load_wav2vec2(frontend_dir, device=str(device), feature=feature)
    weights = Path(frontend_dir) / "config.json"  # rewritten with every save, ensembles too
    key = (
        str(Path(frontend_dir).resolve()),
        weights.stat().st_mtime_ns,
        str(device),
        front.feature,
        augment_seed,
    )
    cache = _FEATURE_CACHE.setdefault(key, {})
    feats = []
    gen = None if augment_seed is None else torch.Generator(device=device).manual_seed(augment_seed)
    with torch.no_grad():
        for u in tqdm(utts, desc="wav2vec2 features", unit="utt", leave=False, mininterval=2.0):
            if u.id not in cache:
                x = torch.as_tensor(u.audio, device=device)[None]
                x = x if gen is None else augment_audio(x, gen)
                cache[u.id] = front.features_torch(x)[0].cpu().numpy()
            feats.append(cache[u.id])
    info = {
        "checkpoint": str(frontend_dir),
        "feature": front.feature,
        "dim": front.feature_dim,
        "frame_rate": front.frame_rate,
        "lookahead_frames": front.lookahead_frames,
    }
    return feats, info


def frontend_posteriors(
    frontend_dir: str, utts: list[Utterance], device, seed: int = 0
) -> list[np.ndarray]:
    """50 Hz viseme posteriors of a viseme front end on (augmented, as in its training) audio:
    the realistic, imperfect input a viseme predictor gets at inference."""
    from tqdm import tqdm

    from audio2anim.models.checkpoint import load
    from audio2anim.models.logmel import DEFAULT as LM
    from audio2anim.models.logmel import logmel_torch

    front, _ = load(frontend_dir, device=str(device))
    gen = torch.Generator(device=device).manual_seed(seed + 1)
    out = []
    with torch.no_grad():
        for u in tqdm(utts, desc="viseme posteriors", unit="utt", leave=False, mininterval=2.0):
            audio = augment_audio(torch.as_tensor(u.audio, device=device)[None], gen)
            lm = logmel_torch(audio)
            tail = torch.full((1, front.lookahead, lm.shape[2]), math.log(LM.floor), device=device)
            probs = torch.softmax(front(torch.cat([lm, tail], 1))[:, front.lookahead :], -1)[0]
            t = probs.shape[0] // 2
            out.append(probs[: 2 * t].reshape(t, 2, -1).mean(1).cpu().numpy())
    return out


def train_predictor(data: TrainingData, opts: TrainOptions):
    from audio2anim.models.checkpoint import build

    dev = torch.device(opts.device)
    train, val, _ = data.split(opts.data_split_seed)
    name = opts.model
    uses_w2v = name.startswith("w2v-")
    if uses_w2v:
        if not opts.frontend:
            raise ValueError(f"{name}: needs --frontend, a trained wav2vec2 checkpoint directory")
        seed = opts.seed + 1 if opts.w2v_augment else None
        feats, finfo = w2v_features(opts.frontend, train + val, dev, opts.w2v_feature, seed)
        finfo["train_input"] = "augmented" if opts.w2v_augment else "clean"
        tfeat, vfeat = feats[: len(train)], feats[len(train) :]
        in_dim = finfo["dim"]
    else:
        tfeat = vfeat = None
        mode = opts.viseme_input
        if mode == "auto":
            mode = "mixed" if opts.frontend else "onehot"
        if mode not in ("onehot", "frontend", "mixed"):
            raise ValueError(f"viseme input {mode!r}: expected onehot, frontend, mixed or auto")
        if mode != "onehot":
            if not opts.frontend:
                raise ValueError(
                    f"{name}: --viseme-input {mode} needs --frontend (a viseme front end)"
                )
            feats = frontend_posteriors(opts.frontend, train + val, dev, opts.seed)
            tfeat, vfeat = feats[: len(train)], feats[len(train) :]
        finfo = {
            "kind": "viseme-posteriors",
            "dim": N_VISEMES,
            "frame_rate": 50.0,
            "train_input": mode,
        }
        in_dim = N_VISEMES
    model = build(name, dict(in_dim=in_dim, out_dim=OUT_DIM, **_hparams(opts))).to(dev)
    tset = FrameSet(train, dev, tfeat, opts.voice_weights)
    if uses_w2v:  # (viseme inputs are probabilities: left unnormalized)
        in_mean, in_std = tset.features.mean(0), tset.features.std(0)
    else:
        in_mean, in_std = torch.zeros(in_dim), torch.ones(in_dim)
    model.set_normalization(
        in_mean.cpu(), in_std.cpu(), tset.targets.mean(0).cpu(), tset.targets.std(0).cpu()
    )
    gen = torch.Generator(device=dev).manual_seed(opts.seed)
    frames = int(opts.crop_s * 50)
    is_ar = name == "w2v-ar"
    ar = AR_SCHEDULE
    lipsync_w = torch.tensor(LIPSYNC_WEIGHTS, device=dev)

    def inputs(idx, train_mode):
        if uses_w2v:
            return tset.features[idx]
        post = tset.features[idx] if finfo.get("train_input") != "onehot" else None
        if post is not None and train_mode:
            post = soften(post, opts.posterior_temperature, gen)
        if finfo.get("train_input") == "frontend":
            return post
        onehots = blurred_onehots(tset.vis50[idx], gen, train_mode)
        if post is None:
            return onehots
        use_post = torch.rand(idx.shape[0], 1, 1, device=dev, generator=gen) < 0.5
        return torch.where(use_post, post, onehots)

    def step_fn(progress):
        _, _, idx, mask = tset.crop(opts.batch, frames, gen)
        x = inputs(idx, True)
        y = model.normalize_out(tset.targets[idx])
        if is_ar:
            # parallel scheduled sampling (Duckworth et al. 2019): passes that feed back the
            # model's own (clamped) predictions for a growing fraction p of the frames, each
            # pass starting from the previous one's, so errors compound as they do when it runs
            # free; plus noise on what is fed back. Pure teacher forcing lets it learn "copy the
            # last frame" and drift at inference, up to NaN.
            p = ar["start"] + (ar["end"] - ar["start"]) * min(1.0, 2 * progress)
            prev = y
            with torch.no_grad():
                for _ in range(ar["passes"]):
                    y1 = model.feedback(model(x, prev))
                    pick = torch.rand(y.shape[:2], device=dev, generator=gen)[..., None] < p
                    prev = torch.where(pick, y1, y)
            prev = prev + ar["noise"] * torch.randn(prev.shape, device=dev, generator=gen)
            # hide the history of some crops entirely: the model must also work from audio alone
            keep = torch.rand(prev.shape[0], 1, 1, device=dev, generator=gen) >= ar["prev_dropout"]
            pred = model(x, prev * keep)
        else:
            pred = model(x)
        w = (mask * lipsync_w[tset.lipsync[idx]])[..., None]
        return ((pred - y) ** 2 * w).sum() / (w.sum() * OUT_DIM).clamp(min=1)

    val_utts = _val_subset(val, opts.val_max_utts)
    if vfeat is not None:  # validate on what the model will see: front-end features
        vsel = [vfeat[val.index(u)] for u in val_utts]
    else:
        vsel = [np.eye(N_VISEMES, dtype=np.float32)[u.vis50] for u in val_utts]
    vx, vmask = _padded(vsel, dev)
    vy, _ = _padded([u.targets for u in val_utts], dev)

    def val_fn():
        out = model.generate(vx) if is_ar else model(vx)
        pred = model.denormalize_out(out).clamp(0, 1)
        err = (pred - vy).abs()[vmask]
        m = len(PARAM_NAMES) - 11
        mae = float(err.mean())
        return mae, {
            "val_mae": mae,
            "val_mae_mouth": float(err[:, :m].mean()),
            "val_mae_eyes": float(err[:, m:].mean()),
        }

    hist = fit(model, step_fn, val_fn, opts, lr=opts.lr or 2e-3)
    from audio2anim import arkit

    sidecar = {
        "feature": finfo,
        "input_frame_rate": 50.0,
        "output_frame_rate": 50.0,
        "lookahead_frames": model.lookahead,
        "lookahead_ms": model.lookahead * 20,
        "past_frames": model.past,
        "param_names": list(PARAM_NAMES),
        "groups": {"mouth": list(arkit.MOUTH), "eyes": list(arkit.EYES)},
        "normalization": {
            "in_mean": model.in_mean.cpu().numpy(),
            "in_std": model.in_std.cpu().numpy(),
            "out_mean": model.out_mean.cpu().numpy(),
            "out_std": model.out_std.cpu().numpy(),
        },
    }
    if opts.frontend:
        from .evaluate import relative_frontend

        sidecar["frontend"] = relative_frontend(opts.frontend, opts.out)
        finfo["checkpoint"] = sidecar["frontend"]
    return model.cpu(), sidecar, hist


def train(data: TrainingData, opts: TrainOptions) -> Path:
    """Train ``opts.model`` on ``data``, evaluate on the test voices, save to ``opts.out``."""
    from audio2anim.models.checkpoint import save

    from .evaluate import evaluate

    if opts.model not in MODELS:
        raise ValueError(f"unknown model {opts.model!r} (known: {', '.join(MODELS)})")
    if opts.size not in HPARAMS:
        raise ValueError(f"unknown size {opts.size!r} (known: {', '.join(HPARAMS)})")
    if opts.w2v_augment and not opts.model.startswith("w2v-"):
        raise ValueError("--w2v-augment is for the w2v-* predictors")
    if (opts.vtlp or opts.spec_augment) and opts.model != "viseme-frontend":
        raise ValueError("--vtlp and --spec-augment act on log-mel input: viseme-frontend only")
    lo, hi = opts.gain_db
    if not -60 <= lo <= hi <= 40:
        raise ValueError(f"--gain-db must be LO:HI with -60 <= LO <= HI <= 40, got {lo}:{hi}")
    lo, hi = opts.posterior_temperature
    if not 0.2 <= lo <= hi <= 10:
        raise ValueError(
            f"--posterior-temperature must be LO:HI with 0.2 <= LO <= HI <= 10, got {lo}:{hi}"
        )
    if (lo, hi) != (1.0, 1.0) and opts.model not in ("viseme-mlp", "viseme-cnn"):
        raise ValueError("--posterior-temperature softens viseme posteriors: viseme-mlp/-cnn only")
    if (lo, hi) != (1.0, 1.0) and (not opts.frontend or opts.viseme_input == "onehot"):
        raise ValueError("--posterior-temperature softens the posteriors of --frontend: give one")
    if not 0 <= opts.reverb <= 1:
        raise ValueError(f"--reverb must be a fraction in [0, 1], got {opts.reverb}")
    if opts.reverb and opts.model not in ("viseme-frontend", "wav2vec2"):
        raise ValueError(
            "--reverb augments the front ends' training audio: viseme-frontend, wav2vec2"
        )
    if not 0 <= opts.eq_db <= 24:
        raise ValueError(f"--eq-db must be in [0, 24], got {opts.eq_db}")
    if not 0 <= opts.vtlp < 0.5:
        raise ValueError(f"--vtlp must be in [0, 0.5), got {opts.vtlp}")
    torch.manual_seed(opts.seed)
    np.random.seed(opts.seed)
    recipe = {
        "viseme-frontend": train_viseme_frontend,
        "wav2vec2": train_wav2vec2,
    }.get(opts.model, train_predictor)
    model, sidecar, hist = recipe(data, opts)
    split = data.split_summary(opts.data_split_seed)
    sidecar.update(
        {
            "model": opts.model,
            "training": {
                "command": opts.command,
                "options": asdict(opts),
                "torch": torch.__version__,
                "device": str(opts.device),
                **{k: v for k, v in hist.items() if k != "history"},
                "history": hist["history"],
            },
            "data": {
                "export": str(data.path),
                **data.meta.get("summary", {}),
                "split": split,
                **({"train_only": data.train_only_from} if data.train_only_from else {}),
            },
        }
    )
    out = Path(opts.out)
    save(model, out, sidecar)
    _, _, test = data.split(opts.data_split_seed)
    metrics = evaluate(out, test, device=opts.device)
    sidecar["metrics"] = {"split": "test", **metrics}
    save(model, out, sidecar)
    return out
