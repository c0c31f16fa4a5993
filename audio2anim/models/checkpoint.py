"""Checkpoint I/O: a directory with ``model.safetensors`` and a ``config.json`` sidecar.

The sidecar is plain JSON: ``{"format": "audio2anim-model/1", "kind": ..., "hparams": {...}}``
(enough to rebuild the architecture) plus whatever the trainer adds — feature config,
normalization statistics, parameter names, frame rate, lookahead, training-data summary,
metrics, the exact training command, and under ``"files"`` the sha256 of ``model.safetensors``
(``{"model.safetensors": "sha256:<hex>"}``), which every load checks (a checkpoint without
the field loads unchecked). Weights are read with ``safetensors`` only: nothing is
ever unpickled, so a checkpoint from an untrusted source cannot run code.

The wav2vec2 front end is the one exception to the layout: its directory is a Hugging Face
``Wav2Vec2ForCTC`` directory (``config.json`` is the HF config, ``model.safetensors`` the HF
weights) whose config carries our sidecar under the key ``"audio2anim"``, so the same
directory also loads with ``transformers``' ``from_pretrained``.

    save(model, "out/viseme-cnn", {"metrics": {...}})
    model, sidecar = load("out/viseme-cnn")
"""

from __future__ import annotations

import importlib
import json
from pathlib import Path

from .sidecar import FORMAT, WAV2VEC2_ENSEMBLE_FORMAT, file_digests, jsonable, verify_files
from .sidecar import ChecksumError as ChecksumError  # raised by `load` for a differing file

# The seven models, in training order: each front end before the predictors that read its
# features. Imported by the trainers and scripts/train_all.py, so this module stays free of
# numpy/torch/pydantic imports.
MODELS: tuple[str, ...] = (
    "viseme-frontend",
    "wav2vec2",
    "viseme-mlp",
    "viseme-cnn",
    "w2v-cnn",
    "w2v-ar",
    "w2v-attention",
)

# kind -> "module:Class"; classes build from ``hparams`` alone (``Class(**hparams)``).
MODEL_KINDS: dict[str, str] = {
    "viseme-frontend": "audio2anim.models.viseme_frontend:VisemeFrontEnd",
    "viseme-mlp": "audio2anim.models.predictors:WindowMLP",
    "viseme-cnn": "audio2anim.models.predictors:ConvPredictor",
    "w2v-cnn": "audio2anim.models.predictors:ConvPredictor",
    "w2v-ar": "audio2anim.models.predictors:AutoregressivePredictor",
    "w2v-attention": "audio2anim.models.predictors:AttentionPredictor",
    # the viseme head on the frozen Whisper encoder (not one of the seven `MODELS`: it trains
    # with `audio2anim train whisper-viseme-head`, outside scripts/train_all.py)
    "whisper-viseme-head": "audio2anim.models.whisper_head:WhisperVisemeHead",
}


def constructor_args(frame_locals: dict) -> dict:
    """A model constructor's arguments from its ``locals()``, taken before it binds any other
    name: the ``hparams`` that build it again (``Class(**hparams)``)."""
    return {k: v for k, v in frame_locals.items() if k not in ("self", "__class__")}


class CheckpointError(ValueError):
    """A checkpoint directory that cannot be loaded; the message names the file and field."""


def model_class(kind: str):
    """The torch module class of a model ``kind`` (see `MODEL_KINDS`)."""
    try:
        mod, cls = MODEL_KINDS[kind].split(":")
    except KeyError:
        raise CheckpointError(
            f"unknown model kind {kind!r} (known: {sorted(MODEL_KINDS)})"
        ) from None
    return getattr(importlib.import_module(mod), cls)


def build(kind: str, hparams: dict):
    """A freshly initialized model of ``kind`` with ``hparams``."""
    model = model_class(kind)(**hparams)
    model.kind = kind
    return model


