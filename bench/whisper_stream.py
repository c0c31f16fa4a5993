#!/usr/bin/env python3
"""Whisper tiny.en's encoder streamed with bounded lookahead: viseme accuracy, lip closure and
CPU cost against window length, lookahead and hop, frozen or fine-tuned.

    python bench/whisper_stream.py pack --train CORPUS [--train CORPUS …] [--every NAME=N] --out DIR
    python bench/whisper_stream.py train --data DIR --out MODELS [--device cuda]
                                   [--variants frozen,last2,all] [--windows 1,2]
                                   [--steps 3000] [--batch 128] [--seed 0] [--budget-s S]
    python bench/whisper_stream.py sets [--sets tuxpaint,alsa,ktuberling] --sets-dir SETS
                                   --out DIR/sets.npz
    python bench/whisper_stream.py logits --sets DIR/sets.npz --models MODELS --data DIR
                                   --out MODELS/logits.npz [--device cuda]
    python bench/whisper_stream.py eval --models MODELS --data DIR
                                   [--sets tuxpaint,alsa,ktuberling] [--sets-dir SETS]
                                   [--logits MODELS/logits.npz] [--variants …] [--windows 1,2]
                                   [--threads 1] [--out out/whisper_stream.md] [--write-docs]
    python bench/whisper_stream.py export --models MODELS --data DIR --variant all --window 1
                                   --lookahead 5 --hop-frames 2 --pp-offset 2.0 --out FOLDER
    python bench/whisper_stream.py cost [--threads 1]
    python bench/whisper_stream.py gpu-cost [--batches 1,8,32,…] [--out FILE]

``pack``, ``sets`` and ``eval`` need the project installed; ``train`` and ``logits`` only torch,
numpy and safetensors, so they run on a GPU machine with the packed folder.

The streaming condition, as a live graph would run it. Log-mel frames (Whisper's: Hann 400, hop
160, log10 floored at 1e-10) are computed once over the stream (cached mel). Every hop, the
encoder runs on the last W seconds (W·50 encoder frames; the window's mel floored at its own
maximum − 8 and scaled (x + 4) / 4, as Whisper does per input; before the stream starts the mel
is digital silence). An encoder frame k covers [20k, 20k + 20) ms; a window ending at frame E
(exclusive) gives frame k = E − 1 − n the lookahead n frames: the window holds 20·n ms of audio
after the frame, plus 2.5 ms that the last mel frame's Hann window reaches past the window's
end. With hop H (H / 20 ms frames a window), the frames of one hop have lookaheads L … L + H −
20 ms, so a live output at a constant delay has algorithmic latency L + H − 20 ms (+ 2.5 ms).
The viseme head reads the final layer and layer 3 at frames k − 1, k, k + 1 of the window.

``pack`` exports each training corpus (`audio2anim.train.data.export_data`; labels its 50 Hz
visemes) and writes ``DIR/train.npz`` (per utterance: the log10 mel from 10 frames before to
50 after the clip, quantised to uint8 in 0.05 steps below the utterance maximum, values more
than 12.75 below it stored as digital silence) and ``DIR/encoder.safetensors`` (the packaged
Whisper tiny.en encoder, fp16, Hugging Face names) with ``encoder.json``: a compact copy for a
GPU machine. ``--every NAME=N`` keeps every N-th utterance (in the export's order) of the
corpus folder named NAME.

``train`` trains, for each window length in ``--windows`` and each variant, on random windows of
the packed corpora (each window ends at a random frame up to 18 frames past the clip's end;
frames outside the clip are not scored): ``frozen``: the encoder as is and one head per
lookahead n ∈ {3, 5, 7, 15} frames (60, 100, 140, 300 ms), each on lookaheads n … n + 3 (hops up
to 80 ms); ``last2``: the encoder's last two layers and final norm trained with one head shared
by all lookaheads 3 … 18; ``all``: every encoder weight but the positional table, one shared
head. Head: Linear → GELU → Dropout 0.1 → Linear (hidden 256), input standardised with the
frozen features' mean and deviation over 20 batches. AdamW (heads 1e-3, encoder 5e-5, weight
decay 1e-2), 200 warm-up steps then cosine, bf16 autocast on CUDA, a fixed number of steps
(``--budget-s``: fewer, the same for every run, when a few timed steps say they would not fit);
nothing is selected on any scored set. A ``-aug`` variant (``all-aug`` …) also stretches each
window's mel axis, adds a noise floor and masks a band (`Windows.augment`). Writes
``MODELS/<variant>-w<W>.safetensors`` (fp16: heads as ``head<n>.*`` or ``head.*``; trained
encoder weights as ``model.encoder.*``, the rest are the packaged ones) and
``MODELS/<variant>-w<W>.json`` (config, losses, seconds).

``sets`` aligns and exports each of ``--sets`` exactly as `bench/real_speech.py` does
(`align_and_export`) into ``--sets-dir`` and packs their audio; ``logits`` streams that audio
through every trained model (fp32, TF32 off) and saves the logits, so the encoder passes can
run on a GPU. ``eval`` (CPU) reads the aligned sets (aligning them first when ``--sets-dir`` is
not given or empty), streams every clip (2 s of digital silence before it, 0.6 s after) with
windows ending every 40 ms and scores, for every trained model and lookahead, the 50 Hz
posteriors at hop 40 ms and, for W = 1 s, 80 ms: viseme frame accuracy over 10 ms frames
(posteriors repeated) with `audio2anim.train.evaluate`'s tallies, and P/B/M closure recall and
false closures of the ``viseme-cnn`` predictor fed by the posteriors (as `bench/whisper_head.py`
does). A log-odds offset on PP (0, 0.5, 1, 1.5, 2 or 3) is chosen per row on ``tuxpaint``
(the validation set) by closure recall − false closures, then applied to every set. The
shipped front end's row comes from `evaluate`. With ``--logits`` the streaming is read from
``logits``' files instead. Prints one Markdown table (and the CPU cost table);
``--write-docs`` writes both into docs/performance.md (section ``whisper-stream``).

``export`` writes one trained model as a folder: the whole encoder (fp16, ``model.encoder.*``,
loads over `load_whisper()`'s model), the head of one lookahead and ``config.json``.

``cost`` times the encoder on one window of each length at ``--threads``, in torch and in ONNX
Runtime (median and best of 30 runs after 5) and prints the share of one core at hops 40 and
80 ms, the cached mel (per second of audio) and the head (per hop) included. ``gpu-cost`` (torch
only, for a GPU machine) times the live step batched over N streams: how many streams one GPU
keeps in real time.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn

N_FFT, HOP, RATE = 400, 160, 16000
LAYER3 = 3  # states[3]: the output of the encoder's third block (0 = input)
LOOKAHEADS = (3, 5, 7, 15)  # encoder frames of 20 ms
BAND = 4  # a per-lookahead head trains on lookaheads n … n + 3
SHARED = tuple(range(3, 19))  # lookaheads a shared head trains on
PRE_MEL, POST_MEL = 10, 50  # packed mel frames before and after each clip
SILENCE = -10.0  # log10 of the floor: digital silence
Q_STEP, Q_RANGE = 0.05, 12.75
PP = 1  # audio2anim.visemes.VISEMES.index("PP")
OFFSETS = (0.0, 0.5, 1.0, 1.5, 2.0, 3.0)
VARIANTS = ("frozen", "last2", "all", "frozen-aug", "last2-aug", "all-aug")


# -- the encoder, in plain torch (Hugging Face Whisper's names and arithmetic) -----------------


class Block(nn.Module):
    def __init__(self, d: int, heads: int, ffn: int):
        super().__init__()
        self.heads = heads
        self.self_attn = nn.Module()
        for p in "qkvo":
            name = "out_proj" if p == "o" else f"{p}_proj"
            setattr(self.self_attn, name, nn.Linear(d, d, bias=p != "k"))
        self.self_attn_layer_norm = nn.LayerNorm(d)
        self.final_layer_norm = nn.LayerNorm(d)
        self.fc1, self.fc2 = nn.Linear(d, ffn), nn.Linear(ffn, d)

    def forward(self, x):
        b, t, d = x.shape
        a = self.self_attn
        h = self.self_attn_layer_norm(x)
        q, k, v = (
            proj(h).view(b, t, self.heads, d // self.heads).transpose(1, 2)
            for proj in (a.q_proj, a.k_proj, a.v_proj)
        )
        h = nn.functional.scaled_dot_product_attention(q, k, v)
        x = x + a.out_proj(h.transpose(1, 2).reshape(b, t, d))
        h = self.fc2(nn.functional.gelu(self.fc1(self.final_layer_norm(x))))
        return x + h


class Encoder(nn.Module):
    """Whisper's encoder: log-mel [B, n_mels, 2T] → every layer's states [B, T, d] (0 = input,
    last = final, after the final norm). State-dict names as Hugging Face's under
    ``model.encoder.``."""

    def __init__(self, cfg: dict):
        super().__init__()
        d = cfg["d_model"]
        self.cfg = dict(cfg)
        self.conv1 = nn.Conv1d(cfg["num_mel_bins"], d, 3, padding=1)
        self.conv2 = nn.Conv1d(d, d, 3, stride=2, padding=1)
        self.embed_positions = nn.Embedding(cfg["max_source_positions"], d)
        self.embed_positions.weight.requires_grad_(False)
        self.layers = nn.ModuleList(
            Block(d, cfg["encoder_attention_heads"], cfg["encoder_ffn_dim"])
            for _ in range(cfg["encoder_layers"])
        )
        self.layer_norm = nn.LayerNorm(d)

    def forward(self, mel, upto: int | None = None):
        x = nn.functional.gelu(self.conv1(mel))
        x = nn.functional.gelu(self.conv2(x)).transpose(1, 2)
        x = x + self.embed_positions.weight[: x.shape[1]]
        states = [x]
        for layer in self.layers:
            x = layer(x)
            states.append(x)
        states[-1] = self.layer_norm(x)
        return states


ENC_KEYS = ("num_mel_bins", "d_model", "encoder_layers", "encoder_attention_heads",
            "encoder_ffn_dim", "max_source_positions")  # fmt: skip


def packaged_encoder() -> Encoder:
    """The packaged Whisper tiny.en's encoder (`audio2anim.models.whisper.load_whisper`)."""
    from audio2anim.models.whisper import load_whisper

    w = load_whisper()
    enc = Encoder({k: getattr(w.model.config, k) for k in ENC_KEYS})
    sd = {k[len("model.encoder.") :]: v for k, v in w.model.state_dict().items()
          if k.startswith("model.encoder.")}  # fmt: skip
    enc.load_state_dict(sd)
    return enc.eval()


