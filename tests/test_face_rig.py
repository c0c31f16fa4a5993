"""The default face rig: every ARKit name is a distinct morph target, and the GLB round-trips."""

import numpy as np
import pytest

from audio2anim import arkit
from audio2anim.face.build import build_rig
from audio2anim.face.rig import DEFAULT_GLB, load_glb, save_glb


@pytest.fixture(scope="module")
def built():
    return build_rig()


@pytest.fixture(scope="module")
def shipped():
    return load_glb(DEFAULT_GLB)


def test_every_arkit_name_is_a_morph_target(shipped):
    assert set(arkit.MOUTH) | set(arkit.EYES) <= set(shipped.target_names)
    assert shipped.target_names == arkit.ALL


def test_each_teacher_shape_moves_the_face_visibly_and_differently(shipped):
    names = list(arkit.MOUTH) + list(arkit.EYES)
    flat = {}
    for name in names:
        d = shipped.target(name)
        assert np.linalg.norm(d, axis=1).max() > 0.0015, f"{name} moves less than 1.5 mm"
        flat[name] = d.reshape(-1) / np.linalg.norm(d)
    for i, a in enumerate(names):
        for b in names[i + 1 :]:
            assert abs(flat[a] @ flat[b]) < 0.98, f"{a} and {b} are nearly the same shape"


def test_glb_round_trip_keeps_deltas(built, tmp_path):
    path = save_glb(built, tmp_path / "face.glb")
    back = load_glb(path)
    assert back.target_names == built.target_names
    np.testing.assert_array_equal(back.triangles, built.triangles)
    np.testing.assert_allclose(back.positions, built.positions, atol=1e-7)
    np.testing.assert_allclose(back.target_positions, built.target_positions, atol=1e-7)
    np.testing.assert_allclose(back.target_normals, built.target_normals, atol=1e-7)


def test_shipped_glb_matches_the_generator(built, shipped):
    # fails when build.py changed but `audio2anim face build -o DEFAULT_GLB` was not rerun
    np.testing.assert_allclose(shipped.positions, built.positions, atol=1e-5)
    np.testing.assert_allclose(shipped.target_positions, built.target_positions, atol=1e-5)


def test_jaw_open_moves_lower_teeth_not_upper(shipped):
    d = np.linalg.norm(shipped.target("jawOpen"), axis=1)
    colors = shipped.colors
    teeth = np.all(colors > 0.7, axis=1)  # the only near-white vertices besides the sclera
    lower_face = shipped.positions[:, 1] < -0.04
    assert d[teeth & lower_face].max() > 0.01
    assert np.median(d[teeth & lower_face]) > 0  # some teeth move (lower row) ...
    assert (d[teeth & lower_face] == 0).any()  # ... and some do not (upper row)


def test_load_glb_rejects_a_non_glb(tmp_path):
    bad = tmp_path / "x.glb"
    bad.write_bytes(b"not a glb")
    with pytest.raises(ValueError, match="x.glb"):
        load_glb(bad)


def _foreign_glb(path):
    """A GLB as other tools write it: two meshes under transformed nodes, dense targets, no
    vertex colours (material base colours instead), 16-bit indices."""
    import pygltflib as g

    quad = np.array([[0, 0, 0], [1, 0, 0], [1, 1, 0], [0, 1, 0]], np.float32) * 0.1
    idx = np.array([0, 1, 2, 0, 2, 3], np.uint16)
    blob = bytearray()
    views, accs = [], []

    def add(arr, comp, kind, minmax=False):
        views.append(g.BufferView(buffer=0, byteOffset=len(blob), byteLength=arr.nbytes))
        blob.extend(arr.tobytes())
        while len(blob) % 4:
            blob.append(0)
        acc = g.Accessor(bufferView=len(views) - 1, componentType=comp, count=len(arr), type=kind)
        if minmax:
            acc.min, acc.max = arr.min(0).tolist(), arr.max(0).tolist()
        accs.append(acc)
        return len(accs) - 1

    def mesh(names, shifts, material):
        targets = [
            {"POSITION": add(np.tile(np.float32(s), (4, 1)), g.FLOAT, g.VEC3, True)} for s in shifts
        ]
        prim = g.Primitive(
            attributes=g.Attributes(POSITION=add(quad, g.FLOAT, g.VEC3, True)),
            indices=add(idx, g.UNSIGNED_SHORT, g.SCALAR),
            material=material,
            targets=targets,
        )
        return g.Mesh(primitives=[prim], extras={"targetNames": names})

    meshes = [
        mesh(["jawOpen"], [[0, -0.01, 0]], 0),
        mesh(["eyeBlinkLeft", "jawOpen"], [[0, 0.02, 0], [0.03, 0, 0]], 1),
    ]
    mats = [
        g.Material(pbrMetallicRoughness=g.PbrMetallicRoughness(baseColorFactor=c))
        for c in ([1, 0, 0, 1], [0, 0, 1, 1])
    ]
    gltf = g.GLTF2(
        scene=0,
        scenes=[g.Scene(nodes=[0])],
        nodes=[
            g.Node(children=[1, 2], translation=[0, 0, 0.05]),
            g.Node(mesh=0),
            g.Node(mesh=1, translation=[0.2, 0, 0], scale=[2, 2, 2]),
        ],
        meshes=meshes,
        materials=mats,
        accessors=accs,
        bufferViews=views,
        buffers=[g.Buffer(byteLength=len(blob))],
    )
    gltf.set_binary_blob(bytes(blob))
    gltf.save_binary(str(path))


def test_other_glbs_with_arkit_targets_load(tmp_path):
    _foreign_glb(tmp_path / "avatar.glb")
    rig = load_glb(tmp_path / "avatar.glb")
    assert rig.target_names == ("jawOpen", "eyeBlinkLeft")
    assert rig.n_vertices == 8 and len(rig.triangles) == 4
    np.testing.assert_allclose(rig.positions[4], [0.2, 0, 0.05], atol=1e-6)  # node transforms
    np.testing.assert_allclose(rig.positions[6], [0.4, 0.2, 0.05], atol=1e-6)
    np.testing.assert_allclose(rig.colors[:4], [[1, 0, 0]] * 4)  # material colour baked in
    jaw = rig.target("jawOpen")
    np.testing.assert_allclose(jaw[:4], [[0, -0.01, 0]] * 4, atol=1e-7)
    np.testing.assert_allclose(jaw[4:], [[0.06, 0, 0]] * 4, atol=1e-7)  # scaled by the node
    np.testing.assert_allclose(rig.target("eyeBlinkLeft")[:4], 0)  # mesh 0 lacks it
    from audio2anim.face.renderer import Camera, Renderer

    with Renderer(rig, 64, camera=Camera(target=(0.2, 0.1, 0.05), distance=1.0)) as r:
        a, b = r.render(), r.render({"jawOpen": 1.0})
    assert (a != b).any()


def test_contact_sheet_is_in_the_docs():
    from pathlib import Path

    from PIL import Image

    sheet = Path(__file__).resolve().parents[1] / "docs" / "face-contact-sheet.png"
    with Image.open(sheet) as img:  # neutral + 52 shapes: 8 columns x 7 rows of 200x222 tiles
        assert img.size == (1600, 7 * 222)
