"""The Wav2Vec 2.0 front end: raw 16 kHz audio → 50 Hz features, via `transformers`.

The model is a stock ``transformers.Wav2Vec2ForCTC``. We train a small one from scratch with
phone CTC (`PHONE_VOCAB`: CTC blank, ``sil``, the 39 ARPAbet phones) because no pretrained
weights can be downloaded here; `load_wav2vec2` loads it — or any Hugging Face Wav2Vec2
checkpoint directory or hub id — with the real ``from_pretrained``.

Streaming: `Wav2Vec2FrontEnd.run` re-implements the encoder loop (same submodules, same
weights) so that it can pass a *chunked* attention mask: frame i in chunk c = i // C attends
to chunks c - left_chunks … c only. Trained that way, the model needs at most C - 1 frames of
right context inside the transformer, plus 1 frame from the positional convolution (we use a
kernel of 4, HF's default is 128) and the feature encoder's 25 ms window. Our small config
also uses ``feat_extract_norm="layer"`` (per-frame LayerNorm; HF's "group" norm normalizes over
the whole utterance, which no stream can do). With ``chunk_frames=None`` `run` equals the HF
forward (checked in tests).

Framing: the audio is left-padded with 80 samples so that frame ``j`` ends at sample
``320 (j + 1)``, like the log-mel frames (n samples → n // 320 frames at 50 Hz).

Features (``feature``): ``"posteriors"`` = softmax of the CTC logits (as the original system
used), ``"hidden-N"`` = hidden states after encoder layer N (0 = encoder input), matching
the HF ``output_hidden_states[N]``, or ``"posteriors+hidden-N"`` = both, side by side.

Ensembles (`models.wav2vec_ensemble.Wav2Vec2Ensemble`): `save_ensemble` writes several front
ends as one directory, which `load_wav2vec2` (or `load_ensemble`) reads back.
"""

from __future__ import annotations

import contextlib
import json
import re
from pathlib import Path

import numpy as np
import torch
from torch import nn

from audio2anim.audio import MODEL_RATE as SAMPLE_RATE

from .class_bias import bias_vector
from .sidecar import WAV2VEC2_ENSEMBLE_FORMAT, file_digests, jsonable, verify_files
from .wav2vec_ensemble import Wav2Vec2Ensemble
from .wav2vec_features import hidden_layer as feature_layer

ARPABET = [
    "AA",
    "AE",
    "AH",
    "AO",
    "AW",
    "AY",
    "B",
    "CH",
    "D",
    "DH",
    "EH",
    "ER",
    "EY",
    "F",
    "G",
    "HH",
    "IH",
    "IY",
    "JH",
    "K",
    "L",
    "M",
    "N",
    "NG",
    "OW",
    "OY",
    "P",
    "R",
    "S",
    "SH",
    "T",
    "TH",
    "UH",
    "UW",
    "V",
    "W",
    "Y",
    "Z",
    "ZH",
]
PHONE_VOCAB: tuple[str, ...] = ("<pad>", "sil", *ARPABET)  # id 0 = CTC blank
HOP = 320  # samples per frame at 16 kHz (product of the conv strides)
LEFT_PAD = 80  # 400-sample receptive field - 320 hop: makes frame j end at 320 (j + 1)

# espeak-ng phonemes (IPA or its ASCII mnemonics) → ARPAbet, for CTC labels of espeak-aligned
# utterances. Phones not listed fall back to a phone of the same viseme (`phone_label`).
_ESPEAK_TO_ARPABET = {
    "a": "AA", "ɑ": "AA", "ɑː": "AA", "A:": "AA", "aa": "AA", "æ": "AE", "a#": "AE",
    "ʌ": "AH", "V": "AH", "ə": "AH", "@": "AH", "ɐ": "AH", "3": "ER", "ɜː": "ER", "ɚ": "ER",
    "3:": "ER", "ɔ": "AO", "ɔː": "AO", "O:": "AO", "O": "AO", "ɒ": "AA", "aʊ": "AW", "aU": "AW",
    "aɪ": "AY", "aI": "AY", "ɛ": "EH", "E": "EH", "e": "EH", "eɪ": "EY", "eI": "EY",
    "ɪ": "IH", "I": "IH", "i": "IY", "iː": "IY", "i:": "IY", "oʊ": "OW", "oU": "OW", "əʊ": "OW",
    "ɔɪ": "OY", "OI": "OY", "ʊ": "UH", "U": "UH", "u": "UW", "uː": "UW", "u:": "UW",
    "b": "B", "tʃ": "CH", "tS": "CH", "d": "D", "ð": "DH", "D": "DH", "f": "F", "ɡ": "G",
    "g": "G", "h": "HH", "dʒ": "JH", "dZ": "JH", "k": "K", "l": "L", "ɫ": "L", "m": "M",
    "n": "N", "ŋ": "NG", "N": "NG", "p": "P", "ɹ": "R", "r": "R", "s": "S", "ʃ": "SH",
    "S": "SH", "t": "T", "ɾ": "T", "θ": "TH", "T": "TH", "v": "V", "w": "W", "j": "Y",
    "z": "Z", "ʒ": "ZH", "Z": "ZH",
}  # fmt: skip
# one phone per Oculus viseme (index = viseme ID), for phones no table knows
_VISEME_REPRESENTATIVE = (
    "sil", "P", "F", "TH", "D", "K", "CH", "S", "N", "R", "AA", "EH", "IH", "OW", "UW",
)  # fmt: skip
_SILENCE = {"sil", "sp", "spn", "pau", "_", "", "<sil>", "SIL"}


