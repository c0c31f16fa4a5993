"""``feature.wav2vec2``: 16 kHz audio → Wav2Vec 2.0 features at 50 Hz, streaming.

Sits after ``resample`` and before a wav2vec predictor (the wav2vec method)::

    src → rs (resample 16000) → feat (feature.wav2vec2) → pred (predictor.w2v_*) → smooth → …

Ports: ``in`` `Audio` (16 kHz mono) → ``out`` `Features` [frames, D] at 50 Hz, ``kind``
``w2v2-`` + the feature (e.g. ``w2v2-posteriors``, ``w2v2-hidden-4``). Frame j covers the audio
ending at (j + 1) × 20 ms; its media time is j × 20 ms after the stream start (after a
discontinuity: after the packet following the gap; the stream is flushed and restarts there).

Streaming (`audio2anim.models.wav2vec_stream.Wav2Vec2Stream`):

- the shipped model (``checkpoints/wav2vec2``) was trained with chunked attention (5-frame
  chunks, 10 chunks of left context), so it streams exactly: the feature encoder runs only on
  new audio, every transformer layer keeps its inputs of the left-context chunks, and a chunk
  leaves once its last frame (plus one frame for the positional convolution) has arrived — a
  bounded lookahead of 4 + 1 frames, 100 ms at most, which is ``latency()``. The output equals
  the whole-utterance features.
- any other Hugging Face Wav2Vec2 checkpoint (a directory, or a hub id already in the local
  cache — nothing is downloaded while a graph runs) uses full attention; it runs every
  ``hop_ms`` on a window of ``context_ms`` past audio, the new audio and ``lookahead_ms`` of
  future audio (``latency()`` = ``lookahead_ms`` + the hop). This approximates its
  whole-utterance features, more closely with more context.
- an ensemble directory (`audio2anim.models.wav2vec_ensemble`) streams each member as above
  and emits the mean of their posteriors (``hidden-N``: their hidden states side by side).

Params: ``model`` (directory or hub id), ``feature`` (``posteriors`` = softmax of the CTC
logits, ``hidden-N`` = hidden states after layer N, or ``posteriors+hidden-N`` = both; default:
the checkpoint's),
``device`` (``cpu`` | ``cuda``; ``fp16`` applies on cuda), ``hop_ms`` (how often the model runs:
at least every 20 ms frame; chunked models emit per complete chunk, so a hop below a chunk
changes nothing), ``context_ms`` and ``lookahead_ms`` (the window of full-attention models),
``phone_bias`` (log-odds offsets per phone of the posteriors features, e.g. ``{P: 2, B: 2,
M: 2}``, replacing the checkpoint's; ``{}`` = none: P/B/M heard more eagerly, so predictors
reading posteriors close the lips more often).

Example node::

    feat: {op: feature.wav2vec2, params: {model: checkpoints/wav2vec2, feature: posteriors}}
    feat: {op: feature.wav2vec2, params: {model: /data/wav2vec2-base-960h, feature: hidden-6,
                                          device: cuda, hop_ms: 40, lookahead_ms: 200}}
"""

from __future__ import annotations

import json
from typing import Literal

import numpy as np
from pydantic import Field, field_validator

from audio2anim.audio import MODEL_RATE as SAMPLE_RATE
from audio2anim.graph.formats import Format
from audio2anim.graph.operator import MediaClock, Operator, OperatorParams, Outputs, Port
from audio2anim.graph.packets import Packet
from audio2anim.graph.registry import register
from audio2anim.models.torch_threads import configure_torch_threads
from audio2anim.resources import find_checkpoint
from audio2anim.streams import Audio, Features

FRAME_S = 0.02


class Wav2Vec2Params(OperatorParams):
    model: str = Field(
        "checkpoints/wav2vec2", description="wav2vec2 checkpoint directory or Hugging Face hub id"
    )
    feature: str | None = Field(
        None,
        description="'posteriors', 'hidden-N' or 'posteriors+hidden-N' (default: what the "
        "checkpoint stores)",
    )
    device: Literal["cpu", "cuda"] = Field("cpu", description="where the model runs")
    fp16: bool = Field(True, description="half precision on cuda (ignored on cpu)")
    hop_ms: float = Field(20.0, ge=20, le=2000, description="run the model every this much audio")
    context_ms: float = Field(
        1000.0, ge=0, le=30000, description="full-attention models: past audio in the window"
    )
    lookahead_ms: float = Field(
        100.0, ge=0, le=5000, description="full-attention models: future audio in the window"
    )
    phone_bias: dict[str, float] | None = Field(
        None,
        description="log-odds offset per phone of the posteriors features, e.g. {P: 2, B: 2, "
        "M: 2}, replacing the checkpoint's (None: the checkpoint's; {}: none)",
    )

    @field_validator("feature")
    @classmethod
    def _feature(cls, v: str | None) -> str | None:
        from audio2anim.models.wav2vec_features import hidden_layer

        if v is not None:
            hidden_layer(v)  # ValueError naming it
        return v


