"""A morph-target weight animation added to a glTF/GLB/VRM model, for Blender, three.js and Godot.

:func:`add_morph_animation` reads a model (the shipped head ``audio2anim/face/assets/face.glb``
or a user's GLB, VRM or glTF), adds one animation and writes the result. Every node whose mesh
has matched morph targets gets a channel on its ``weights`` with one LINEAR sampler: input =
the frame times (media time, seconds), output = the weights of all the mesh's targets for
every frame (``frames x targets`` floats), so players interpolate between frames as the
animation's own resampling does.

Targets are matched by name, case-insensitively, in this order:

1. ARKit blendshape names (``jawOpen``, ``JawOpen``, ``jawopen``) → the animation's weights
   for that name;
2. Oculus / Ready Player Me viseme names (``viseme_sil`` … ``viseme_U``; ``viseme_ih``,
   ``viseme_oh`` and ``viseme_ou`` also accepted) → the viseme posteriors;
3. VRM mouth expressions: VRM 1.0 ``aa ih ou ee oh`` (``VRMC_vrm`` morph-target binds) and VRM
   0.x ``a i u e o`` (``blendShapeMaster`` binds, weights 0–100) → the posteriors of the visemes
   aa, ih, ou, E and oh, times the bind weight (summed where binds share a target, clipped to 1).

The model is read and written directly as glTF JSON and GLB chunks (no glTF library, so a
model loads in milliseconds); its meshes, nodes, materials, images and existing animations
are kept as they are, the new data is appended to its binary buffer. A ``.gltf`` input may
keep its buffers in data URIs or in files beside it; images it references by URI keep their
URI.

Target names come from ``mesh.extras.targetNames`` (the convention of Blender's exporter and the
shipped head) or the first primitive's ``extras.targetNames``. Targets that match nothing stay
at weight 0 in the animation. A model where nothing matches is refused with an error naming the
file.
"""

from __future__ import annotations

import base64
import json
import os
import struct
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import unquote

import numpy as np

from audio2anim.formats.animation import VISEME_MORPHS, Animation, write_atomic
from audio2anim.visemes import VISEME_ID, VISEMES

FLOAT = 5126
GLB_MAGIC = b"glTF"
CHUNK_JSON = 0x4E4F534A
CHUNK_BIN = 0x004E4942
VRM1_VISEME = {"aa": "aa", "ih": "ih", "ou": "ou", "ee": "E", "oh": "oh"}
VRM0_VISEME = {"a": "aa", "i": "ih", "u": "ou", "e": "E", "o": "oh"}
_VISEME_BY_NAME: dict[str, int] = {m.lower(): i for i, m in enumerate(VISEME_MORPHS)}
_VISEME_BY_NAME.update({"viseme_" + v.lower(): i for i, v in enumerate(VISEMES)})


@dataclass
class MorphAnimationReport:
    """What :func:`add_morph_animation` wrote: matched target names per mesh index."""

    path: Path
    frames: int
    matched: dict[int, list[str]] = field(default_factory=dict)
    channels: int = 0