def phone_label(phone: str, phoneset: str) -> int:
    """CTC label id (index into `PHONE_VOCAB`) of a phone from an ``arpabet`` or ``espeak``
    alignment. Stress digits are dropped; silence → ``sil``; unknown phones map to a phone of
    the same viseme (through ``audio2anim.visemes.viseme_of``)."""
    p = phone.strip()
    if p in _SILENCE:
        return 1
    if phoneset == "arpabet":
        a = re.sub(r"\d", "", p).upper()
        if a in ARPABET:
            return PHONE_VOCAB.index(a)
    else:
        key = p.replace("ˈ", "").replace("ˌ", "").replace("'", "").replace(",", "")
        for cand in (key, key.rstrip(":ː")):
            if cand in _ESPEAK_TO_ARPABET:
                return PHONE_VOCAB.index(_ESPEAK_TO_ARPABET[cand])
    from audio2anim.visemes import viseme_of

    rep = _VISEME_REPRESENTATIVE[viseme_of(phone, phoneset)]
    return PHONE_VOCAB.index(rep) if rep in PHONE_VOCAB else 1


# The wav2vec2 sizes, as encoder dimensions (`small_config` takes any of them as overrides):
# "small" is the shipped front end (~3.5 M parameters; the default of `small_config`), "tiny" the
# size of ``--size tiny`` training and of fast tests, "base" the wav2vec2-base dimensions
# (~95 M parameters) with our streaming structure, for timing a base-sized model.
WAV2VEC2_SIZES: dict[str, dict] = {
    "tiny": dict(
        hidden_size=32,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=64,
        conv_dim=(16,) * 7,
        num_conv_pos_embedding_groups=4,
    ),
    "small": dict(
        hidden_size=256,
        num_hidden_layers=4,
        num_attention_heads=4,
        intermediate_size=1024,
        conv_dim=(64, 128, 128, 128, 128, 128, 128),
        num_conv_pos_embedding_groups=16,
    ),
    "base": dict(
        hidden_size=768,
        num_hidden_layers=12,
        num_attention_heads=12,
        intermediate_size=3072,
        conv_dim=(512,) * 7,
        num_conv_pos_embedding_groups=16,
    ),
}


def small_config(vocab_size: int = len(PHONE_VOCAB), **overrides):
    """The Wav2Vec2Config of our small streaming model (``WAV2VEC2_SIZES["small"]``); the
    ``overrides`` (e.g. another size's dimensions) replace its values."""
    from transformers import Wav2Vec2Config

    kw = dict(
        vocab_size=vocab_size,
        **WAV2VEC2_SIZES["small"],
        conv_stride=(5, 2, 2, 2, 2, 2, 2),
        conv_kernel=(10, 3, 3, 3, 3, 2, 2),
        feat_extract_norm="layer",
        num_conv_pos_embeddings=4,
        do_stable_layer_norm=True,
        hidden_dropout=0.1,
        attention_dropout=0.1,
        activation_dropout=0.0,
        feat_proj_dropout=0.0,
        final_dropout=0.0,
        layerdrop=0.0,
        mask_time_prob=0.05,
        mask_time_length=4,
        pad_token_id=0,
        ctc_loss_reduction="mean",
        ctc_zero_infinity=True,
    )
    kw.update(overrides)
    return Wav2Vec2Config(**kw)


