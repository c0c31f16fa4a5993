"""Target shaping: what the models learn from, made from an utterance's labels — lip-sync
classes of frames (loss weights), blurred viseme one-hots and softened posteriors (predictor
inputs), CTC labels of a crop, and the posteriors of trained front ends (distillation)."""

from __future__ import annotations

import numpy as np
import torch
from torch.nn import functional as F

from audio2anim.visemes import N_VISEMES

from .data import HOP, Utterance


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
