"""The training loop shared by every recipe (`fit`): AdamW, warm-up and cosine learning rate,
validation each epoch, early stopping, a time budget, and skipping of non-finite steps."""

from __future__ import annotations

import copy
import math
import time

import torch

from .config import TrainOptions

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
