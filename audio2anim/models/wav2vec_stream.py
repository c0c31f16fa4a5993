"""Streaming inference of a `Wav2Vec2FrontEnd`: audio blocks in, 50 Hz feature frames out.

`Wav2Vec2Stream.push(samples)` returns the feature frames [k, D] that the audio received so far
completes; `flush()` returns the rest at the end of the stream. Two modes, picked from the
model:

- **chunked** (the model was trained with chunked attention, ``front.chunk_frames`` set — our
  shipped model): exact. Every stage is computed once per frame and cached:
  the feature encoder runs only on new audio (plus the 80 samples of left context its 400-sample
  window overlaps; exact for ``feat_extract_norm="layer"``, whose norms are per frame), the
  feature projection per frame, the positional convolution over the frames it needs, and each
  transformer layer over the new chunk plus the cached inputs of that layer for the
  ``left_chunks`` chunks the new chunk may attend to. A chunk leaves as soon as its last frame
  and the positional convolution's right context (``K - 1 - K // 2`` frames, K its kernel) have
  arrived. The concatenated output equals `Wav2Vec2FrontEnd.features` of the whole utterance
  (checked in the tests), whatever the block sizes.
- **windowed** (full-attention models, e.g. any Hugging Face Wav2Vec2 checkpoint): every
  ``hop_frames`` new frames, the model runs on a window of ``context_frames`` past frames, the
  new frames and ``lookahead_frames`` future frames, and the new frames' outputs are kept. This
  approximates the full-utterance features (the model was trained seeing all of it); the
  approximation improves with the context and lookahead. Models with
  ``feat_extract_norm="group"`` (wav2vec2-base) normalize over time in the first conv layer,
  so their feature encoder is recomputed over the window as well.

Frame ``j`` is computed from the samples ending at ``320 (j + 1)`` (see `wav2vec`), so frame j's
media time is ``j * 0.02`` s and an utterance of n samples has ``n // 320`` frames.
"""

from __future__ import annotations

import numpy as np
import torch
from torch.nn import functional as F

from .wav2vec import LEFT_PAD, Wav2Vec2FrontEnd
from .wav2vec_ensemble import Wav2Vec2Ensemble

_EMPTY = np.zeros((0, 0), np.float32)


