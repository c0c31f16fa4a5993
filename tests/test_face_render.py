"""The renderer: blendshapes change the picture where they should; render.mesh emits Frames."""

import numpy as np
import pytest

from audio2anim.face.build import EYE_C, MOUTH_Y
from audio2anim.face.renderer import Renderer
from audio2anim.graph.packets import Packet
from audio2anim.graph.testing import run_operator
from audio2anim.operators.render_mesh import RenderMesh
from audio2anim.streams import Frames, Params


@pytest.fixture(scope="module")
def renderer():
    with Renderer(None, 256) as r:
        yield r


def _box(r, point, half):
    x, y = r.project([point])[0]
    return slice(int(y - half), int(y + half)), slice(int(x - half), int(x + half))


def _luma(img):
    return img.astype(np.float64) @ [0.299, 0.587, 0.114]


def test_neutral_render_is_a_face_on_the_background(renderer):
    img = renderer.render()
    assert img.shape == (256, 256, 3) and img.dtype == np.uint8
    corner = img[:10, :10].reshape(-1, 3)
    centre = img[118:138, 118:138].reshape(-1, 3)
    assert np.ptp(corner, axis=0).max() <= 1  # flat background
    assert _luma(centre).mean() > _luma(corner).mean() + 60  # lit skin in front of it


def test_jaw_open_darkens_the_mouth(renderer):
    rows, cols = _box(renderer, [0, MOUTH_Y - 0.006, 0.09], 12)
    closed = _luma(renderer.render({"jawOpen": 0.0})[rows, cols]).mean()
    opened = _luma(renderer.render({"jawOpen": 1.0})[rows, cols]).mean()
    assert opened < closed - 40, (closed, opened)


def test_mouth_close_shuts_the_open_mouth(renderer):
    rows, cols = _box(renderer, [0, MOUTH_Y - 0.006, 0.09], 12)
    opened = _luma(renderer.render({"jawOpen": 1.0})[rows, cols]).mean()
    shut = _luma(renderer.render({"jawOpen": 1.0, "mouthClose": 1.0})[rows, cols]).mean()
    assert shut > opened + 30, (opened, shut)


def _eye_pixels(img):
    """Fraction of pixels that are iris (blue) or sclera (bright and grey, unlike skin)."""
    rgb = img.astype(np.int32)
    iris = rgb[..., 2] - rgb[..., 0] > 40
    sclera = (_luma(img) > 170) & (np.abs(rgb[..., 0] - rgb[..., 2]) < 25)
    return (iris | sclera).mean()


@pytest.mark.parametrize("side", ["Left", "Right"])
def test_blink_covers_the_eye(renderer, side):
    sx = 1 if side == "Left" else -1
    box = _box(renderer, EYE_C * [sx, 1, 1] + [0, 0, 0.012], 8)
    other = _box(renderer, EYE_C * [-sx, 1, 1] + [0, 0, 0.012], 8)
    open_img = renderer.render()
    shut_img = renderer.render({f"eyeBlink{side}": 1.0})
    seen_open, seen_shut = _eye_pixels(open_img[box]), _eye_pixels(shut_img[box])
    assert seen_open > 0.3 and seen_shut < 0.01, (seen_open, seen_shut)
    np.testing.assert_array_equal(open_img[other], shut_img[other])  # the other eye stays open


def test_render_mesh_operator_emits_one_frame_per_row():
    values = np.array([[0.0, 0.0], [1.0, 0.0], [0.0, 1.0]], np.float32)
    params = Params(values, ("jawOpen", "notAShape"), 25.0)
    (out,) = run_operator(RenderMesh, [Packet(params, 2.0)], {"size": 64, "msaa": 1})["out"]
    assert isinstance(out.payload, Frames) and out.media_time == 2.0
    assert out.payload.images.shape == (3, 64, 64, 3) and out.payload.frame_rate == 25.0
    imgs = out.payload.images
    assert not np.array_equal(imgs[0], imgs[1])
    np.testing.assert_array_equal(imgs[0], imgs[2])  # unknown names are ignored


def test_render_mesh_skips_late_rows():
    op = RenderMesh(RenderMesh.Params(size=32, msaa=1, max_lag_s=0.05))
    op.setup()
    try:
        params = Params(np.zeros((5, 1), np.float32), ("jawOpen",), 50.0)
        late = Packet(params, 1.0).stamped(capture_time=0.0, origin="src").received(0.2)
        on_time = Packet(params, 1.1).stamped(capture_time=0.19, origin="src").received(0.2)
        (out,) = op.process("in", on_time)
        assert len(out.payload.images) == 5 and op.skipped == 0
        (out,) = op.process("in", late)
        assert len(out.payload.images) == 1 and out.media_time == pytest.approx(1.08)
        assert op.skipped == 4
    finally:
        op.close()


def test_bad_background_is_a_clear_error():
    with pytest.raises(ValueError, match="background"):
        RenderMesh.Params(background="blue")


def test_missing_glb_is_a_clear_error_at_validation():
    with pytest.raises(ValueError, match="glb 'nope.glb': no such file"):
        RenderMesh.Params(glb="nope.glb")


def test_posed_normals_match_a_full_recompute(renderer):
    from audio2anim.face.rig import vertex_normals

    rig = renderer.rig
    w = np.random.default_rng(1).uniform(0, 1, len(rig.target_names)).astype(np.float32)
    pos, nrm = renderer.pose(w)
    full = vertex_normals(pos.reshape(-1, 3), rig.triangles)
    nrm = nrm.reshape(-1, 3)
    cos = np.sum(full * nrm, axis=1) / np.linalg.norm(nrm, axis=1)
    assert np.percentile(cos, 1) > 0.999  # only recomputed where a shape can change them
