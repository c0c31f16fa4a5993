"""Morph-target weight animations added to glTF/GLB/VRM models, checked by loading them back."""

import shutil
from pathlib import Path

import numpy as np
import pygltflib
import pytest

from audio2anim import arkit
from audio2anim.formats.animation import Animation
from audio2anim.formats.gltf_animation import (
    add_morph_animation,
    load_model,
    read_morph_animation,
)
from audio2anim.visemes import N_VISEMES, VISEME_ID

FACE = arkit.__file__.replace("arkit.py", "face/assets/face.glb")


def speech_animation(frames=25, fps=25.0):
    t = np.arange(frames) / fps
    values = np.zeros((frames, 3), np.float32)
    values[:, 0] = 0.5 + 0.5 * np.sin(2 * np.pi * t)  # jawOpen
    values[:, 1] = np.linspace(0, 1, frames)  # mouthFunnel
    values[:, 2] = 0.25  # eyeBlinkLeft
    vis = np.zeros((frames, N_VISEMES), np.float32)
    vis[:, VISEME_ID["aa"]] = np.linspace(1, 0, frames)
    vis[:, VISEME_ID["ou"]] = np.linspace(0, 1, frames)
    return Animation(fps, ("jawOpen", "mouthFunnel", "eyeBlinkLeft"), values, vis)


def tiny_model(path, target_names, extensions=None, names_in="mesh"):
    """A triangle with one morph target per name, written as GLB."""
    pos = np.array([[0, 0, 0], [1, 0, 0], [0, 1, 0]], "<f4")
    blob = pos.tobytes() * (1 + len(target_names))
    gltf = pygltflib.GLTF2(
        scene=0,
        scenes=[pygltflib.Scene(nodes=[0])],
        nodes=[pygltflib.Node(mesh=0, name="head")],
        buffers=[pygltflib.Buffer(byteLength=len(blob))],
        bufferViews=[
            pygltflib.BufferView(buffer=0, byteOffset=36 * i, byteLength=36)
            for i in range(1 + len(target_names))
        ],
        accessors=[
            pygltflib.Accessor(
                bufferView=i, componentType=5126, count=3, type="VEC3", min=[0, 0, 0], max=[1, 1, 0]
            )
            for i in range(1 + len(target_names))
        ],  # fmt: skip
        meshes=[
            pygltflib.Mesh(
                primitives=[
                    pygltflib.Primitive(
                        attributes=pygltflib.Attributes(POSITION=0),
                        targets=[{"POSITION": i + 1} for i in range(len(target_names))],
                        extras={"targetNames": list(target_names)} if names_in == "prim" else {},
                    )
                ],
                extras={"targetNames": list(target_names)} if names_in == "mesh" else {},
            )
        ],
        extensions=extensions or {},
        extensionsUsed=list(extensions or {}),
    )
    gltf.set_binary_blob(blob)
    gltf.save_binary(str(path))
    return path


def test_shipped_head_gets_a_linear_weight_animation(tmp_path):
    a = speech_animation()
    out = tmp_path / "talking.glb"
    report = add_morph_animation(FACE, a, out)
    assert report.channels == 1 and set(report.matched[0]) == set(a.names)
    gltf = pygltflib.GLTF2().load(str(out))
    anim = gltf.animations[-1]
    assert anim.name == "audio2anim" and len(anim.channels) == 1
    ch = anim.channels[0]
    assert ch.target.path == "weights" and gltf.nodes[ch.target.node].mesh == 0
    sampler = anim.samplers[ch.sampler]
    assert sampler.interpolation == "LINEAR"
    assert gltf.accessors[sampler.input].count == a.frames
    assert gltf.accessors[sampler.input].max == [pytest.approx(a.times[-1])]
    assert gltf.accessors[sampler.output].count == a.frames * 52
    times, w = read_morph_animation(out)[ch.target.node]
    np.testing.assert_allclose(times, a.times, atol=1e-6)
    names = gltf.meshes[0].extras["targetNames"]
    np.testing.assert_allclose(w[:, names.index("jawOpen")], a.column("jawOpen"))
    np.testing.assert_allclose(w[:, names.index("mouthFunnel")], a.column("mouthFunnel"))
    assert w[:, names.index("tongueOut")].max() == 0  # not in the animation: weight 0
    # the model itself is untouched: same meshes, targets and geometry
    src, src_blob = load_model(FACE)
    assert len(gltf.meshes[0].primitives[0].targets) == 52
    assert len(gltf.accessors) == len(src["accessors"]) + 2
    assert gltf.binary_blob()[: len(src_blob)] == bytes(src_blob)
    # the source's own bytes: its GLB binary chunk is the start of the new one
    raw = Path(FACE).read_bytes()
    json_len = int.from_bytes(raw[12:16], "little")
    assert bytes(src_blob) == raw[28 + json_len : 28 + json_len + len(src_blob)]


