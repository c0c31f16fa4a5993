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

Target names come from ``mesh.extras.targetNames`` (the convention of Blender's exporter and the
shipped head) or the first primitive's ``extras.targetNames``. Targets that match nothing stay
at weight 0 in the animation. A model where nothing matches is refused with an error naming the
file.
"""

from __future__ import annotations

import os
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from audio2anim.formats.animation import VISEME_MORPHS, Animation, write_atomic
from audio2anim.visemes import VISEME_ID, VISEMES

FLOAT = 5126
VRM1_VISEME = {"aa": "aa", "ih": "ih", "ou": "ou", "ee": "E", "oh": "oh"}
VRM0_VISEME = {"a": "aa", "i": "ih", "u": "ou", "e": "E", "o": "oh"}
_VISEME_BY_NAME: dict[str, int] = {m.lower(): i for i, m in enumerate(VISEME_MORPHS)}
_VISEME_BY_NAME.update({"viseme_" + v.lower(): i for i, v in enumerate(VISEMES)})


@dataclass
class MorphAnimationReport:
    """What :func:`add_morph_animation` animated: matched target names per mesh index."""

    path: Path
    frames: int
    matched: dict[int, list[str]] = field(default_factory=dict)
    channels: int = 0


def _load(path: Path):
    import pygltflib

    try:
        data = path.read_bytes()
    except OSError as e:
        raise ValueError(f"{path}: cannot read the model ({e.strerror})") from None
    try:
        if data[:4] == b"glTF":
            gltf = pygltflib.GLTF2.load_from_bytes(data)
        else:
            gltf = pygltflib.GLTF2().load_json(str(path))
            with warnings.catch_warnings():  # "leaves the .bin orphaned": we only read it
                warnings.simplefilter("ignore", UserWarning)
                gltf.convert_buffers(pygltflib.BufferFormat.BINARYBLOB)
    except Exception as e:  # noqa: BLE001 - pygltflib raises many kinds on bad files
        raise ValueError(f"{path}: not a glTF/GLB/VRM model ({type(e).__name__}: {e})") from None
    return gltf


def _target_names(mesh) -> list[str] | None:
    count = len(mesh.primitives[0].targets or []) if mesh.primitives else 0
    for extras in (mesh.extras, mesh.primitives[0].extras if mesh.primitives else None):
        names = (extras or {}).get("targetNames") if isinstance(extras, dict) else None
        if isinstance(names, list) and len(names) == count:
            return [str(n) for n in names]
    return None


def _vrm_binds(gltf) -> list[tuple[int, int, str, float]]:
    """``(mesh, target, viseme, weight)`` for every VRM mouth-expression bind."""
    ext = gltf.extensions or {}
    binds: list[tuple[int, int, str, float]] = []
    vrm1 = ext.get("VRMC_vrm") or {}
    preset = ((vrm1.get("expressions") or {}).get("preset")) or {}
    for name, viseme in VRM1_VISEME.items():
        for b in (preset.get(name) or {}).get("morphTargetBinds") or []:
            node = gltf.nodes[b["node"]]
            if node.mesh is not None:
                binds.append((node.mesh, int(b["index"]), viseme, float(b.get("weight", 1.0))))
    vrm0 = ext.get("VRM") or {}
    for group in (vrm0.get("blendShapeMaster") or {}).get("blendShapeGroups") or []:
        viseme = VRM0_VISEME.get(str(group.get("presetName", "")).lower())
        if viseme is None:
            continue
        for b in group.get("binds") or []:
            weight = float(b.get("weight", 100.0)) / 100.0
            binds.append((int(b["mesh"]), int(b["index"]), viseme, weight))
    return binds


def _mesh_weights(gltf, animation: Animation) -> tuple[dict[int, np.ndarray], dict[int, list]]:
    arkit_cols = {n.lower(): i for i, n in enumerate(animation.names)}
    weights: dict[int, np.ndarray] = {}
    matched: dict[int, list[str]] = {}
    for m, mesh in enumerate(gltf.meshes):
        count = len(mesh.primitives[0].targets or []) if mesh.primitives else 0
        if not count:
            continue
        w = np.zeros((animation.frames, count), np.float32)
        hits: list[str] = []
        for t, name in enumerate(_target_names(mesh) or []):
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
        for m, t, viseme, bind_weight in _vrm_binds(gltf):
            if m in weights and 0 <= t < weights[m].shape[1]:
                w = weights[m]
                w[:, t] = np.minimum(
                    1.0, w[:, t] + bind_weight * animation.visemes[:, VISEME_ID[viseme]]
                )
                matched[m].append(f"{viseme}->target {t}")
    return weights, matched


def add_morph_animation(
    model: str | os.PathLike,
    animation: Animation,
    out: str | os.PathLike,
    name: str = "audio2anim",
) -> MorphAnimationReport:
    """Write ``model`` plus a morph-target weight animation of ``animation`` to ``out``.

    ``out`` ending in ``.gltf`` is written as glTF JSON with the buffer embedded as a data URI;
    anything else (``.glb``, ``.vrm``) as binary glTF. The file is written under a temporary
    name and renamed when complete.
    """
    import pygltflib

    src, out = Path(model), Path(out)
    if animation.frames == 0:
        raise ValueError(f"{out}: cannot write an animation with no frames")
    if src.resolve() == out.resolve():
        raise ValueError(f"{out}: refusing to overwrite the input model")
    gltf = _load(src)
    weights, matched = _mesh_weights(gltf, animation)
    matched = {m: hits for m, hits in matched.items() if hits}
    if not matched:
        raise ValueError(
            f"{src}: no morph target matches an ARKit, Oculus viseme or VRM mouth expression name"
        )
    blob = bytearray(gltf.binary_blob() or b"")
    if not gltf.buffers:
        gltf.buffers.append(pygltflib.Buffer(byteLength=0))

    def add_accessor(arr: np.ndarray, with_bounds: bool) -> int:
        nonlocal blob
        blob += b"\0" * (-len(blob) % 4)
        raw = np.ascontiguousarray(arr, dtype="<f4").tobytes()
        gltf.bufferViews.append(
            pygltflib.BufferView(buffer=0, byteOffset=len(blob), byteLength=len(raw))
        )
        blob += raw
        acc: dict[str, Any] = {
            "bufferView": len(gltf.bufferViews) - 1,
            "componentType": FLOAT,
            "count": int(arr.size),
            "type": "SCALAR",
        }
        if with_bounds:
            acc["min"] = [float(arr.min())]
            acc["max"] = [float(arr.max())]
        gltf.accessors.append(pygltflib.Accessor(**acc))
        return len(gltf.accessors) - 1

    times = animation.times.astype(np.float32)
    if times[0] < 0:
        raise ValueError(f"{out}: glTF animation times must be >= 0 (start is {animation.start})")
    time_acc = add_accessor(times, with_bounds=True)
    anim = pygltflib.Animation(name=name, samplers=[], channels=[])
    sampler_of: dict[int, int] = {}
    for n, node in enumerate(gltf.nodes):
        if node.mesh not in matched:
            continue
        if node.mesh not in sampler_of:
            out_acc = add_accessor(weights[node.mesh].reshape(-1), with_bounds=False)
            anim.samplers.append(
                pygltflib.AnimationSampler(input=time_acc, output=out_acc, interpolation="LINEAR")
            )
            sampler_of[node.mesh] = len(anim.samplers) - 1
        anim.channels.append(
            pygltflib.AnimationChannel(
                sampler=sampler_of[node.mesh],
                target=pygltflib.AnimationChannelTarget(node=n, path="weights"),
            )
        )
    if not anim.channels:
        raise ValueError(f"{src}: no node uses a mesh with matched morph targets")
    gltf.animations.append(anim)
    gltf.buffers[0].byteLength = len(blob)
    gltf.set_binary_blob(bytes(blob))
    if out.suffix.lower() == ".gltf":
        gltf.convert_buffers(pygltflib.BufferFormat.DATAURI)
        write_atomic(out, gltf.gltf_to_json())
    else:
        write_atomic(out, _glb_bytes(gltf))
    return MorphAnimationReport(out, animation.frames, matched, len(anim.channels))


def _glb_bytes(gltf) -> bytes:
    parts = gltf.save_to_bytes()
    return b"".join(bytes(p) for p in parts)


def read_morph_animation(path: str | os.PathLike, index: int = -1) -> dict[int, tuple]:
    """``{node: (times [frames], weights [frames, targets])}`` of one animation in a model."""
    path = Path(path)
    gltf = _load(path)
    if not gltf.animations:
        raise ValueError(f"{path}: the model has no animation")
    anim = gltf.animations[index]
    blob = gltf.binary_blob()

    def read(acc_index: int) -> np.ndarray:
        acc = gltf.accessors[acc_index]
        view = gltf.bufferViews[acc.bufferView]
        start = (view.byteOffset or 0) + (acc.byteOffset or 0)
        return np.frombuffer(blob, "<f4", count=acc.count, offset=start)

    result = {}
    for ch in anim.channels:
        if ch.target.path != "weights":
            continue
        s = anim.samplers[ch.sampler]
        times = read(s.input)
        w = read(s.output).reshape(len(times), -1)
        result[ch.target.node] = (times, w)
    return result