def _frames(ms: float) -> int:
    return max(0, round(ms / 1000 / FRAME_S))


@register("feature.wav2vec2")
class Wav2Vec2Features(Operator):
    """16 kHz audio → Wav2Vec 2.0 CTC posteriors or hidden states at 50 Hz (streaming)."""

    Params = Wav2Vec2Params
    inputs = {"in": Port(Audio, doc="16 kHz mono audio")}
    outputs = {"out": Port(Features, doc="wav2vec2 features at 50 Hz")}
    executor = "thread"

    def _source(self) -> str:
        """The model's local directory: a checkpoint directory, or a hub id's snapshot in the
        local Hugging Face cache (never downloaded here: a graph must not stall on the net)."""
        found = find_checkpoint(self.params.model)
        if found:
            return str(found)
        from huggingface_hub import snapshot_download

        try:
            return snapshot_download(self.params.model, local_files_only=True)
        except Exception as e:  # not a valid repo id, or not in the cache
            raise FileNotFoundError(
                f"feature.wav2vec2: model {self.params.model!r}: not a checkpoint directory and "
                f"not in the local Hugging Face cache ({type(e).__name__}); download it first, "
                "e.g. `huggingface-cli download ID`"
            ) from None

    def setup(self) -> None:
        import torch

        configure_torch_threads()

        from audio2anim.models.wav2vec import load_wav2vec2
        from audio2anim.models.wav2vec_stream import open_stream

        p = self.params
        if p.device == "cuda" and not torch.cuda.is_available():
            raise RuntimeError("feature.wav2vec2: device 'cuda' but torch sees no GPU")
        front = load_wav2vec2(self._source(), device=p.device, feature=p.feature)
        if p.phone_bias is not None:
            try:
                front.set_phone_bias(p.phone_bias)
            except ValueError as e:
                raise ValueError(f"feature.wav2vec2: {e}") from None
        dtype = torch.float16 if (p.device == "cuda" and p.fp16) else torch.float32
        front = front.to(dtype)
        self.stream = open_stream(
            front,
            hop_frames=max(1, _frames(p.hop_ms)),
            context_frames=_frames(p.context_ms),
            lookahead_frames=_frames(p.lookahead_ms),
            dtype=dtype,
        )
        # first calls allocate; pay for that here, not on the first live packet
        self.stream.push(np.zeros(SAMPLE_RATE // 2, np.float32))
        self.stream.flush()
        self.stream.reset()
        self.kind = f"w2v2-{front.feature}"
        self.dims = int(self.stream.dim)
        self.clock = MediaClock(1 / FRAME_S)

    def reset(self) -> None:
        self.stream.reset()
        self.clock.reset()

    def input_format(self, port):
        return Format(rate=SAMPLE_RATE, channels=1)

    def output_format(self, port, inputs):
        return Format(rate=1 / FRAME_S, width=self.dims, kind=self.kind)

    def latency(self) -> float:
        p = self.params
        hop = max(1, _frames(p.hop_ms))
        chunk, right = self._chunking()
        if chunk is None:
            return (_frames(p.lookahead_ms) + hop - 1) * FRAME_S
        return (chunk - 1 + right + max(0, hop - chunk)) * FRAME_S

    def _chunking(self) -> tuple[int | None, int]:
        """(chunk frames or None for full attention, positional conv right context)."""
        stream = getattr(self, "stream", None)
        if stream is not None:
            return stream.front.chunk_frames, stream.pos_right
        found = find_checkpoint(self.params.model)
        if found is None:
            return None, 0
        try:
            cfg = json.loads((found / "config.json").read_text())
        except (OSError, ValueError):
            return None, 0
        k = int(cfg.get("num_conv_pos_embeddings", 128))
        chunk = (cfg.get("audio2anim") or {}).get("hparams", {}).get("chunk_frames")
        return chunk, k - 1 - k // 2

    def process(self, port: str, packet: Packet) -> Outputs:
        configure_torch_threads()
        audio: Audio = packet.payload
        audio.require_rate(SAMPLE_RATE, "feature.wav2vec2")
        self.clock.input(packet)
        return self._emit(self.stream.push(audio.samples))

    def flush(self) -> Outputs:
        configure_torch_threads()
        return self._emit(self.stream.flush())

    def _emit(self, feats) -> Outputs:
        if len(feats) == 0:
            return None
        return (Packet(Features(feats, 1 / FRAME_S, self.kind), self.clock.take(len(feats))),)