def load_model(path: str | os.PathLike) -> tuple[dict, bytearray]:
    """``(glTF JSON document, binary buffer)`` of a GLB/VRM or glTF file, buffers merged into one."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as e:
        raise ValueError(f"{path}: cannot read the model ({e.strerror})") from None
    try:
        if data[:4] == GLB_MAGIC:
            doc, bin_chunk = _parse_glb(data)
        else:
            doc, bin_chunk = json.loads(data.decode("utf-8")), None
        if not isinstance(doc, dict) or not str(doc.get("asset", {}).get("version", "")).startswith(
            "2"
        ):
            raise ValueError("not glTF 2.0 (asset.version)")
        blob = _merge_buffers(doc, bin_chunk, path.parent)
    except (ValueError, KeyError, TypeError, IndexError, OSError, struct.error) as e:
        msg = e.strerror if isinstance(e, OSError) else str(e)
        raise ValueError(f"{path}: not a glTF/GLB/VRM model ({type(e).__name__}: {msg})") from None
    return doc, blob


def _parse_glb(data: bytes) -> tuple[dict, bytes | None]:
    _, version, length = struct.unpack_from("<4sII", data, 0)
    if version != 2:
        raise ValueError(f"GLB version {version}")
    if length > len(data):
        raise ValueError("truncated GLB")
    doc, bin_chunk, pos = None, None, 12
    while pos + 8 <= length:
        size, kind = struct.unpack_from("<II", data, pos)
        chunk = data[pos + 8 : pos + 8 + size]
        if len(chunk) != size:
            raise ValueError("truncated GLB chunk")
        if kind == CHUNK_JSON and doc is None:
            doc = json.loads(chunk.decode("utf-8"))
        elif kind == CHUNK_BIN and bin_chunk is None:
            bin_chunk = chunk
        pos += 8 + size
    if doc is None:
        raise ValueError("GLB without a JSON chunk")
    return doc, bin_chunk


def _merge_buffers(doc: dict, bin_chunk: bytes | None, folder: Path) -> bytearray:
    """One blob holding every buffer; buffer views re-pointed at buffer 0."""
    blob = bytearray()
    offsets = []
    for i, buf in enumerate(doc.get("buffers") or []):
        uri = buf.get("uri")
        if uri is None:
            if i != 0 or bin_chunk is None:
                raise ValueError(f"buffer {i} has no uri and no GLB binary chunk")
            raw = bytes(bin_chunk[: buf["byteLength"]])
        elif uri.startswith("data:"):
            raw = base64.b64decode(uri.split(",", 1)[1])
        else:
            raw = (folder / unquote(uri)).read_bytes()
        blob += b"\0" * (-len(blob) % 4)
        offsets.append(len(blob))
        blob += raw
    for view in doc.get("bufferViews") or []:
        view["byteOffset"] = view.get("byteOffset", 0) + offsets[view["buffer"]]
        view["buffer"] = 0
    doc["buffers"] = [{"byteLength": len(blob)}] if offsets else []
    return blob


def model_bytes(doc: dict, blob: bytes | bytearray, gltf_json: bool = False) -> bytes:
    """The model as GLB bytes, or as glTF JSON with the buffer in a data URI."""
    doc = dict(doc)
    if blob:
        doc["buffers"] = [{"byteLength": len(blob)}]
    if gltf_json:
        if blob:
            data = base64.b64encode(bytes(blob)).decode("ascii")
            doc["buffers"][0]["uri"] = "data:application/octet-stream;base64," + data
        return json.dumps(doc, ensure_ascii=False, indent=1).encode("utf-8")
    js = json.dumps(doc, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
    js += b" " * (-len(js) % 4)
    bin_chunk = bytes(blob) + b"\0" * (-len(blob) % 4)
    parts = [struct.pack("<II", len(js), CHUNK_JSON), js]
    if bin_chunk:
        parts += [struct.pack("<II", len(bin_chunk), CHUNK_BIN), bin_chunk]
    total = 12 + sum(len(p) for p in parts)
    return b"".join([struct.pack("<4sII", GLB_MAGIC, 2, total), *parts])


def _target_count(mesh: dict) -> int:
    prims = mesh.get("primitives") or []
    return len(prims[0].get("targets") or []) if prims else 0


def _target_names(mesh: dict) -> list[str]:
    count = _target_count(mesh)
    prims = mesh.get("primitives") or [{}]
    for extras in (mesh.get("extras"), prims[0].get("extras")):
        names = extras.get("targetNames") if isinstance(extras, dict) else None
        if isinstance(names, list) and len(names) == count:
            return [str(n) for n in names]
    return []


def _vrm_binds(doc: dict) -> list[tuple[int, int, str, float]]:
    """``(mesh, target, viseme, weight)`` for every VRM mouth-expression bind."""
    ext = doc.get("extensions") or {}
    nodes = doc.get("nodes") or []
    binds: list[tuple[int, int, str, float]] = []
    preset = ((ext.get("VRMC_vrm") or {}).get("expressions") or {}).get("preset") or {}
    for name, viseme in VRM1_VISEME.items():
        for b in (preset.get(name) or {}).get("morphTargetBinds") or []:
            mesh = nodes[b["node"]].get("mesh") if 0 <= b["node"] < len(nodes) else None
            if mesh is not None:
                binds.append((mesh, int(b["index"]), viseme, float(b.get("weight", 1.0))))
    for group in ((ext.get("VRM") or {}).get("blendShapeMaster") or {}).get(
        "blendShapeGroups"
    ) or []:
        viseme = VRM0_VISEME.get(str(group.get("presetName", "")).lower())
        if viseme is None:
            continue
        for b in group.get("binds") or []:
            weight = float(b.get("weight", 100.0)) / 100.0
            binds.append((int(b["mesh"]), int(b["index"]), viseme, weight))
    return binds


def _mesh_weights(doc: dict, animation: Animation) -> tuple[dict[int, np.ndarray], dict]:
    arkit_cols = {n.lower(): i for i, n in enumerate(animation.names)}
    weights: dict[int, np.ndarray] = {}
    matched: dict[int, list[str]] = {}
    for m, mesh in enumerate(doc.get("meshes") or []):
        count = _target_count(mesh)
        if not count:
            continue
        w = np.zeros((animation.frames, count), np.float32)
        hits: list[str] = []
        for t, name in enumerate(_target_names(mesh)):
            key = name.lower()
            if key in arkit_cols:
                w[:, t] = animation.values[:, arkit_cols[key]]
            elif key in _VISEME_BY_NAME and animation.visemes is not None:
                w[:, t] = animation.visemes[:, _VISEME_BY_NAME[key]]
            else:
                continue
            hits.append(name)
        weights[m], matched[m] = w, hits
    if animation.visemes is not None:
        for m, t, viseme, bind_weight in _vrm_binds(doc):
            if m in weights and 0 <= t < weights[m].shape[1]:
                col = bind_weight * animation.visemes[:, VISEME_ID[viseme]]
                weights[m][:, t] = np.minimum(1.0, weights[m][:, t] + col)
                matched[m].append(f"{viseme}->target {t}")
    return weights, {m: hits for m, hits in matched.items() if hits}


def add_morph_animation(
    model: str | os.PathLike,
    animation: Animation,
    out: str | os.PathLike,
    name: str = "audio2anim",
) -> MorphAnimationReport:
    """Write ``model`` plus a morph-target weight animation of ``animation`` to ``out``.

    ``out`` ending in ``.gltf`` is written as glTF JSON with the buffer embedded as a data URI;
    anything else (``.glb``, ``.vrm``) as binary glTF. The file is written under a temporary
    name and renamed when complete; ``out`` may not be ``model``.
    """
    src, out = Path(model), Path(out)
    if animation.frames == 0:
        raise ValueError(f"{out}: cannot write an animation with no frames")
    if animation.start < 0:
        raise ValueError(f"{out}: glTF animation times must be >= 0 (start {animation.start})")
    if src.resolve() == out.resolve():
        raise ValueError(f"{out}: refusing to overwrite the input model")
    doc, blob = load_model(src)
    weights, matched = _mesh_weights(doc, animation)
    if not matched:
        raise ValueError(
            f"{src}: no morph target matches an ARKit, Oculus viseme or VRM mouth expression name"
        )
    views = doc.setdefault("bufferViews", [])
    accessors = doc.setdefault("accessors", [])

    def add_accessor(arr: np.ndarray, bounds: bool) -> int:
        blob.extend(b"\0" * (-len(blob) % 4))
        raw = np.ascontiguousarray(arr, dtype="<f4").tobytes()
        views.append({"buffer": 0, "byteOffset": len(blob), "byteLength": len(raw)})
        blob.extend(raw)
        acc: dict[str, Any] = {
            "bufferView": len(views) - 1,
            "componentType": FLOAT,
            "count": int(arr.size),
            "type": "SCALAR",
        }
        if bounds:
            acc["min"], acc["max"] = [float(arr.min())], [float(arr.max())]
        accessors.append(acc)
        return len(accessors) - 1

    time_acc = add_accessor(animation.times.astype(np.float32), bounds=True)
    samplers: list[dict] = []
    channels: list[dict] = []
    sampler_of: dict[int, int] = {}
    for n, node in enumerate(doc.get("nodes") or []):
        mesh = node.get("mesh")
        if mesh not in matched:
            continue
        if mesh not in sampler_of:
            out_acc = add_accessor(weights[mesh].reshape(-1), bounds=False)
            samplers.append({"input": time_acc, "output": out_acc, "interpolation": "LINEAR"})
            sampler_of[mesh] = len(samplers) - 1
        channels.append({"sampler": sampler_of[mesh], "target": {"node": n, "path": "weights"}})
    if not channels:
        raise ValueError(f"{src}: no node uses a mesh with matched morph targets")
    doc.setdefault("animations", []).append(
        {"name": name, "samplers": samplers, "channels": channels}
    )
    write_atomic(out, model_bytes(doc, blob, gltf_json=out.suffix.lower() == ".gltf"))
    return MorphAnimationReport(out, animation.frames, matched, len(channels))


def read_morph_animation(
    path: str | os.PathLike, index: int = -1
) -> dict[int, tuple[np.ndarray, np.ndarray]]:
    """``{node: (times [frames], weights [frames, targets])}`` of one animation in a model."""
    path = Path(path)
    doc, blob = load_model(path)
    if not doc.get("animations"):
        raise ValueError(f"{path}: the model has no animation")
    anim = doc["animations"][index]

    def read(acc_index: int) -> np.ndarray:
        acc = doc["accessors"][acc_index]
        view = doc["bufferViews"][acc["bufferView"]]
        start = view.get("byteOffset", 0) + acc.get("byteOffset", 0)
        return np.frombuffer(bytes(blob), "<f4", count=acc["count"], offset=start)

    result = {}
    for ch in anim["channels"]:
        if ch["target"].get("path") != "weights":
            continue
        sampler = anim["samplers"][ch["sampler"]]
        times = read(sampler["input"])
        result[ch["target"]["node"]] = (times, read(sampler["output"]).reshape(len(times), -1))
    return result
