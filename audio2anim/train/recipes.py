"""Training recipes of the seven models, on a `TrainingData` export.

| model            | input → output                               | loss                          |
|------------------|----------------------------------------------|-------------------------------|
| viseme-frontend  | log-mel 100 Hz → viseme logits (delayed L)   | cross-entropy                 |
| wav2vec2         | audio → phone CTC logits 50 Hz               | CTC                           |
| viseme-mlp / cnn | viseme one-hots 50 Hz → 30 params            | weighted MSE, normalized params |
| w2v-cnn / attention | front-end features 50 Hz → 30 params      | weighted MSE, normalized params |
| w2v-ar           | features + own previous params → params      | weighted MSE, parallel scheduled sampling (2 passes, p 0.3 → 0.9), noise 0.3, history hidden for half the crops |

Batches are random crops (``crop_s`` seconds, utterances drawn ∝ length) gathered from one
tensor of all training utterances on the device. Front ends train on augmented audio (speed
perturbation ±10 %, gain, random EQ curve, noise at 5–40 dB SNR) so they hold up beyond the
training voices and clean TTS. Predictor losses weight the frames of P/B/M, rounded and open
vowel segments higher (``LIPSYNC_WEIGHTS``; with ``lipsync_frontend`` the viseme front end's
frame loss too). Viseme predictors train on one-hots blurred like a recognizer's output (label
smoothing, random soft frames, ±1 frame jitter) so they accept posteriors too. w2v predictors
train on the features of a trained wav2vec2 checkpoint (``frontend``), computed once per
utterance with its streaming (chunked) attention, or on the 15 viseme posteriors of a
``whisper-viseme-head`` front end (the Whisper encoder; `features.feature_frontend`).

An epoch is ``steps_per_epoch`` steps; validation (held-out voices) after each; early
stopping after ``patience`` epochs without improvement, or when ``max_minutes`` runs out; the
best weights are kept. The learning rate follows a warm-up + cosine schedule over the epochs or
the time budget, whichever ends first. The final evaluation on the test voices goes into the
sidecar (`audio2anim.train.evaluate`).
"""

from __future__ import annotations

import math
from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch
from torch.nn import functional as F

from audio2anim.audio import MODEL_RATE
from audio2anim.visemes import N_VISEMES

from .augmentation import (
    augment_audio,
    spec_augment,
    speed_perturb,
    stretch_frames,
    vtlp_filterbanks,
)
from .batching import FrameSet, padded, val_subset
from .config import (
    AR_SCHEDULE,
    DEFAULT_LR,
    LIPSYNC_WEIGHTS,
    OUT_DIM,
    TrainOptions,
    check_options,
    hparams_of,
)
from .data import HOP, PARAM_NAMES, TrainingData
from .features import FeatureCache, frontend_posteriors, w2v_features
from .loop import fit
from .targets import blurred_onehots, crop_ctc_labels, soften, teacher_posteriors


def train_viseme_frontend(data: TrainingData, opts: TrainOptions):
    from audio2anim.models.checkpoint import build
    from audio2anim.models.logmel import DEFAULT as LM
    from audio2anim.models.logmel import logmel_torch

    dev = torch.device(opts.device)
    train, val, _ = data.split(opts.data_split_seed)
    model = build("viseme-frontend", dict(n_mels=LM.n_mels, **hparams_of(opts))).to(dev)
    tset = FrameSet(train, dev, voice_weights=opts.voice_weights)
    # normalization statistics from (clean) training audio
    with torch.no_grad():
        minute = MODEL_RATE * 60
        stop = min(len(tset.audio), 10 * minute)
        sample = torch.cat(
            [logmel_torch(tset.audio[i : i + minute]) for i in range(0, stop, minute)]
        )
        model.set_normalization(sample.mean(0), sample.std(0))
    gen = torch.Generator(device=dev).manual_seed(opts.seed)
    frames = int(opts.crop_s * 50)
    lk = model.lookahead
    val_utts = val_subset(val, opts.val_max_utts)
    val_lm, val_mask = padded([_logmel_np(u.audio) for u in val_utts], dev)
    val_lab, _ = padded([u.vis100 for u in val_utts], dev)
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
    from audio2anim.visemes import VISEMES

    return list(VISEMES)


def train_wav2vec2(data: TrainingData, opts: TrainOptions):
    from audio2anim.models import wav2vec as W

    from .metrics import ctc_greedy, edit_distance

    dev = torch.device(opts.device)
    train, val, _ = data.split(opts.data_split_seed)
    hp = hparams_of(opts)
    chunk, left = hp.pop("chunk_frames"), hp.pop("left_chunks")
    front = W.build_small(chunk_frames=chunk, left_chunks=left, seed=opts.seed, **hp).to(dev)
    tset = FrameSet(train, dev, voice_weights=opts.voice_weights)
    gen = torch.Generator(device=dev).manual_seed(opts.seed)
    frames = int(opts.crop_s * 50)
    use_amp = dev.type == "cuda"
    val_utts = val_subset(val, min(opts.val_max_utts, 100))

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
            audio, mask = padded([u.audio.reshape(-1, HOP) for u in group], dev)
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


def train_predictor(data: TrainingData, opts: TrainOptions, features: FeatureCache | None = None):
    from audio2anim.models.checkpoint import build

    dev = torch.device(opts.device)
    train, val, _ = data.split(opts.data_split_seed)
    name = opts.model
    uses_w2v = name.startswith("w2v-")
    if uses_w2v:
        if not opts.frontend:
            raise ValueError(
                f"{name}: needs --frontend, a wav2vec2 or whisper-viseme-head checkpoint directory"
            )
        seed = opts.seed + 1 if opts.w2v_augment else None
        feats, finfo = w2v_features(
            opts.frontend, train + val, dev, opts.w2v_feature, seed, features
        )
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
    model = build(name, dict(in_dim=in_dim, out_dim=OUT_DIM, **hparams_of(opts))).to(dev)
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

    val_utts = val_subset(val, opts.val_max_utts)
    if vfeat is not None:  # validate on what the model will see: front-end features
        vsel = [vfeat[val.index(u)] for u in val_utts]
    else:
        vsel = [np.eye(N_VISEMES, dtype=np.float32)[u.vis50] for u in val_utts]
    vx, vmask = padded(vsel, dev)
    vy, _ = padded([u.targets for u in val_utts], dev)

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


def train(data: TrainingData, opts: TrainOptions, features: FeatureCache | None = None) -> Path:
    """Train ``opts.model`` on ``data``, evaluate on the test voices, save to ``opts.out``.

    ``features``: a cache of wav2vec2 features shared by the w2v predictors trained in one
    process (the features are the same with or without it)."""
    from audio2anim.models.checkpoint import save

    from .evaluate import evaluate

    check_options(opts)
    torch.manual_seed(opts.seed)
    np.random.seed(opts.seed)
    if opts.model == "viseme-frontend":
        model, sidecar, hist = train_viseme_frontend(data, opts)
    elif opts.model == "wav2vec2":
        model, sidecar, hist = train_wav2vec2(data, opts)
    else:
        model, sidecar, hist = train_predictor(data, opts, features)
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
