"""The recipe of the Whisper viseme head (``audio2anim train whisper-viseme-head``).

Data: a `TrainingData` split by voice as for every model (``--split-seed``; the validation and
test voices never train), ``--add-train`` exports or corpora on the train side; labels are the
export's 50 Hz visemes (``vis50``). Each utterance goes through the frozen encoder once, with
the offline windows of `audio2anim.models.whisper_head` (whole up to 25 s, else 30 s windows
overlapping by 10 s): the same states the ``feature.whisper_visemes`` operator computes. The
states can be kept in ``cache`` (a folder: one ``.npz`` per data source, keyed by its utterance
ids, layers and encoder; float16). Each frame with ``context`` frames either side, standardised
by the training frames' mean and deviation. Head: Linear → GELU → Linear (``hidden``, dropout
0.1), cross-entropy, AdamW (``lr``, weight decay 1e-2), ``batch`` frames a step, shuffled,
``epochs`` full passes at a constant learning rate; no model selection (the last weights are
kept; validation accuracy is only reported). ``viseme_bias`` is set on the finished head.
The sidecar records the encoder, windows, data, command, history and the figures on the test
voices (`audio2anim.train.evaluate`).

`encoder_states` and `fit_head` are what bench/whisper_head.py uses too.
"""

from __future__ import annotations

import hashlib
import json
import time
from pathlib import Path

import numpy as np
import torch
from torch.nn import functional as F

from .data import TrainingData, Utterance


def _cache_path(cache: Path, utts: list[Utterance], layers, whisper, tag: str) -> Path:
    from audio2anim.models.whisper_head import OFFLINE_WINDOW

    key = json.dumps([[u.id for u in utts], list(layers), whisper.source, OFFLINE_WINDOW])
    digest = hashlib.sha256(key.encode()).hexdigest()[:16]
    return cache / f"whisper-states-{tag}-{digest}.npz"


def encoder_states(
    whisper,
    layers,
    utts: list[Utterance],
    cache: Path | None = None,
    tag: str = "data",
    progress: bool = True,
) -> list[np.ndarray]:
    """Per utterance the states of ``layers`` side by side, [frames, width × len(layers)]
    float16, through the offline windows (`WhisperVisemes.posteriors`' path)."""
    from tqdm import tqdm

    from audio2anim.models.whisper_head import OFFLINE_WINDOW, WindowedStates, frames_of

    path = _cache_path(Path(cache), utts, layers, whisper, tag) if cache else None
    if path is not None and path.is_file():
        with np.load(path) as z:
            return [z[str(i)] for i in range(len(utts))]
    w = OFFLINE_WINDOW
    stream = WindowedStates(
        whisper,
        layers,
        frames_of(w["window_s"]),
        frames_of(w["hop_s"]),
        frames_of(w["lookahead_s"]),
    )
    out = []
    for u in tqdm(utts, desc=f"Whisper states ({tag})", unit="utt", disable=not progress,
                  mininterval=2.0):  # fmt: skip
        stream.reset()
        states = np.concatenate([stream.push(u.audio), stream.flush()])
        out.append(_fit(states, u.frames).astype(np.float16))
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        np.savez(path, **{str(i): s for i, s in enumerate(out)})
    return out


def _fit(x: np.ndarray, n: int) -> np.ndarray:
    """``x`` cut or edge-padded to ``n`` frames (the labels' count)."""
    if len(x) >= n:
        return x[:n]
    return np.concatenate([x, np.repeat(x[-1:], n - len(x), 0)])


def inputs(states: list[np.ndarray], context: int) -> np.ndarray:
    """Per-utterance states → one [frames, in_dim] float32 array of frames with context."""
    from audio2anim.models.whisper_head import with_context

    return np.concatenate([with_context(s.astype(np.float32), context) for s in states])