class Wav2Vec2FrontEnd(nn.Module):
    """A ``Wav2Vec2ForCTC`` plus how we run it: vocab, chunked mask, feature choice."""

    kind = "wav2vec2"

    def __init__(
        self,
        model,
        vocab: tuple[str, ...] | list[str] = PHONE_VOCAB,
        chunk_frames: int | None = 5,
        left_chunks: int = 10,
        feature: str = "posteriors",
        normalize_input: bool = False,
        phone_bias: dict[str, float] | None = None,
    ) -> None:
        super().__init__()
        self.model = model
        self.vocab = list(vocab)
        self.chunk_frames = chunk_frames
        self.left_chunks = left_chunks
        self.normalize_input = normalize_input
        self.feature = feature
        _ = self.feature_dim  # validates ``feature``
        self.hop = int(np.prod(model.config.conv_stride))
        self.hparams = dict(
            vocab=self.vocab,
            chunk_frames=chunk_frames,
            left_chunks=left_chunks,
            feature=feature,
            normalize_input=normalize_input,
        )
        # log-odds offsets of the posteriors *features*; not in the state dict (the sidecar's
        # hparams carry them), and never in `run`, so CTC decoding and the PER stay the model's
        self.register_buffer("logit_bias", torch.zeros(len(self.vocab)), persistent=False)
        self.set_phone_bias(phone_bias or {})

    def set_phone_bias(self, bias: dict[str, float]) -> None:
        """Replace the per-phone log-odds offsets of the posteriors features, e.g.
        ``{"P": 2.0, "B": 2.0, "M": 2.0}`` (`class_bias`); {} removes them. ValueError names a
        phone not in the vocabulary."""
        self.logit_bias.copy_(bias_vector(bias, self.vocab, "phone_bias", "phone"))
        self.hparams.pop("phone_bias", None)
        if bias:  # only biased models carry the key
            self.hparams["phone_bias"] = {k: float(v) for k, v in bias.items()}

    @property
    def frame_rate(self) -> float:
        return SAMPLE_RATE / self.hop

    @property
    def lookahead_frames(self) -> int | None:
        """Right context the streaming run needs, in frames (None = whole utterance)."""
        if self.chunk_frames is None:
            return None
        return self.chunk_frames - 1 + self.model.config.num_conv_pos_embeddings // 2

    @property
    def feature_dim(self) -> int:
        cfg = self.model.config
        layer = feature_layer(self.feature)
        if layer is None:
            return cfg.vocab_size
        if layer > cfg.num_hidden_layers:
            raise ValueError(
                f"feature {self.feature!r}: this model's hidden-N go up to "
                f"hidden-{cfg.num_hidden_layers}"
            )
        return cfg.hidden_size + (cfg.vocab_size if self.feature.startswith("posteriors+") else 0)

    def chunk_mask(self, t: int, device, dtype) -> torch.Tensor | None:
        """[1, 1, T, T] additive mask of the chunked attention (None = full attention)."""
        if self.chunk_frames is None:
            return None
        c = torch.arange(t, device=device) // self.chunk_frames
        rel = c[:, None] - c[None, :]
        allowed = (rel >= 0) & (rel <= self.left_chunks)
        mask = torch.zeros(t, t, device=device, dtype=dtype)
        return mask.masked_fill(~allowed, torch.finfo(dtype).min)[None, None]

    def run(self, audio: torch.Tensor, hidden_layer: int | None = None, chunked: bool = True):
        """audio [B, n] float (already left-padded) → (logits [B, T, V], hidden [B, T, H] of
        ``hidden_layer`` or None). Same modules as the HF forward, plus the chunk mask."""
        if self.normalize_input:
            audio = (audio - audio.mean(-1, keepdim=True)) / (audio.std(-1, keepdim=True) + 1e-7)
        w2v = self.model.wav2vec2
        cfg = self.model.config
        ext = w2v.feature_extractor(audio).transpose(1, 2)
        hidden, _ = w2v.feature_projection(ext)
        hidden = w2v._mask_hidden_states(hidden)  # SpecAugment, only while training
        enc = w2v.encoder
        hidden = hidden + enc.pos_conv_embed(hidden)
        if not cfg.do_stable_layer_norm:
            hidden = enc.layer_norm(hidden)
        hidden = enc.dropout(hidden)
        mask = self.chunk_mask(hidden.shape[1], hidden.device, hidden.dtype) if chunked else None
        picked = hidden if hidden_layer == 0 else None
        for i, layer in enumerate(enc.layers, start=1):
            hidden = layer(hidden, attention_mask=mask)
            if i == hidden_layer:
                picked = hidden
        if cfg.do_stable_layer_norm:
            hidden = enc.layer_norm(hidden)
        logits = self.model.lm_head(self.model.dropout(hidden))
        return logits, picked

    def _hidden_layer(self) -> int | None:
        return feature_layer(self.feature)

    def features_torch(self, audio: torch.Tensor) -> torch.Tensor:
        """audio [B, n] float at 16 kHz → features [B, n // hop, D] (chunked if configured)."""
        n_frames = audio.shape[-1] // self.hop
        x = nn.functional.pad(audio[:, : n_frames * self.hop], (LEFT_PAD, 0))
        logits, hidden = self.run(x, self._hidden_layer())
        return self.feature_of(logits, hidden)[:, :n_frames]

    def feature_of(self, logits: torch.Tensor | None, hidden: torch.Tensor | None) -> torch.Tensor:
        """The configured feature (float32) from the CTC logits and the picked hidden layer."""
        if self.feature == "posteriors":
            return torch.softmax(logits.float() + self.logit_bias.float(), -1)
        if self.feature.startswith("posteriors+"):
            posteriors = torch.softmax(logits.float() + self.logit_bias.float(), -1)
            return torch.cat([posteriors, hidden.float()], -1)
        return hidden.float()

    @torch.no_grad()
    def features(self, samples: np.ndarray) -> np.ndarray:
        """One utterance: samples [n] float32 at 16 kHz → [n // 320, D] float32."""
        dev = next(self.parameters()).device
        x = torch.as_tensor(np.asarray(samples, np.float32), device=dev)[None]
        if x.shape[-1] < self.hop:
            return np.zeros((0, self.feature_dim), np.float32)
        return self.features_torch(x)[0].cpu().numpy()