def load_encoder(data: Path, weights: dict | None = None) -> Encoder:
    """``DIR/encoder.safetensors`` (+ ``encoder.json``), float32, with ``weights``
    (``model.encoder.*``) laid over."""
    from safetensors.torch import load_file

    enc = Encoder(json.loads((data / "encoder.json").read_text()))
    sd = {k[len("model.encoder.") :]: v.float()
          for k, v in load_file(str(data / "encoder.safetensors")).items()}  # fmt: skip
    for k, v in (weights or {}).items():
        if k.startswith("model.encoder."):
            sd[k[len("model.encoder.") :]] = v.float()
    enc.load_state_dict(sd)
    return enc.eval()


# -- mel ---------------------------------------------------------------------------------------


def mel_filters(data: Path | None = None) -> torch.Tensor:
    """Whisper's 80 mel filters [201, 80]: ``DIR/filters.npy`` of a pack when given, else
    `audio2anim.models.whisper.mel_filters`."""
    if data is not None and (data / "filters.npy").is_file():
        return torch.from_numpy(np.load(data / "filters.npy"))
    from audio2anim.models.whisper import mel_filters as filters

    return torch.from_numpy(filters(80))


def log10_mel(samples: np.ndarray, filters: torch.Tensor) -> torch.Tensor:
    """16 kHz samples → log10 mel power [len // 160, 80] (Whisper's, before its max − 8 floor
    and scaling)."""
    x = torch.as_tensor(np.asarray(samples, np.float32))
    spec = torch.stft(x, N_FFT, HOP, window=torch.hann_window(N_FFT), return_complex=True)
    power = spec[..., :-1].abs() ** 2
    return torch.clamp(filters.T @ power, min=1e-10).log10().T.contiguous()


def window_input(mel: torch.Tensor) -> torch.Tensor:
    """Windows of log10 mel [B, 2N, 80] → the encoder's input [B, 80, 2N]: floored at each
    window's maximum − 8, scaled (x + 4) / 4 (Whisper's per-input normalisation)."""
    top = mel.amax(dim=(1, 2), keepdim=True)
    return ((torch.maximum(mel, top - 8.0) + 4.0) / 4.0).transpose(1, 2)