def save(model, directory: str | Path, sidecar: dict | None = None) -> Path:
    """Write ``model`` (a module built by `build`, or a wav2vec2 front end) to ``directory``.

    ``sidecar``: extra JSON-able metadata merged into the config (numpy arrays become lists;
    its ``format``, ``kind`` and ``hparams``, if any, are the model's).
    Returns the directory path.
    """
    out = Path(directory)
    out.mkdir(parents=True, exist_ok=True)
    if getattr(model, "kind", "") == "wav2vec2":
        from .wav2vec import save_wav2vec2

        return save_wav2vec2(model, out, sidecar or {})
    from safetensors.torch import save_file

    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    save_file(state, str(out / "model.safetensors"), metadata={"format": FORMAT})
    config = {"format": FORMAT, "kind": model.kind, "hparams": model.hparams}
    # the model's own hyper-parameters win over a sidecar's (e.g. one read from another file):
    # the config must build the network these weights belong to
    config.update({k: v for k, v in (sidecar or {}).items() if k not in config})
    config["files"] = file_digests(out)  # what `load` checks the weights against
    (out / "config.json").write_text(json.dumps(jsonable(config), indent=1) + "\n")
    return out


def checkpoint_identity(checkpoint: str | Path) -> tuple:
    """What a process-wide cache of a loaded checkpoint is keyed by: its resolved folder and the
    name, modification time and size of each file in it (a checkpoint rewritten in place gets a
    new key)."""
    root = Path(checkpoint).resolve()
    files = sorted(p for p in root.iterdir() if p.is_file()) if root.is_dir() else []
    return (str(root), tuple((p.name, p.stat().st_mtime_ns, p.stat().st_size) for p in files))


def read_sidecar(directory: str | Path) -> dict:
    """The parsed ``config.json`` of a checkpoint directory (our sidecar; for wav2vec2 dirs,
    the ``"audio2anim"`` entry of the HF config, with ``kind = "wav2vec2"``)."""
    path = Path(directory) / "config.json"
    if not path.is_file():
        raise CheckpointError(
            f"{path}: missing (a checkpoint dir has config.json + model.safetensors)"
        )
    try:
        config = json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise CheckpointError(f"{path}: not valid JSON: {e}") from None
    if config.get("model_type") == "wav2vec2" or config.get("format") == WAV2VEC2_ENSEMBLE_FORMAT:
        side = dict(config.get("audio2anim", {}))
        side["kind"] = "wav2vec2"
        return side
    if config.get("format") != FORMAT:
        raise CheckpointError(
            f"{path}: field 'format' is {config.get('format')!r}, expected {FORMAT!r}"
        )
    for field in ("kind", "hparams"):
        if field not in config:
            raise CheckpointError(f"{path}: missing field {field!r}")
    if config["kind"] not in MODEL_KINDS:
        raise CheckpointError(
            f"{path}: field 'kind': unknown model kind {config['kind']!r} (known: {sorted(MODEL_KINDS)})"
        )
    return config


def load(directory: str | Path, device: str = "cpu"):
    """Load a checkpoint directory → ``(model, sidecar)``; the model is in eval mode."""
    directory = Path(directory)
    sidecar = read_sidecar(directory)
    if sidecar["kind"] == "wav2vec2":
        from .wav2vec import load_wav2vec2

        model = load_wav2vec2(directory, device=device)
        return model, sidecar
    from safetensors.torch import load_file

    weights = directory / "model.safetensors"
    if not weights.is_file():
        raise CheckpointError(f"{weights}: missing")
    verify_files(directory, sidecar.get("files"))
    try:
        model = build(sidecar["kind"], sidecar["hparams"])
    except TypeError as e:
        raise CheckpointError(
            f"{directory / 'config.json'}: field 'hparams' does not fit: {e}"
        ) from None
    state = load_file(str(weights), device="cpu")
    missing, unexpected = model.load_state_dict(state, strict=False)
    if missing or unexpected:
        raise CheckpointError(
            f"{weights}: tensors do not match {sidecar['kind']}: missing {missing[:5]}, "
            f"unexpected {unexpected[:5]}"
        )
    return model.to(device).eval(), sidecar