def fit_head(
    head,
    x: np.ndarray,
    y: np.ndarray,
    *,
    epochs: int,
    seed: int,
    lr: float = 1e-3,
    batch: int = 512,
    val=None,
    progress: bool = True,
) -> list[dict]:
    """Train ``head`` (a fresh `WhisperVisemeHead`) on frames ``x`` [N, in_dim] with labels
    ``y`` [N]; sets its normalization from ``x`` first. ``val``: optional (x, y) whose accuracy
    is reported per epoch. Returns the per-epoch history; the head is left in eval mode."""
    from tqdm import tqdm

    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    head.set_normalization(x.mean(0), x.std(0) + 1e-5)
    opt = torch.optim.AdamW(head.parameters(), lr=lr, weight_decay=1e-2)
    xt, yt = torch.from_numpy(x), torch.from_numpy(y.astype(np.int64))
    history = []
    steps = -(-len(x) // batch)
    bar = tqdm(total=epochs * steps, desc="whisper-viseme-head", unit="step",
               disable=not progress, mininterval=1.0)  # fmt: skip
    for epoch in range(epochs):
        head.train()
        order = torch.from_numpy(rng.permutation(len(x)))
        total = 0.0
        for i in range(0, len(x), batch):
            idx = order[i : i + batch]
            loss = F.nll_loss(head(xt[idx]), yt[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            total += float(loss.detach()) * len(idx)
            bar.update()
        entry = {"epoch": epoch + 1, "train_loss": total / len(x)}
        head.eval()
        if val is not None and len(val[1]):
            with torch.no_grad():
                pred = head(torch.from_numpy(val[0])).argmax(-1).numpy()
            entry["val_accuracy"] = float((pred == val[1]).mean())
        bar.set_postfix({k: round(v, 3) for k, v in entry.items() if k != "epoch"})
        history.append(entry)
    bar.close()
    head.eval()
    return history


def train_whisper_head(
    data: TrainingData,
    out: str | Path,
    *,
    epochs: int = 8,
    seed: int = 0,
    split_seed: int | None = None,
    layers=(-1, 3),
    context: int = 1,
    hidden: int = 256,
    lr: float = 1e-3,
    batch: int = 512,
    viseme_bias: dict[str, float] | None = None,
    encoder: str | None = None,
    cache: str | Path | None = None,
    command: str = "",
    progress: bool = True,
) -> Path:
    """Train, evaluate on the test voices and save a ``whisper-viseme-head`` checkpoint to
    ``out`` (see the module docstring). Returns ``out``."""
    from audio2anim.models.checkpoint import save
    from audio2anim.models.whisper_head import (
        KIND,
        OFFLINE_WINDOW,
        WhisperVisemeHead,
        encoder_summary,
        shared_whisper,
    )
    from audio2anim.visemes import VISEMES

    from .evaluate import evaluate

    split_seed = seed if split_seed is None else split_seed
    train, val, test = data.split(split_seed)
    if not train:
        raise ValueError(f"{data.path}: no training utterances after the split by voice")
    whisper = shared_whisper(encoder)
    torch.manual_seed(seed)
    head = WhisperVisemeHead(width=whisper.width, layers=tuple(layers), context=context,
                             hidden=hidden)  # fmt: skip
    head.check_encoder(whisper.width, whisper.model.config.encoder_layers + 1, "encoder")
    t0 = time.monotonic()
    cache = Path(cache) if cache else None
    # the --add-train utterances apart: their cache holds whatever the split of --data is
    extra = {id(u) for u in data.train_only}
    own = [u for u in train if id(u) not in extra]
    train = own + data.train_only
    states = encoder_states(whisper, layers, own, cache, "train", progress)
    states += encoder_states(whisper, layers, data.train_only, cache, "add-train", progress)
    x = inputs(states, context)
    del states
    y = np.concatenate([u.vis50 for u in train])
    vx = (
        inputs(encoder_states(whisper, layers, val, cache, "val", progress), context)
        if val
        else None
    )
    vy = np.concatenate([u.vis50 for u in val]) if val else None
    encode_s = time.monotonic() - t0
    history = fit_head(head, x, y, epochs=epochs, seed=seed, lr=lr, batch=batch,
                       val=None if vx is None else (vx, vy), progress=progress)  # fmt: skip
    del x, vx
    head.set_viseme_bias(viseme_bias or {})
    out = Path(out)
    sidecar = {
        "model": KIND,
        "encoder": encoder_summary(whisper),
        "windows": OFFLINE_WINDOW,
        "input_frame_rate": 50.0,
        "output_frame_rate": 50.0,
        "visemes": list(VISEMES),
        "training": {
            "command": command,
            "options": {
                "epochs": epochs,
                "seed": seed,
                "split_seed": split_seed,
                "layers": list(layers),
                "context": context,
                "hidden": hidden,
                "lr": lr,
                "batch": batch,
            },  # fmt: skip
            "torch": torch.__version__,
            "frames": int(len(y)),
            "minutes": round(len(y) / 50 / 60, 2),
            "encode_seconds": round(encode_s, 1),
            "seconds": round(time.monotonic() - t0, 1),
            "history": history,
        },
        "data": {
            "export": str(data.path),
            **data.meta.get("summary", {}),
            "split": data.split_summary(split_seed),
            **({"train_only": data.train_only_from} if data.train_only_from else {}),
        },
    }
    save(head, out, sidecar)
    if test:
        metrics = evaluate(out, test)
        sidecar["metrics"] = {"split": "test", **metrics}
        save(head, out, sidecar)
    return out