def stream_mel(audio: np.ndarray, filters, front: int, back: int) -> torch.Tensor:
    """A clip as a stream: ``front`` encoder frames of digital silence before it and ``back``
    after, log10 mel [2 (front + T + back), 80]."""
    pad_front, pad_back = np.zeros(320 * front, np.float32), np.zeros(320 * back, np.float32)
    return log10_mel(np.concatenate([pad_front, audio, pad_back]), filters)


# -- heads -------------------------------------------------------------------------------------


class Head(nn.Module):
    def __init__(self, dim: int = 3 * 768, hidden: int = 256, n_visemes: int = 15):
        super().__init__()
        self.register_buffer("mean", torch.zeros(dim))
        self.register_buffer("std", torch.ones(dim))
        self.net = nn.Sequential(nn.Linear(dim, hidden), nn.GELU(), nn.Dropout(0.1),
                                 nn.Linear(hidden, n_visemes))  # fmt: skip

    def forward(self, x):
        return self.net((x - self.mean) / self.std)


def context(states: list, lookaheads) -> torch.Tensor:
    """Final + layer-3 states of windows [B, N, 768] at frames N − 1 − n, each with its
    neighbours → [B, len(lookaheads), 3 · 768]."""
    f = torch.cat([states[-1], states[LAYER3]], dim=-1)
    n_frames = f.shape[1]
    out = []
    for n in lookaheads:
        p = n_frames - 1 - n
        out.append(torch.cat([f[:, p - 1], f[:, p], f[:, min(p + 1, n_frames - 1)]], dim=-1))
    return torch.stack(out, 1)


def head_lookaheads(variant: str) -> dict[str, tuple[int, ...]]:
    """{head name: lookaheads it trains on}."""
    if variant.startswith("frozen"):
        return {f"head{n}": tuple(range(n, n + BAND)) for n in LOOKAHEADS}
    return {"head": SHARED}


def head_for(variant: str, n: int) -> str:
    return f"head{n}" if variant.startswith("frozen") else "head"


# -- pack --------------------------------------------------------------------------------------