class Wav2Vec2Stream:
    """Block-wise features of a `Wav2Vec2FrontEnd` (see the module docstring).

    ``hop_frames``: run the model after at least this many new frames (chunked mode: chunks
    are emitted when complete, several at once if the hop spans several). ``context_frames`` /
    ``lookahead_frames``: the window of the windowed mode (ignored in chunked mode, whose
    context and lookahead the training fixed). ``dtype``: torch.float16 on a GPU for speed.
    """

    def __init__(
        self,
        front: Wav2Vec2FrontEnd,
        hop_frames: int = 1,
        context_frames: int = 50,
        lookahead_frames: int = 5,
        dtype: torch.dtype = torch.float32,
    ) -> None:
        if hop_frames < 1 or context_frames < 0 or lookahead_frames < 0:
            raise ValueError("hop_frames >= 1, context_frames >= 0 and lookahead_frames >= 0")
        cfg = front.model.config
        if front.chunk_frames is not None and cfg.feat_extract_norm != "layer":
            raise ValueError(
                f"chunked Wav2Vec2Stream needs feat_extract_norm='layer' (this model has "
                f"{cfg.feat_extract_norm!r}, which normalizes over the whole utterance)"
            )
        if getattr(cfg, "adapter_attn_dim", None) or cfg.add_adapter:
            raise ValueError("Wav2Vec2Stream does not support adapter layers")
        self.front = front.eval()
        self.cfg = cfg
        self.device = next(front.parameters()).device
        self.dtype = dtype
        self.hop = front.hop
        self.hop_frames = hop_frames
        self.chunked = front.chunk_frames is not None
        self.incremental_encoder = cfg.feat_extract_norm == "layer" and not front.normalize_input
        k = cfg.num_conv_pos_embeddings
        self.pos_left = k // 2
        self.pos_right = k - 1 - k // 2
        self.layer = front._hidden_layer()
        self.dim = front.feature_dim
        if self.chunked:
            self.lookahead = front.chunk_frames - 1 + self.pos_right
        else:
            self.context_frames, self.lookahead = context_frames, lookahead_frames
        self.reset()

    @property
    def lookahead_s(self) -> float:
        """Worst-case algorithmic lookahead in seconds (how far past a frame's end it waits)."""
        return self.lookahead * self.hop / 16000

    def reset(self) -> None:
        self.audio = np.zeros(LEFT_PAD, np.float32)  # padded-stream samples not yet framed
        self.audio_start = 0  # padded-stream index of self.audio[0]
        self.frames_in = 0  # frames whose audio is complete (n // 320)
        self.samples = 0
        self.emitted = 0
        self.ended = False
        h = self.cfg.hidden_size
        self.proj = torch.zeros(0, h, device=self.device, dtype=self.dtype)  # projected frames
        self.proj_start = 0  # frame index of self.proj[0]
        if self.chunked:
            # the positional conv's left zero padding, as in the full forward
            self.proj = torch.zeros(self.pos_left, h, device=self.device, dtype=self.dtype)
            self.proj_start = -self.pos_left
            self.layer_cache = [
                torch.zeros(0, h, device=self.device, dtype=self.dtype) for _ in range(
                    self.cfg.num_hidden_layers
                )
            ]  # fmt: skip

    # -- feature encoder -----------------------------------------------------------------

    def _encode_new_frames(self) -> None:
        """Project every frame whose audio is complete and not yet projected (incremental)."""
        done = self.proj_start + len(self.proj)
        n_new = self.frames_in - done
        if n_new <= 0:
            return
        # frame j covers padded samples [320 j, 320 j + 400)
        a = done * self.hop - self.audio_start
        b = (self.frames_in - 1) * self.hop + self.hop + LEFT_PAD - self.audio_start
        x = torch.as_tensor(self.audio[a:b], device=self.device, dtype=self.dtype)[None]
        w2v = self.front.model.wav2vec2
        ext = w2v.feature_extractor(x).transpose(1, 2)
        proj, _ = w2v.feature_projection(ext)
        self.proj = torch.cat([self.proj, proj[0]])
        # keep only the samples later frames still need: from 320 * frames_in on
        keep_from = self.frames_in * self.hop - self.audio_start
        self.audio = self.audio[keep_from:]
        self.audio_start += keep_from

    # -- chunked (exact) mode --------------------------------------------------------------

    def _pos_conv(self, frames: torch.Tensor) -> torch.Tensor:
        """Positional embedding of the frames in the middle of ``frames`` (the conv's left and
        right context included at the ends), valid convolution → [len - K + 1, H]."""
        conv = self.front.model.wav2vec2.encoder.pos_conv_embed.conv
        y = F.conv1d(frames.T[None], conv.weight, conv.bias, groups=conv.groups)
        act = self.front.model.wav2vec2.encoder.pos_conv_embed.activation
        return act(y)[0].T

    def _run_chunks(self, final: bool) -> list[torch.Tensor]:
        c = self.front.chunk_frames
        outs = []
        while True:
            first = self.emitted
            last = min(first + c, self.frames_in)  # frames [first, last) of the next chunk
            if last <= first:
                break
            complete = last == first + c
            need = last - 1 + self.pos_right  # last projected frame the pos conv reads
            have = self.proj_start + len(self.proj) - 1
            if not final and (not complete or need > have):
                break
            proj = self.proj
            if need > have:  # end of stream: the full forward's right zero padding
                pad = torch.zeros(need - have, proj.shape[1], device=proj.device, dtype=proj.dtype)
                proj = torch.cat([proj, pad])
            lo = first - self.pos_left - self.proj_start
            window = proj[lo : lo + (last - first) + self.pos_left + self.pos_right]
            mid = proj[first - self.proj_start : last - self.proj_start]
            hidden = mid + self._pos_conv(window)
            outs.append(self._layers(hidden))
            self.emitted = last
            # the pos conv of the next chunk reads from (last - pos_left) on
            drop = last - self.pos_left - self.proj_start
            self.proj, self.proj_start = self.proj[drop:], self.proj_start + drop
        return outs

    def _layers(self, hidden: torch.Tensor) -> torch.Tensor:
        """Encoder input of one chunk [n, H] → the configured feature [n, D]."""
        enc = self.front.model.wav2vec2.encoder
        if not self.cfg.do_stable_layer_norm:
            hidden = enc.layer_norm(hidden)
        picked = hidden if self.layer == 0 else None
        keep = self.front.left_chunks * self.front.chunk_frames
        for i, layer in enumerate(enc.layers):
            ctx = torch.cat([self.layer_cache[i], hidden])
            # the cache holds exactly the left_chunks chunks the new chunk may attend to, so
            # its rows attend to all of ctx (no mask); only those rows are computed
            self.layer_cache[i] = ctx[-keep:] if keep else ctx[:0]
            hidden = self._layer_on_chunk(layer, hidden[None], ctx[None])[0]
            if i + 1 == self.layer:
                picked = hidden
        return self._head(hidden, picked)

    def _layer_on_chunk(self, layer, x: torch.Tensor, ctx: torch.Tensor) -> torch.Tensor:
        """One encoder layer for the chunk's rows ``x`` [1, n, H], attending to ``ctx``
        [1, m, H] (cached left chunks + the chunk) → [1, n, H]; the same arithmetic as the
        layer's own forward restricted to the last n query rows."""
        if self.cfg.do_stable_layer_norm:
            normed = layer.layer_norm(ctx)
            attn, _ = layer.attention(normed[:, -x.shape[1] :], key_value_states=normed)
            h = x + layer.dropout(attn)
            return h + layer.feed_forward(layer.final_layer_norm(h))
        attn, _ = layer.attention(x, key_value_states=ctx)
        h = layer.layer_norm(x + layer.dropout(attn))
        return layer.final_layer_norm(h + layer.feed_forward(h))

    def _head(self, hidden: torch.Tensor, picked: torch.Tensor | None) -> torch.Tensor:
        logits = None
        if self.front.feature.startswith("posteriors"):  # "posteriors" or "posteriors+hidden-N"
            if self.cfg.do_stable_layer_norm:
                hidden = self.front.model.wav2vec2.encoder.layer_norm(hidden)
            logits = self.front.model.lm_head(hidden)
        return self.front.feature_of(logits, picked)

    # -- windowed (approximate) mode ------------------------------------------------------

    def _run_window(self, final: bool) -> list[torch.Tensor]:
        outs = []
        while True:
            first = self.emitted
            if final:
                last = self.frames_in
            else:
                last = self.frames_in - self.lookahead
                if last - first < self.hop_frames:
                    break
            if last <= first:
                break
            lo = max(0, first - self.context_frames)
            hi = min(self.frames_in, last + self.lookahead)
            if self.incremental_encoder:
                feats = self._window_from_proj(lo, hi)
            else:
                feats = self._window_from_audio(lo, hi)
            outs.append(feats[first - lo : last - lo])
            self.emitted = last
            self._trim(max(0, last - self.context_frames))
        return outs

    def _window_from_proj(self, lo: int, hi: int) -> torch.Tensor:
        """Features of frames [lo, hi): the encoder over their projected frames (the full
        forward of that window)."""
        w2v, cfg = self.front.model.wav2vec2, self.cfg
        enc = w2v.encoder
        h = self.proj[lo - self.proj_start : hi - self.proj_start][None]
        h = h + enc.pos_conv_embed(h)
        if not cfg.do_stable_layer_norm:
            h = enc.layer_norm(h)
        picked = h if self.layer == 0 else None
        for i, layer in enumerate(enc.layers, start=1):
            h = layer(h, attention_mask=None)
            if i == self.layer:
                picked = h
        return self._head(h[0], None if picked is None else picked[0])

    def _window_from_audio(self, lo: int, hi: int) -> torch.Tensor:
        """Features of frames [lo, hi): the front end's own forward over their audio."""
        a = lo * self.hop - self.audio_start
        b = hi * self.hop + LEFT_PAD - self.audio_start
        x = torch.as_tensor(self.audio[a:b], device=self.device, dtype=self.dtype)[None]
        logits, picked = self.front.run(x, self.layer)
        return self.front.feature_of(logits[0], None if picked is None else picked[0])

    def _trim(self, first_needed: int) -> None:
        """Forget projected frames and audio before frame ``first_needed``."""
        if self.incremental_encoder:
            drop = first_needed - self.proj_start
            if drop > 0:
                self.proj, self.proj_start = self.proj[drop:], first_needed
        else:
            drop = first_needed * self.hop - self.audio_start
            if drop > 0:
                self.audio, self.audio_start = self.audio[drop:], self.audio_start + drop

    # -- public API ------------------------------------------------------------------------

    @torch.no_grad()
    def push(self, samples: np.ndarray) -> np.ndarray:
        """Next block of 16 kHz mono float samples → the feature frames now complete [k, D]."""
        x = np.asarray(samples, np.float32).reshape(-1)
        self.audio = np.concatenate([self.audio, x])
        self.samples += len(x)
        self.frames_in = self.samples // self.hop
        return self._advance(final=False)

    @torch.no_grad()
    def flush(self) -> np.ndarray:
        """End of stream → the remaining frames (up to ``n // 320`` in all)."""
        return self._advance(final=True)

    def _advance(self, final: bool) -> np.ndarray:
        if self.chunked or self.incremental_encoder:
            # the chunked mode needs the projected frames; so does the incremental windowed one
            # chunked: run the model only once a hop's worth of frames is complete
            if self.chunked and not final and self.frames_in - self.emitted < self.hop_frames:
                return np.zeros((0, self.dim), np.float32)
            self._encode_new_frames()
        outs = self._run_chunks(final) if self.chunked else self._run_window(final)
        if not outs:
            return np.zeros((0, self.dim), np.float32)
        return torch.cat(outs).cpu().numpy().astype(np.float32, copy=False)