def build_small(
    chunk_frames: int | None = 5, left_chunks: int = 10, seed: int = 0, **overrides
) -> Wav2Vec2FrontEnd:
    """A freshly initialized small phone-CTC front end."""
    from transformers import Wav2Vec2ForCTC

    torch.manual_seed(seed)
    model = Wav2Vec2ForCTC(small_config(**overrides))
    return Wav2Vec2FrontEnd(model, PHONE_VOCAB, chunk_frames, left_chunks)


def save_wav2vec2(front: Wav2Vec2FrontEnd, directory: Path, sidecar: dict) -> Path:
    """HF ``save_pretrained`` (safetensors) + our sidecar under ``"audio2anim"`` in config.json
    + ``vocab.json`` (token → id, the HF CTC tokenizer's format)."""
    with _no_hf_progress_bars():  # safetensors: the default since 4.35, the only format in 5.x
        front.model.save_pretrained(str(directory))
    cfg_path = directory / "config.json"
    cfg = json.loads(cfg_path.read_text())
    vocab = {tok: i for i, tok in enumerate(front.vocab)}
    (directory / "vocab.json").write_text(json.dumps(vocab, indent=1) + "\n")
    side = {k: v for k, v in sidecar.items() if k != "files"}
    cfg["audio2anim"] = jsonable({"hparams": front.hparams, **side})
    cfg["audio2anim"]["files"] = file_digests(directory)  # checked by `load_wav2vec2`
    cfg_path.write_text(json.dumps(cfg, indent=1) + "\n")
    return directory


@contextlib.contextmanager
def _no_hf_progress_bars():
    """Without transformers' per-load / per-save progress bars: a small model loads in
    milliseconds, and the bars would cut through the caller's own (e.g. animate's)."""
    from transformers.utils import logging as hf_logging

    was_on = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        if was_on:
            hf_logging.enable_progress_bar()