def cmd_pack(args) -> int:
    import tempfile

    from safetensors.torch import save_file

    from audio2anim.train.data import export_data, load_data

    every = {}
    for item in args.every or ():
        name, _, n = item.partition("=")
        if not n.isdigit() or int(n) < 1:
            raise SystemExit(f"--every: {item!r}: want NAME=N with N a whole number ≥ 1")
        every[name] = int(n)
    unknown = set(every) - {c.name for c in args.train}
    if unknown:
        raise SystemExit(f"--every: {sorted(unknown)[0]!r} is none of the --train folders")
    args.out.mkdir(parents=True, exist_ok=True)
    filters = mel_filters()
    mels, tops, lens, labels, names = [], [], [], [], []
    with tempfile.TemporaryDirectory(prefix="whisper_stream-") as tmp:
        for corpus in args.train:
            out = Path(tmp) / f"export-{corpus.name}"
            export_data(corpus, out, max_mb=None)
            utts = load_data(out).utterances[:: every.get(corpus.name, 1)]
            for u in utts:
                # PRE_MEL / 2 frames before, POST_MEL / 2 after, as the stream computes them
                m = stream_mel(u.audio, filters, PRE_MEL // 2, POST_MEL // 2)
                top = float(m.max())
                q = torch.clamp(torch.round((m - (top - Q_RANGE)) / Q_STEP), 0, 255)
                mels.append(q.to(torch.uint8).numpy())
                tops.append(top)
                lens.append(u.frames)
                labels.append(u.vis50.astype(np.uint8))
                names.append(u.id)
            print(f"{corpus}: {len(utts)} utterances", flush=True)
    np.savez_compressed(
        args.out / "train.npz",
        mel=np.concatenate(mels),
        mel_len=np.array([len(m) for m in mels], np.int64),
        top=np.array(tops, np.float32),
        frames=np.array(lens, np.int64),
        labels=np.concatenate(labels),
    )
    enc = packaged_encoder()
    sd = {f"model.encoder.{k}": v.half().contiguous() for k, v in enc.state_dict().items()}
    save_file(sd, str(args.out / "encoder.safetensors"))
    (args.out / "encoder.json").write_text(json.dumps(enc.cfg, indent=1))
    np.save(args.out / "filters.npy", filters.numpy())
    seconds = sum(lens) / 50
    print(f"{len(lens)} utterances, {seconds / 60:.1f} min → {args.out}")
    return 0


# -- train -------------------------------------------------------------------------------------


class Windows:
    """Random training windows of the packed corpora, on ``device``."""

    def __init__(self, data: Path, device: str, seed: int):
        z = np.load(data / "train.npz")
        mel_len, top, frames = z["mel_len"], z["top"], z["frames"]
        q = torch.from_numpy(z["mel"]).to(device)
        starts = np.concatenate([[0], np.cumsum(mel_len)[:-1]])
        floor = torch.from_numpy(np.repeat(top - Q_RANGE, mel_len)).to(device)[:, None]
        self.mel = torch.where(q == 0, torch.tensor(SILENCE, device=device),
                               floor + Q_STEP * q.float())  # fmt: skip
        self.mel_start = torch.from_numpy(starts).to(device)
        self.mel_len = torch.from_numpy(mel_len).to(device)
        lab_start = np.concatenate([[0], np.cumsum(frames)[:-1]])
        self.labels = torch.from_numpy(z["labels"].astype(np.int64)).to(device)
        self.lab_start = torch.from_numpy(lab_start).to(device)
        self.frames = torch.from_numpy(frames).to(device)
        # every (utterance, window end E) with E in 1 … T + 18
        ends = [(i, e) for i, t in enumerate(frames) for e in range(1, int(t) + 19)]
        self.pairs = torch.tensor(ends, device=device)
        self.device = device
        self.gen = torch.Generator(device=device).manual_seed(seed)
        self.seconds = float(frames.sum()) / 50

    def batch(self, size: int, n_frames: int, lookaheads: tuple[int, ...], augment=False):
        """(encoder input [B, 80, 2N], labels [B, len(lookaheads)], −100 outside the clip)."""
        pick = torch.randint(len(self.pairs), (size,), device=self.device, generator=self.gen)
        utt, end = self.pairs[pick, 0], self.pairs[pick, 1]
        rel = 2 * (end - n_frames)[:, None] + torch.arange(2 * n_frames, device=self.device)
        stored = rel + PRE_MEL  # index into the utterance's packed mel
        ok = (stored >= 0) & (stored < self.mel_len[utt, None])
        idx = self.mel_start[utt, None] + stored.clamp(min=0)
        idx = torch.minimum(idx, self.mel_start[utt, None] + self.mel_len[utt, None] - 1)
        mel = torch.where(ok[..., None], self.mel[idx], torch.tensor(SILENCE, device=self.device))
        ns = torch.tensor(lookaheads, device=self.device)
        k = end[:, None] - 1 - ns  # frame index in the clip
        inside = (k >= 0) & (k < self.frames[utt, None])
        lab = self.labels[self.lab_start[utt, None] + k.clamp(min=0)
                          .minimum(self.frames[utt, None] - 1)]  # fmt: skip
        if augment:
            mel = self.augment(mel)
        return window_input(mel), torch.where(inside, lab, torch.tensor(-100, device=self.device))

    def augment(self, mel: torch.Tensor) -> torch.Tensor:
        """Log10 mel windows [B, 2N, 80] with, each: its mel axis stretched by α ∈ [0.88, 1.12]
        (vocal-tract length, 80 % of windows), a flat noise floor 20–45 dB below its peak (50 %)
        and one band of up to 8 mel bins set to its floor (50 %)."""
        b, _, bins = mel.shape
        dev, g = mel.device, self.gen

        def coin(p):
            return torch.rand(b, 1, 1, device=dev, generator=g) < p

        alpha = 0.88 + 0.24 * torch.rand(b, 1, 1, device=dev, generator=g)
        pos = (torch.arange(bins, device=dev).float() * alpha).clamp(max=bins - 1)
        lo = pos.floor().long().clamp(max=bins - 2)
        frac = pos - lo
        lo = lo.expand(-1, mel.shape[1], -1)
        warped = torch.gather(mel, 2, lo) * (1 - frac) + torch.gather(mel, 2, lo + 1) * frac
        mel = torch.where(coin(0.8), warped, mel)
        top = mel.amax(dim=(1, 2), keepdim=True)
        level = top - 2.0 - 2.5 * torch.rand(b, 1, 1, device=dev, generator=g)
        noisy = torch.log10(10.0**mel + 10.0**level)
        mel = torch.where(coin(0.5), noisy, mel)
        start = torch.randint(0, bins - 8, (b, 1, 1), device=dev, generator=g)
        width = torch.randint(1, 9, (b, 1, 1), device=dev, generator=g)
        idx = torch.arange(bins, device=dev)
        band = (idx >= start) & (idx < start + width) & coin(0.5)
        return torch.where(band, mel.amin(dim=(1, 2), keepdim=True), mel)


def trainable(enc: Encoder, variant: str) -> list:
    for p in enc.parameters():
        p.requires_grad_(False)
    if variant == "frozen":
        return []
    mods = [enc] if variant == "all" else [*enc.layers[-2:], enc.layer_norm]
    params = []
    for m in mods:
        for name, p in m.named_parameters():
            if "embed_positions" not in name:
                p.requires_grad_(True)
                params.append(p)
    return params


def train_one(args, data: Windows, variant: str, seconds_w: int, quiet: bool = False):
    dev = args.device
    torch.manual_seed(args.seed)
    enc = load_encoder(args.data).to(dev)
    enc_params = trainable(enc, variant.split("-")[0])
    augment = variant.endswith("-aug")
    enc.train(bool(enc_params))
    n_frames = 50 * seconds_w
    heads = {name: Head().to(dev) for name in head_lookaheads(variant)}
    all_ns = sorted({n for ns in head_lookaheads(variant).values() for n in ns})
    amp = torch.autocast("cuda", dtype=torch.bfloat16) if dev.startswith("cuda") else (
        torch.autocast("cpu", enabled=False))  # fmt: skip
    with torch.no_grad(), amp:  # standardisation from the frozen features
        feats = []
        for _ in range(20):
            x, _ = data.batch(args.batch, n_frames, tuple(all_ns))
            feats.append(context(enc(x), all_ns).float().flatten(0, 1))
        feats = torch.cat(feats)
        for h in heads.values():
            h.mean.copy_(feats.mean(0))
            h.std.copy_(feats.std(0) + 1e-5)
    groups = [{"params": [p for h in heads.values() for p in h.parameters()], "lr": 1e-3}]
    if enc_params:
        groups.append({"params": enc_params, "lr": args.encoder_lr})
    opt = torch.optim.AdamW(groups, weight_decay=1e-2)
    base = [g["lr"] for g in opt.param_groups]
    index = {n: i for i, n in enumerate(all_ns)}
    t0, log, total, count = time.perf_counter(), [], 0.0, 0
    if dev.startswith("cuda"):
        torch.cuda.synchronize()
    t0 = time.perf_counter()
    for step in range(args.steps):
        scale = min(1.0, (step + 1) / 200) * 0.5 * (1 + math.cos(math.pi * step / args.steps))
        for g, lr in zip(opt.param_groups, base, strict=True):
            g["lr"] = lr * scale
        x, y = data.batch(args.batch, n_frames, tuple(all_ns), augment)
        with amp:
            if enc_params:
                states = enc(x)
            else:
                with torch.no_grad():
                    states = enc(x)
            ctx = context(states, all_ns)
            loss = 0.0
            for name, h in heads.items():
                cols = [index[n] for n in head_lookaheads(variant)[name]]
                logits = h(ctx[:, cols].float())
                loss = loss + nn.functional.cross_entropy(
                    logits.flatten(0, 1), y[:, cols].flatten(), ignore_index=-100
                )
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        total += float(loss.detach()) / len(heads)
        count += 1
        if (step + 1) % 250 == 0 and not quiet:
            log.append({"step": step + 1, "loss": total / count,
                        "seconds": time.perf_counter() - t0})  # fmt: skip
            print(f"  {variant} W={seconds_w}s step {step + 1}: loss {total / count:.3f} "
                  f"({time.perf_counter() - t0:.0f} s)", flush=True)  # fmt: skip
            total, count = 0.0, 0
    if dev.startswith("cuda"):
        torch.cuda.synchronize()
    seconds = time.perf_counter() - t0
    weights = {}
    for name, h in heads.items():
        for k, v in h.state_dict().items():
            weights[f"{name}.{k}"] = v.detach().half().cpu().contiguous()
    trained = {id(p) for p in enc_params}
    for k, p in enc.named_parameters():
        if id(p) in trained:
            weights[f"model.encoder.{k}"] = p.detach().half().cpu().contiguous()
    config = {"variant": variant, "window_s": seconds_w, "lookaheads": head_lookaheads(variant),
              "layers": ["final", LAYER3], "context": 1, "hidden": 256, "n_visemes": 15,
              "steps": args.steps, "batch": args.batch, "encoder_lr": args.encoder_lr,
              "seed": args.seed, "train_minutes": data.seconds / 60, "log": log,
              "seconds": seconds, "device": dev}  # fmt: skip
    return weights, config


def cmd_train(args) -> int:
    from safetensors.torch import save_file

    args.out.mkdir(parents=True, exist_ok=True)
    if args.device.startswith("cuda"):
        torch.backends.cuda.matmul.allow_tf32 = True
        print(torch.cuda.get_device_name(), flush=True)
    data = Windows(args.data, args.device, args.seed)
    print(f"{len(data.frames)} utterances, {data.seconds / 60:.1f} min", flush=True)
    if args.budget_s:  # time a few steps of each run; scale the step count to fit the budget
        steps, args.steps = args.steps, 8
        per_step = 0.0
        train_one(args, data, args.variants[-1], args.windows[-1], quiet=True)  # warm-up
        for w in args.windows:
            for variant in args.variants:
                per_step += train_one(args, data, variant, w, quiet=True)[1]["seconds"] / 8
        args.steps = max(100, min(steps, int(args.budget_s / per_step)))
        print(
            f"{per_step:.3f} s per step of every run together: {args.steps} steps "
            f"(asked {steps}, budget {args.budget_s:.0f} s)",
            flush=True,
        )
    for w in args.windows:
        for variant in args.variants:
            weights, config = train_one(args, data, variant, w)
            save_file(weights, str(args.out / f"{variant}-w{w}.safetensors"))
            (args.out / f"{variant}-w{w}.json").write_text(json.dumps(config, indent=1))
            print(f"{variant}-w{w}: {config['seconds']:.0f} s", flush=True)
    return 0


# -- eval --------------------------------------------------------------------------------------


def load_model(models: Path, data: Path, variant: str, w: int):
    from safetensors.torch import load_file

    weights = load_file(str(models / f"{variant}-w{w}.safetensors"))
    enc = load_encoder(data, weights)
    heads = {}
    for name in head_lookaheads(variant):
        h = Head()
        h.load_state_dict({k[len(name) + 1 :]: v.float() for k, v in weights.items()
                           if k.startswith(name + ".")})  # fmt: skip
        heads[name] = h.eval()
    return enc, heads


@torch.inference_mode()
def stream_logits(enc, heads, variant, w, utts, filters, batch=64, device="cpu") -> dict:
    """{(n, hop frames): [per clip: logits [T, 15]]}: frame k from the window ending at the first
    multiple of the hop at or after k + 1 + n (encoder frames from the stream's start)."""
    n_frames = 50 * w
    front, back = 100, 25  # 2 s before, 0.5 s after (in encoder frames)
    hops = (2, 4) if w == 1 else (2,)
    out = {(n, h): [] for n in LOOKAHEADS for h in hops}
    ns = tuple(range(3, 19))
    for u in utts:
        mel = stream_mel(u.audio, filters, front, back).to(device)
        t = u.frames
        last = front + t + 19  # window ends needed: up to frame T − 1 + 18 (+ 1)
        ends = list(range(2 * ((front + 1 + 3) // 2), last + 4, 2))
        ends = [e for e in ends if 2 * e <= len(mel)]
        logits = {}
        for i in range(0, len(ends), batch):
            es = ends[i : i + batch]
            x = torch.stack([mel[2 * (e - n_frames) : 2 * e] for e in es])
            ctx = context(enc(window_input(x)), ns)  # [B, 16, 2304]
            for n in LOOKAHEADS:
                for j in range(BAND):
                    head = heads[head_for(variant, n)]
                    logits[(n, j)] = logits.get((n, j), []) + [head(ctx[:, ns.index(n + j)])]
        end_of = {e: i for i, e in enumerate(ends)}
        for n in LOOKAHEADS:
            cat = {j: torch.cat(logits[(n, j)]) for j in range(BAND)}
            for h in hops:
                rows = []
                for k in range(front, front + t):
                    e = -(-(k + 1 + n) // h) * h  # first window end on the hop's grid
                    rows.append(cat[e - (k + 1 + n)][end_of[e]])
                out[(n, h)].append(torch.stack(rows).float().cpu().numpy())
    return out


class Clip:
    """A clip of a scored set as `stream_logits` needs it."""

    def __init__(self, audio: np.ndarray, frames: int):
        self.audio, self.frames = audio, frames


def aligned_sets(sets: list[str], root: Path) -> dict:
    """{set: utterances}: each set aligned and exported once into ``root``/<set> by
    `bench/real_speech.py`'s `align_and_export`, then read back."""
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from real_speech import align_and_export

    from audio2anim.train.data import load_data

    out = {}
    for name in sets:
        setdir = root / name
        if not (setdir / "export").is_dir():
            setdir.mkdir(parents=True, exist_ok=True)
            align_and_export(name, setdir)
        out[name] = load_data(setdir / "export").utterances
    return out


def cmd_sets(args) -> int:
    """Align the scored sets into ``--sets-dir`` and pack their audio for `cmd_logits`."""
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from real_speech import parse_sets

    sets = aligned_sets(parse_sets(args.sets), args.sets_dir)
    arrays = {}
    for name, utts in sets.items():
        arrays[f"{name}/audio"] = np.concatenate(
            [np.round(np.clip(u.audio, -1, 1) * 32767).astype(np.int16) for u in utts]
        )
        arrays[f"{name}/frames"] = np.array([u.frames for u in utts], np.int64)
    np.savez_compressed(args.out, **arrays)
    print(f"{', '.join(f'{k}: {len(v)} clips' for k, v in sets.items())} → {args.out}")
    return 0


def cmd_logits(args) -> int:
    """Stream every model of ``--models`` over the packed sets (fp32, no TF32); save logits."""
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    z = np.load(args.sets)
    names = sorted({k.split("/")[0] for k in z.files})
    filters = mel_filters(args.data)
    out = {}
    for w in args.windows:
        for variant in args.variants:
            if not (args.models / f"{variant}-w{w}.safetensors").is_file():
                continue
            t0 = time.perf_counter()
            enc, heads = load_model(args.models, args.data, variant, w)
            enc, heads = enc.to(args.device), {k: h.to(args.device) for k, h in heads.items()}
            for name in names:
                frames = z[f"{name}/frames"]
                audio = z[f"{name}/audio"].astype(np.float32) / 32767
                bounds = np.concatenate([[0], np.cumsum(frames * 320)])
                clips = [
                    Clip(audio[a:b], int(t))
                    for a, b, t in zip(bounds, bounds[1:], frames, strict=False)
                ]
                logits = stream_logits(enc, heads, variant, w, clips, filters, batch=256,
                                       device=args.device)  # fmt: skip
                for (n, h), lg in logits.items():
                    out[f"{variant}-w{w}/{name}/{n}/{h}"] = np.concatenate(lg).astype(np.float16)
            print(f"logits {variant}-w{w}: {time.perf_counter() - t0:.0f} s", flush=True)
    np.savez_compressed(args.out, **out)
    return 0


def score(utts, posts, predictor) -> dict:
    from audio2anim.train.evaluate import _figures, _tally

    acc: dict = {}
    lips: dict = {}
    for u, p in zip(utts, posts, strict=True):
        _tally(acc, "frontend", u, np.repeat(p, 2, axis=0))
        _tally(lips, "from_audio", u, predictor.predict(p))
    f = _figures("from_audio", lips)
    return {"acc": _figures("frontend", acc)["viseme_frame_accuracy"],
            "closure": f["bilabial_closure_recall"], "n_bilabial": f["segments"]["bilabial"],
            "false": f.get("false_closure_rate")}  # fmt: skip


def softmax_offset(logits: list[np.ndarray], offset: float) -> list[np.ndarray]:
    out = []
    for z in logits:
        z = z.astype(np.float64).copy()
        z[:, PP] += offset
        z -= z.max(1, keepdims=True)
        e = np.exp(z)
        out.append((e / e.sum(1, keepdims=True)).astype(np.float32))
    return out


class _Features(nn.Module):
    """The encoder's final and layer-3 states of one window: what the head reads."""

    def __init__(self, enc: Encoder):
        super().__init__()
        self.enc = enc

    def forward(self, mel):
        states = self.enc(mel)
        return torch.cat([states[-1], states[LAYER3]], dim=-1)


def encoder_seconds(w: int, threads: int, runs: int = 30) -> dict[str, tuple[float, float]]:
    """{runtime: (median, best) seconds of one encoder pass over a W-second window} for torch and
    ONNX Runtime (when installed), ``threads`` threads, random mel, 5 passes of warm-up."""
    import tempfile

    torch.set_num_threads(threads)
    enc = Encoder({"num_mel_bins": 80, "d_model": 384, "encoder_layers": 4,
                   "encoder_attention_heads": 6, "encoder_ffn_dim": 1536,
                   "max_source_positions": 1500}).eval()  # fmt: skip
    model = _Features(enc).eval()
    x = torch.randn(1, 80, 100 * w)
    calls = {"torch": lambda: model(x)}
    try:
        import onnxruntime as ort
    except ImportError:
        ort = None
    tmp = tempfile.TemporaryDirectory(prefix="whisper_stream-")
    if ort is not None:
        path = str(Path(tmp.name) / "encoder.onnx")
        torch.onnx.export(model, (x,), path, input_names=["mel"], output_names=["features"],
                          dynamo=False, opset_version=17)  # fmt: skip
        so = ort.SessionOptions()
        so.intra_op_num_threads, so.inter_op_num_threads = threads, 1
        session = ort.InferenceSession(path, so, providers=["CPUExecutionProvider"])
        feed = {"mel": x.numpy()}
        calls["onnxruntime"] = lambda: session.run(None, feed)
    out = {}
    with torch.inference_mode():
        for name, call in calls.items():
            times = []
            for i in range(runs + 5):
                t0 = time.perf_counter()
                call()
                if i >= 5:
                    times.append(time.perf_counter() - t0)
            out[name] = (float(np.median(times)), float(np.min(times)))
    tmp.cleanup()
    return out


def gpu_step_table(batches: list[int], runs: int = 50) -> str:
    """The live step on a GPU, batched over streams: one 1 s window per stream through the
    encoder (fp16, random weights of tiny.en's sizes: the cost does not depend on the values)
    and the head on one frame's context; median and p99 of ``runs`` steps after 10, and the
    streams one GPU keeps in real time at hop 40 ms (a step of N streams done within the hop)."""
    dev = "cuda"
    torch.backends.cuda.matmul.allow_tf32 = True
    enc = Encoder({"num_mel_bins": 80, "d_model": 384, "encoder_layers": 4,
                   "encoder_attention_heads": 6, "encoder_ffn_dim": 1536,
                   "max_source_positions": 1500}).eval().to(dev).half()  # fmt: skip
    head = Head().eval().to(dev).half()
    rows = [f"GPU: {torch.cuda.get_device_name()}, torch {torch.__version__}, fp16, "
            f"window 1 s (100 mel frames), lookahead 5 frames; median / p99 of {runs} steps",
            "", "| streams per step | step ms (median) | step ms (p99) | ms per stream "
            "| real time at hop 40 ms |", "|---:|---:|---:|---:|---|"]  # fmt: skip
    with torch.inference_mode():
        for n in batches:
            mel = torch.randn(n, 100, 80, device=dev)
            times = []
            for i in range(runs + 10):
                torch.cuda.synchronize()
                t0 = time.perf_counter()
                x = window_input(mel).half()
                head(context(enc(x), (5,))[:, 0])
                torch.cuda.synchronize()
                if i >= 10:
                    times.append(time.perf_counter() - t0)
            med, p99 = np.median(times) * 1e3, np.percentile(times, 99) * 1e3
            rows.append(f"| {n} | {med:.2f} | {p99:.2f} | {med / n:.3f} | "
                        f"{'yes' if p99 <= 40.0 else 'no'} |")  # fmt: skip
    return "\n".join(rows)


def cmd_gpu_cost(args) -> int:
    if not torch.cuda.is_available():
        print("whisper_stream.py gpu-cost: no CUDA device", file=sys.stderr)
        return 2
    table = gpu_step_table([int(b) for b in args.batches.split(",")])
    print(table)
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(table + "\n")
    return 0


def cost_table(threads: int) -> tuple[str, dict]:
    """The CPU cost table and {W: (% of a core at hop 40, at hop 80)} of torch's median."""
    torch.set_num_threads(threads)
    filters = mel_filters()
    audio = np.random.default_rng(0).standard_normal(RATE).astype(np.float32) * 0.1
    head = Head().eval()
    x = torch.randn(4, 3 * 768)

    def median_ms(call, runs=50):
        times = []
        for i in range(runs + 5):
            t0 = time.perf_counter()
            call()
            if i >= 5:
                times.append(time.perf_counter() - t0)
        return float(np.median(times)) * 1000

    with torch.inference_mode():
        mel_ms = median_ms(lambda: log10_mel(audio, filters))  # the cache's work per second
        head_ms = median_ms(lambda: head(x))  # one hop: at most 4 frames
    lines = ["| window | runtime | one pass, median / best of 30 (ms) "
             "| hop 40 ms: % of a core (median / best) | hop 80 ms: % of a core (median / best) |",
             "|---|---|---|---|---|"]  # fmt: skip
    costs = {}
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    for w in (1, 2):
        for name, (med, best) in encoder_seconds(w, threads).items():

            def share(s, hops):  # % of one core: encoder + head per hop, mel per second
                return (s * 1000 * hops + head_ms * hops + mel_ms) / 10

            lines.append(
                f"| {w} s | {name} | {med * 1000:.1f} / {best * 1000:.1f} "
                f"| {share(med, 25):.0f} / {share(best, 25):.0f} "
                f"| {share(med, 12.5):.0f} / {share(best, 12.5):.0f} |"
            )
            if name == "torch":
                costs[w] = (share(med, 25), share(med, 12.5))
    lines.append("")
    lines.append(f"Threads {threads}; load average {load:.1f} on {os.cpu_count()} cores while "
                 f"timing. Included: the cached mel, {mel_ms:.1f} ms per second of audio, and the "
                 f"head, {head_ms:.2f} ms a hop.")  # fmt: skip
    return "\n".join(lines), costs


def cmd_cost(args) -> int:
    table, _ = cost_table(args.threads)
    print(table)
    return 0


def precomputed(pre: list, prefix: str, utts) -> dict:
    """`stream_logits`' dict from `cmd_logits`' files (keys ``prefix/n/hop``), split per clip."""
    out = {}
    bounds = np.cumsum([0] + [u.frames for u in utts])
    for z, key in ((f, k) for f in pre for k in f.files):
        if key.startswith(prefix + "/"):
            n, h = map(int, key[len(prefix) + 1 :].split("/"))
            lg = z[key].astype(np.float32)
            if len(lg) != bounds[-1]:
                raise SystemExit(f"{key}: {len(lg)} frames, the aligned set has {bounds[-1]}")
            out[(n, h)] = [lg[a:b] for a, b in zip(bounds, bounds[1:], strict=False)]
    return out


def cmd_eval(args) -> int:
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    import tempfile

    from perf_page import write_from_args
    from real_speech import parse_sets

    from audio2anim.models.checkpoint import load
    from audio2anim.resources import PACKAGE_CHECKPOINTS
    from audio2anim.train.evaluate import evaluate, fmt

    os.environ.setdefault("TQDM_DISABLE", "1")
    torch.set_num_threads(args.threads)
    sets = parse_sets(args.sets)
    if sets[0] != "tuxpaint":
        raise SystemExit("--sets: tuxpaint (the validation set) must come first")
    filters = mel_filters(args.data)
    predictor, _ = load(PACKAGE_CHECKPOINTS / "viseme-cnn")
    results: dict = {}  # (variant, w, n, hop) → {set: {offset: figures}}
    shipped = {}
    pre = [np.load(f) for f in args.logits] if args.logits else None
    with tempfile.TemporaryDirectory(prefix="whisper_stream-") as tmp:
        all_sets = aligned_sets(sets, args.sets_dir or Path(tmp))
        for name in sets:
            utts = all_sets[name]
            from audio2anim.models.logmel import logmel
            from audio2anim.models.viseme_frontend import downsample_posteriors

            front, _ = load(PACKAGE_CHECKPOINTS / "viseme-frontend")
            with torch.inference_mode():
                sp = [downsample_posteriors(front.posteriors(logmel(u.audio))) for u in utts]
            shipped[name] = score(utts, sp, predictor)
            shipped[name]["acc"] = evaluate(PACKAGE_CHECKPOINTS / "viseme-frontend", utts)[
                "viseme_frame_accuracy"]  # fmt: skip
            for w in args.windows:
                for variant in args.variants:
                    t0 = time.perf_counter()
                    if pre is not None:
                        logits = precomputed(pre, f"{variant}-w{w}/{name}", utts)
                        if not logits:
                            print(f"no {variant}-w{w} in {args.logits}: skipped", flush=True)
                            continue
                    elif not (args.models / f"{variant}-w{w}.safetensors").is_file():
                        print(f"no {variant}-w{w} in {args.models}: skipped", flush=True)
                        continue
                    else:
                        enc, heads = load_model(args.models, args.data, variant, w)
                        logits = stream_logits(enc, heads, variant, w, utts, filters)
                    offsets = OFFSETS if name == "tuxpaint" else None
                    for key, lg in logits.items():
                        row = results.setdefault((variant, w, *key), {})
                        chosen = offsets or (row["offset"],)
                        figs = {b: score(utts, softmax_offset(lg, b), predictor) for b in chosen}
                        if name == "tuxpaint":

                            def merit(b, figs=figs):
                                f = figs[b]
                                return (f["closure"] or 0) - (f["false"] or 0)

                            row["offset"] = max(OFFSETS, key=merit)
                        row[name] = figs[row["offset"]]
                    print(f"{name} {variant}-w{w}: {time.perf_counter() - t0:.0f} s", flush=True)
    cost, costs = cost_table(args.threads)
    head = ["| encoder | W | L (ms) | hop (ms) | latency (ms) | PP offset | encoder CPU (% core) "]
    sep = ["|---|---|---|---|---|---|---"]
    for name in sets:
        head.append(f"| {name} acc. | {name} closure | {name} false cl. ")
        sep.append("|---|---|---")
    lines = ["".join(head) + "|", "".join(sep) + "|"]

    def cells(figs):
        out = []
        for name in sets:
            f = figs[name]
            closure = (f"{fmt(f['closure'])} ({f['n_bilabial']})" if f["n_bilabial"]
                       else "n/a")  # fmt: skip
            out.append(f"| {fmt(f['acc'])} | {closure} | {fmt(f['false'])} ")
        return "".join(out)

    lines.append("| shipped front end | – | – | – | – | 1.0 | – " + cells(shipped) + "|")
    for (variant, w, n, hop), row in sorted(results.items(), key=lambda kv: (
            VARIANTS.index(kv[0][0]), kv[0][1], kv[0][3], kv[0][2])):  # fmt: skip
        if not all(s in row for s in sets):
            continue
        cpu = costs[w][0 if hop == 2 else 1]
        lines.append(f"| {variant} | {w} s | {20 * n} | {20 * hop} | {20 * (n + hop - 1)} "
                     f"| {row['offset']} | {cpu:.0f} " + cells(row) + "|")  # fmt: skip
    table = "\n".join(lines)
    text = table + "\n\n" + cost + "\n"
    print()
    print(text)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text)
    write_from_args(args, "whisper-stream", text)
    return 0


def cmd_export(args) -> int:
    """One trained model as a self-contained folder: ``encoder.safetensors`` (the whole encoder,
    fp16, ``model.encoder.*``), ``head.safetensors`` (fp16) and ``config.json``."""
    from safetensors.torch import load_file, save_file

    name = f"{args.variant}-w{args.window}"
    weights = load_file(str(args.models / f"{name}.safetensors"))
    enc = load_encoder(args.data, weights)
    config = json.loads((args.models / f"{name}.json").read_text())
    head = head_for(args.variant, args.lookahead)
    if head not in head_lookaheads(args.variant):
        raise SystemExit(f"--lookahead: {name} has no head for {args.lookahead}")
    args.out.mkdir(parents=True, exist_ok=True)
    save_file({f"model.encoder.{k}": v.half().contiguous() for k, v in enc.state_dict().items()},
              str(args.out / "encoder.safetensors"))  # fmt: skip
    save_file({k[len(head) + 1 :]: v for k, v in weights.items() if k.startswith(head + ".")},
              str(args.out / "head.safetensors"))  # fmt: skip
    config.pop("log", None)
    config.update({
        "encoder": enc.cfg, "head_trained_lookaheads": config["lookaheads"][head],
        "lookahead_frames": args.lookahead, "hop_frames": args.hop_frames,
        "frame_rate": 50.0, "sample_rate": RATE, "n_fft": N_FFT, "mel_hop": HOP,
        "pp_log_odds_offset": args.pp_offset,
    })  # fmt: skip
    config.pop("lookaheads", None)
    (args.out / "config.json").write_text(json.dumps(config, indent=1))
    print(f"{name} ({head}) → {args.out}")
    return 0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("pack", help="training corpora → compact log-mel + fp16 encoder")
    p.add_argument("--train", type=Path, action="append", required=True, help="corpus folder")
    p.add_argument("--every", action="append", metavar="NAME=N",
                   help="keep every N-th utterance of the --train folder named NAME")  # fmt: skip
    p.add_argument("--out", type=Path, required=True)
    p = sub.add_parser("train", help="train heads / fine-tune on packed data")
    p.add_argument("--data", type=Path, required=True, help="pack's output folder")
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--variants", default="frozen,last2,all")
    p.add_argument("--windows", default="1,2")
    p.add_argument("--steps", type=int, default=3000)
    p.add_argument("--batch", type=int, default=128)
    p.add_argument("--encoder-lr", type=float, default=5e-5)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--budget-s",
        type=float,
        default=0.0,
        help="fewer steps if all runs together would take longer (0: no limit)",
    )
    p = sub.add_parser("eval", help="stream the real-speech sets on the CPU and score")
    p.add_argument("--models", type=Path, required=True, help="train's output folder")
    p.add_argument("--data", type=Path, required=True, help="pack's output folder (encoder)")
    p.add_argument("--sets", default="tuxpaint,alsa,ktuberling")
    p.add_argument("--variants", default="frozen,last2,all")
    p.add_argument("--windows", default="1,2")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--out", default="out/whisper_stream.md")
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from perf_page import add_arguments

    add_arguments(p)
    p.add_argument("--sets-dir", type=Path, help="keep the aligned sets here (reused)")
    p.add_argument(
        "--logits",
        type=Path,
        action="append",
        help="logits file of the logits command instead of streaming here (repeatable)",
    )
    p = sub.add_parser("sets", help="align the scored sets; pack their audio")
    p.add_argument("--sets", default="tuxpaint,alsa,ktuberling")
    p.add_argument("--sets-dir", type=Path, required=True)
    p.add_argument("--out", type=Path, required=True, help="audio file (.npz)")
    p = sub.add_parser("logits", help="stream the packed sets through trained models")
    p.add_argument("--sets", type=Path, required=True, help="sets' audio file (.npz)")
    p.add_argument("--models", type=Path, required=True)
    p.add_argument("--data", type=Path, required=True)
    p.add_argument("--variants", default="frozen,last2,all")
    p.add_argument("--windows", default="1,2")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--out", type=Path, required=True, help="logits file (.npz)")
    p = sub.add_parser("export", help="one trained model as encoder + head + config")
    p.add_argument("--models", type=Path, required=True)
    p.add_argument("--data", type=Path, required=True)
    p.add_argument("--variant", required=True, choices=VARIANTS)
    p.add_argument("--window", type=int, required=True, choices=(1, 2))
    p.add_argument("--lookahead", type=int, required=True, help="encoder frames")
    p.add_argument("--hop-frames", type=int, required=True)
    p.add_argument("--pp-offset", type=float, required=True)
    p.add_argument("--out", type=Path, required=True)
    p = sub.add_parser("cost", help="CPU cost of the streaming encoder")
    p.add_argument("--threads", type=int, default=1)
    p = sub.add_parser("gpu-cost", help="the live step on a GPU, batched over streams")
    p.add_argument("--batches", default="1,8,32,128,256,512,1024")
    p.add_argument("--out", help="also write the table here")
    args = ap.parse_args()
    for key in ("variants", "windows"):
        if hasattr(args, key):
            vals = [v.strip() for v in getattr(args, key).split(",") if v.strip()]
            if key == "windows":
                bad = [v for v in vals if v not in ("1", "2")]
                vals = [int(v) for v in vals if v in ("1", "2")]
            else:
                bad = [v for v in vals if v not in VARIANTS]
            if bad or not vals:
                raise SystemExit(f"--{key}: unknown value {bad[0] if bad else '(none)'!r}")
            setattr(args, key, vals)
    commands = {"pack": cmd_pack, "train": cmd_train, "sets": cmd_sets, "logits": cmd_logits,
                "eval": cmd_eval, "export": cmd_export, "cost": cmd_cost,
                "gpu-cost": cmd_gpu_cost}  # fmt: skip
    return commands[args.cmd](args)


if __name__ == "__main__":
    sys.exit(main())