class Wav2Vec2EnsembleStream:
    """Block-wise features of a `Wav2Vec2Ensemble`: one `Wav2Vec2Stream` per member, their
    frames merged as the ensemble merges them. The members frame alike, so every push returns
    as many frames from each; the output equals the ensemble's `features` of the whole
    utterance (tested)."""

    def __init__(self, front: Wav2Vec2Ensemble, **stream_args) -> None:
        self.front = front.eval()
        self.streams = [Wav2Vec2Stream(m, **stream_args) for m in front.members]
        first = self.streams[0]
        self.pos_right, self.dim = first.pos_right, front.feature_dim

    def reset(self) -> None:
        for s in self.streams:
            s.reset()

    def push(self, samples: np.ndarray) -> np.ndarray:
        return self._merge([s.push(samples) for s in self.streams])

    def flush(self) -> np.ndarray:
        return self._merge([s.flush() for s in self.streams])

    def _merge(self, outs: list[np.ndarray]) -> np.ndarray:
        if len(outs[0]) == 0:
            return np.zeros((0, self.dim), np.float32)
        return self.front.merge([torch.from_numpy(o) for o in outs]).numpy()


def open_stream(front, **stream_args) -> Wav2Vec2Stream | Wav2Vec2EnsembleStream:
    """The stream of a front end as `load_wav2vec2` returns it (a single model or an
    ensemble); ``stream_args`` as `Wav2Vec2Stream`'s."""
    if isinstance(front, Wav2Vec2Ensemble):
        return Wav2Vec2EnsembleStream(front, **stream_args)
    return Wav2Vec2Stream(front, **stream_args)