def load_wav2vec2(
    source: str | Path,
    device: str = "cpu",
    feature: str | None = None,
    chunk_frames: int | None | str = "auto",
) -> Wav2Vec2FrontEnd:
    """Load our shipped directory, any HF Wav2Vec2 checkpoint directory, or a hub id.

    ``feature`` overrides the stored feature choice; ``chunk_frames="auto"`` keeps what the
    checkpoint was trained with (full attention for foreign checkpoints). An ensemble directory
    (`wav2vec_ensemble`) loads as a `Wav2Vec2Ensemble` (default feature: "posteriors"). Weights
    stored in half precision are run in float32.
    """
    from transformers import Wav2Vec2ForCTC

    path = Path(source)
    local = path.is_dir()
    if not local and path.exists():
        raise ValueError(f"{source}: not a directory (expected a checkpoint dir or hub id)")
    if local and is_ensemble_dir(path):
        return load_ensemble(path, device, chunk_frames, feature).to(device)
    if local and (path / "config.json").is_file():
        try:
            ours = json.loads((path / "config.json").read_text()).get("audio2anim") or {}
        except ValueError:
            ours = {}  # from_pretrained names the broken file below
        verify_files(path, ours.get("files"))
    with _no_hf_progress_bars():
        model = Wav2Vec2ForCTC.from_pretrained(str(source), local_files_only=local).float()
    ours = getattr(model.config, "audio2anim", None) or {}
    hp = dict(ours.get("hparams", {}))
    vocab = hp.get("vocab")
    if vocab is None and local and (path / "vocab.json").is_file():
        table = json.loads((path / "vocab.json").read_text())
        vocab = [tok for tok, _ in sorted(table.items(), key=lambda kv: kv[1])]
    if vocab is None:
        vocab = [str(i) for i in range(model.config.vocab_size)]
    normalize = hp.get("normalize_input")
    if normalize is None:
        pre = path / "preprocessor_config.json"
        normalize = (
            bool(json.loads(pre.read_text()).get("do_normalize")) if pre.is_file() else False
        )
    chunk = hp.get("chunk_frames") if chunk_frames == "auto" else chunk_frames
    front = Wav2Vec2FrontEnd(
        model,
        vocab,
        chunk_frames=chunk,
        left_chunks=hp.get("left_chunks", 10),
        feature=feature or hp.get("feature", "posteriors"),
        normalize_input=normalize,
        phone_bias=hp.get("phone_bias"),
    )
    return front.to(device).eval()


def is_ensemble_dir(path: str | Path) -> bool:
    """Whether ``path`` holds a wav2vec2 ensemble (`Wav2Vec2Ensemble`) checkpoint."""
    config = Path(path) / "config.json"
    if not config.is_file():
        return False
    try:
        return json.loads(config.read_text()).get("format") == WAV2VEC2_ENSEMBLE_FORMAT
    except ValueError:
        return False


def load_ensemble(
    path: str | Path,
    device: str = "cpu",
    chunk_frames: int | None | str = "auto",
    feature: str | None = None,
) -> Wav2Vec2Ensemble:
    """The ensemble saved in ``path`` by `save_ensemble` (arguments as `load_wav2vec2`'s)."""
    path = Path(path)
    config = json.loads((path / "config.json").read_text())
    members = []
    for name in config.get("members", []):
        if not (path / name / "config.json").is_file():
            raise FileNotFoundError(f"{path / name}: member checkpoint missing")
        members.append(load_wav2vec2(path / name, device, feature or "posteriors", chunk_frames))
    try:
        return Wav2Vec2Ensemble(members).eval()
    except ValueError as e:
        raise ValueError(f"{path}: {e}") from None


def save_ensemble(
    sources: list[str | Path],
    out: str | Path,
    sidecar: dict,
    float16: bool = False,
    phone_bias: dict[str, float] | None = None,
) -> Wav2Vec2Ensemble:
    """Write the wav2vec2 checkpoints ``sources`` as one ensemble directory ``out``; with
    ``float16`` the members' weights are stored in half precision; ``phone_bias`` is stored with
    every member (`Wav2Vec2FrontEnd.set_phone_bias`). Returns the ensemble as loaded back from
    ``out`` (so it computes with exactly the stored weights)."""
    out = Path(out)
    members = [load_wav2vec2(s, feature="posteriors") for s in sources]
    Wav2Vec2Ensemble(members).set_phone_bias(phone_bias or {})  # validates before writing
    out.mkdir(parents=True, exist_ok=True)
    names = []
    for i, (src, front) in enumerate(zip(sources, members, strict=True)):
        if float16:
            front.model.half()
        own = dict(getattr(front.model.config, "audio2anim", None) or {})
        own.pop("hparams", None)
        names.append(f"member-{i}")
        save_wav2vec2(front, out / names[-1], {**own, "source": str(src)})
    first = members[0].model.config
    config = {
        "format": WAV2VEC2_ENSEMBLE_FORMAT,
        "members": names,
        # what `feature.wav2vec2` reads to report its latency before it loads the model
        "num_conv_pos_embeddings": first.num_conv_pos_embeddings,
        "audio2anim": jsonable(
            {"hparams": {**members[0].hparams, "members": len(names)}, **sidecar}
        ),
    }
    (out / "config.json").write_text(json.dumps(config, indent=1) + "\n")
    return load_ensemble(out)