def test_user_model_matches_arkit_and_viseme_names_case_insensitively(tmp_path):
    model = tiny_model(tmp_path / "avatar.glb", ["JAWOPEN", "Viseme_aa", "viseme_U", "hat"],
                       names_in="prim")  # fmt: skip
    a = speech_animation()
    report = add_morph_animation(model, a, tmp_path / "out.glb")
    assert report.matched == {0: ["JAWOPEN", "Viseme_aa", "viseme_U"]}
    _, w = read_morph_animation(tmp_path / "out.glb")[0]
    np.testing.assert_allclose(w[:, 0], a.column("jawOpen"))
    np.testing.assert_allclose(w[:, 1], a.visemes[:, VISEME_ID["aa"]])
    np.testing.assert_allclose(w[:, 2], a.visemes[:, VISEME_ID["ou"]])
    assert not w[:, 3].any()


def test_vrm_mouth_expressions_follow_the_visemes(tmp_path):
    vrm1 = {"VRMC_vrm": {"specVersion": "1.0", "expressions": {"preset": {
        "aa": {"morphTargetBinds": [{"node": 0, "index": 0, "weight": 1.0}]},
        "ou": {"morphTargetBinds": [{"node": 0, "index": 1, "weight": 0.5}]},
    }}}}  # fmt: skip
    model = tiny_model(tmp_path / "a.vrm", ["Fcl_MTH_A", "Fcl_MTH_U"], vrm1)
    a = speech_animation()
    add_morph_animation(model, a, tmp_path / "a_talk.vrm")
    _, w = read_morph_animation(tmp_path / "a_talk.vrm")[0]
    np.testing.assert_allclose(w[:, 0], a.visemes[:, VISEME_ID["aa"]])
    np.testing.assert_allclose(w[:, 1], 0.5 * a.visemes[:, VISEME_ID["ou"]])
    vrm0 = {"VRM": {"blendShapeMaster": {"blendShapeGroups": [
        {"presetName": "a", "binds": [{"mesh": 0, "index": 1, "weight": 100}]},
        {"presetName": "blink", "binds": [{"mesh": 0, "index": 0, "weight": 100}]},
    ]}}}  # fmt: skip
    model0 = tiny_model(tmp_path / "b.vrm", ["Blink", "A"], vrm0)
    add_morph_animation(model0, a, tmp_path / "b_talk.glb")
    _, w0 = read_morph_animation(tmp_path / "b_talk.glb")[0]
    assert not w0[:, 0].any()
    np.testing.assert_allclose(w0[:, 1], a.visemes[:, VISEME_ID["aa"]])


def test_gltf_output_embeds_the_buffer(tmp_path):
    model = tiny_model(tmp_path / "m.glb", ["jawOpen"])
    add_morph_animation(model, speech_animation(), tmp_path / "m.gltf")
    gltf = pygltflib.GLTF2().load(str(tmp_path / "m.gltf"))
    assert gltf.buffers[0].uri.startswith("data:")
    assert gltf.animations[0].samplers[0].interpolation == "LINEAR"


def test_errors_name_the_file(tmp_path):
    a = speech_animation()
    none = tiny_model(tmp_path / "plain.glb", ["hat", "cape"])
    with pytest.raises(ValueError, match=r"plain\.glb: no morph target matches") as e:
        add_morph_animation(none, a, tmp_path / "out.glb")
    assert "\n" not in str(e.value)
    (tmp_path / "junk.glb").write_bytes(b"glTF\x02\x00\x00\x00garbage")
    with pytest.raises(ValueError, match=r"junk\.glb: not a glTF"):
        add_morph_animation(tmp_path / "junk.glb", a, tmp_path / "out.glb")
    with pytest.raises(ValueError, match=r"missing\.glb: cannot read"):
        add_morph_animation(tmp_path / "missing.glb", a, tmp_path / "out.glb")
    copy = shutil.copy(FACE, tmp_path / "face.glb")
    with pytest.raises(ValueError, match="refusing to overwrite the input"):
        add_morph_animation(copy, a, copy)
    empty = Animation(25, ("jawOpen",), np.zeros((0, 1)))
    with pytest.raises(ValueError, match="no frames"):
        add_morph_animation(FACE, empty, tmp_path / "out.glb")
    assert not (tmp_path / "out.glb").exists()
