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
    # fails when build.py changed but `audio2anim face build` was not rerun
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
