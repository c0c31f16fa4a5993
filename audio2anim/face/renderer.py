"""Headless rasterizer for a `Rig`: blendshape weights in, an RGB image out.

moderngl on a standalone EGL context: Mesa's llvmpipe on a CPU machine, the GPU's driver where
one exists; no display needed. Morphing runs on the CPU (one small product over the non-zero
weights; normals recomputed from the posed mesh, so combined shapes light correctly), both are
streamed to the GPU, and the image is drawn with a simple light rig (key, fill, rim, hemisphere
ambient; wrapped diffuse for a soft skin look) evaluated per vertex, optionally multisampled,
and read back.

    from audio2anim.face import Renderer
    with Renderer(width=512) as r:
        img = r.render({"jawOpen": 0.6})        # [512, 512, 3] uint8

The EGL context is made current around each call, so a renderer may be used from any (single)
thread at a time, such as a graph runner's worker thread.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .rig import DEFAULT_GLB, Rig, load_glb

# Lighting is evaluated per vertex (Gouraud): the face's triangles cover a few pixels each at
# 512 px, so it looks like per-pixel shading, and on llvmpipe it takes a third less CPU time.
_VERTEX = """
#version 330
uniform mat4 u_view;
uniform mat4 u_proj;
uniform vec3 u_key_dir;
uniform vec3 u_fill_dir;
uniform vec3 u_rim_dir;
in vec3 in_pos;
in vec3 in_normal;
in vec3 in_color;
out vec3 v_rgb;
float wrap(float d, float w) { return max((d + w) / (1.0 + w), 0.0); }
void main() {
    vec4 vp = u_view * vec4(in_pos, 1.0);
    vec3 n = normalize(mat3(u_view) * in_normal);
    vec3 v = normalize(-vp.xyz);
    float key = wrap(dot(n, u_key_dir), 0.35);
    float fill = wrap(dot(n, u_fill_dir), 0.5);
    float facing = 1.0 - max(dot(n, v), 0.0);
    float rim = facing * facing * facing * max(dot(n, u_rim_dir) + 0.3, 0.0);
    float hemi = 0.5 + 0.5 * n.y;
    vec3 ambient = mix(vec3(0.20, 0.17, 0.16), vec3(0.34, 0.36, 0.40), hemi);
    vec3 light = ambient + key * vec3(1.05, 0.98, 0.92) + fill * vec3(0.28, 0.32, 0.38);
    vec3 h = normalize(u_key_dir + v);
    float spec = pow(max(dot(n, h), 0.0), 40.0) * 0.10 * key;
    // dark albedo (mouth cavity, pupils) gets no highlights: they would read as grey walls
    float gloss = clamp(dot(in_color, vec3(0.3, 0.6, 0.1)) * 5.0, 0.0, 1.0);
    vec3 c = in_color * light + gloss * (spec + rim * 0.25 * vec3(0.9, 0.95, 1.0));
    v_rgb = pow(clamp(c, 0.0, 1.0), vec3(1.0 / 2.2));
    gl_Position = u_proj * vp;
}
"""

_FRAGMENT = """
#version 330
in vec3 v_rgb;
out vec4 f_color;
void main() { f_color = vec4(v_rgb, 1.0); }
"""


def parse_color(text: str) -> tuple[float, float, float]:
    """``#rrggbb`` -> sRGB floats in [0, 1]; ValueError on anything else."""
    t = text.strip().lstrip("#")
    if len(t) != 6:
        raise ValueError(f"colour {text!r}: expected #rrggbb")
    try:
        return tuple(int(t[i : i + 2], 16) / 255 for i in (0, 2, 4))  # type: ignore[return-value]
    except ValueError:
        raise ValueError(f"colour {text!r}: expected #rrggbb") from None


@dataclass(frozen=True)
class Camera:
    """A perspective camera orbiting ``target`` (metres, degrees)."""

    target: tuple[float, float, float] = (0.0, 0.0, 0.03)
    distance: float = 0.58
    fov_deg: float = 24.0
    yaw_deg: float = 0.0
    pitch_deg: float = 0.0

    def eye(self) -> np.ndarray:
        """The camera position (world)."""
        yaw, pitch = math.radians(self.yaw_deg), math.radians(self.pitch_deg)
        return np.array(self.target, np.float64) + self.distance * np.array(
            [math.sin(yaw) * math.cos(pitch), math.sin(pitch), math.cos(yaw) * math.cos(pitch)]
        )

    def view(self) -> np.ndarray:
        t = np.array(self.target, np.float64)
        eye = self.eye()
        f = t - eye
        f /= np.linalg.norm(f)
        s = np.cross(f, [0.0, 1.0, 0.0])
        s /= np.linalg.norm(s)
        u = np.cross(s, f)
        m = np.eye(4)
        m[0, :3], m[1, :3], m[2, :3] = s, u, -f
        m[:3, 3] = -m[:3, :3] @ eye
        return m

    def project(self, points, width: int, height: int) -> np.ndarray:
        """Pixel coordinates [N, 2] (x right, y down from the top-left) of world points [N, 3]."""
        p = np.asarray(points, np.float64).reshape(-1, 3)
        p = np.c_[p, np.ones(len(p))]
        clip = p @ self.view().T @ self.projection(width / height).T
        ndc = clip[:, :2] / clip[:, 3:4]
        return np.stack([(ndc[:, 0] + 1) / 2 * width, (1 - ndc[:, 1]) / 2 * height], axis=1)

    def projection(self, aspect: float) -> np.ndarray:
        f = 1.0 / math.tan(math.radians(self.fov_deg) / 2)
        near, far = self.distance * 0.2, self.distance * 4
        m = np.zeros((4, 4))
        m[0, 0], m[1, 1] = f / aspect, f
        m[2, 2] = (far + near) / (near - far)
        m[2, 3] = 2 * far * near / (near - far)
        m[3, 2] = -1.0
        return m


def _unit(v) -> tuple[float, float, float]:
    v = np.asarray(v, np.float64)
    return tuple((v / np.linalg.norm(v)).tolist())


def facing_triangles(rig: Rig, eye: np.ndarray, margin: float = 0.25) -> np.ndarray:
    """The triangles that can face a camera at ``eye`` in some pose; the rest are dropped.

    The camera of a `Renderer` is fixed, and on llvmpipe the cost is per triangle (vertex and
    setup work happens before back-face culling), so triangles that face away at rest and under
    every single blendshape at weight 1 (the back of the head, the far side of the eyeballs,
    teeth and tongue) are removed once here. ``margin`` (cosine) keeps triangles that are only
    nearly back-facing, so blends of several shapes cannot turn a dropped one towards the camera.
    """
    tri = rig.triangles.astype(np.int64)
    best = np.full(len(tri), -np.inf)
    poses = [rig.positions] + [rig.positions + d for d in rig.target_positions]
    for p in poses:
        a, b, c = p[tri[:, 0]], p[tri[:, 1]], p[tri[:, 2]]
        n = np.cross(b - a, c - a)
        n /= np.maximum(np.linalg.norm(n, axis=1, keepdims=True), 1e-12)
        to_eye = eye - (a + b + c) / 3
        to_eye /= np.linalg.norm(to_eye, axis=1, keepdims=True)
        best = np.maximum(best, np.sum(n * to_eye, axis=1))
    return rig.triangles[best > -margin]


def create_context():
    """A standalone EGL OpenGL context (falls back to the unversioned library names)."""
    import moderngl

    try:
        return moderngl.create_standalone_context(
            backend="egl", libgl="libGL.so.1", libegl="libEGL.so.1"
        )
    except Exception:
        return moderngl.create_standalone_context(backend="egl")


class Renderer:
    """Renders a rig posed by blendshape weights; see the module docstring.

    rig: a `Rig`, a GLB path, or None for the packaged default face. width/height: pixels.
    background: sRGB colour in [0, 1]. msaa: samples per pixel (1 = off, the fastest; 4 costs
    about 2.5x on llvmpipe, for offline renders).
    """

    def __init__(
        self,
        rig: Rig | str | Path | None = None,
        width: int = 512,
        height: int | None = None,
        camera: Camera | None = None,
        background: tuple[float, float, float] = (0.16, 0.18, 0.22),
        msaa: int = 1,
    ) -> None:
        if rig is None or isinstance(rig, str | Path):
            rig = load_glb(DEFAULT_GLB if rig is None else rig)
        self.rig = rig
        self.width, self.height = int(width), int(height or width)
        self.camera = camera or Camera()
        self.background = background
        self.ctx = create_context()
        with self.ctx:
            self._setup(max(1, min(int(msaa), self.ctx.max_samples)))
        n_t = len(rig.target_names)
        self._flat = rig.target_positions.reshape(n_t, rig.n_vertices * 3)
        # normals are recomputed only where some blendshape can change them: the triangles
        # around moving vertices, and the vertices of those triangles
        tri = rig.triangles.astype(np.int64)
        moving = (
            np.abs(rig.target_positions).max(axis=(0, 2)) > 0
            if n_t
            else np.zeros(rig.n_vertices, bool)
        )
        touched = np.zeros(rig.n_vertices, bool)
        touched[tri[moving[tri].any(axis=1)].reshape(-1)] = True  # vertices whose normal moves
        self._dyn_verts = np.flatnonzero(touched)
        dyn_tris = tri[touched[tri].any(axis=1)]  # every triangle around those vertices
        row = np.full(rig.n_vertices, -1)
        row[self._dyn_verts] = np.arange(len(self._dyn_verts))
        f = np.repeat(np.arange(len(dyn_tris)), 3)
        r = row[dyn_tris.reshape(-1)]
        keep = r >= 0
        import scipy.sparse  # here: importing the renderer stays cheap

        self._incidence = scipy.sparse.csr_matrix(
            (np.ones(int(keep.sum()), np.float32), (r[keep], f[keep])),
            shape=(len(self._dyn_verts), len(dyn_tris)),
        )
        self._dyn_tris = dyn_tris
        self._rest_smooth = self._smooth_normals(rig.positions.reshape(-1))
        self._index = {n: i for i, n in enumerate(rig.target_names)}

    def _setup(self, samples: int) -> None:
        ctx, rig = self.ctx, self.rig
        self.prog = ctx.program(vertex_shader=_VERTEX, fragment_shader=_FRAGMENT)
        self.prog["u_view"].write(self.camera.view().T.astype("f4").tobytes())
        proj = self.camera.projection(self.width / self.height)
        self.prog["u_proj"].write(proj.T.astype("f4").tobytes())
        # lights are fixed to the camera: key from upper left, fill from the right, rim behind
        self.prog["u_key_dir"].value = _unit([-0.55, 0.6, 0.75])
        self.prog["u_fill_dir"].value = _unit([0.8, 0.05, 0.5])
        self.prog["u_rim_dir"].value = _unit([0.3, 0.8, -0.6])
        self.vbo_pos = ctx.buffer(rig.positions.astype("f4").tobytes(), dynamic=True)
        self.vbo_nrm = ctx.buffer(rig.normals.astype("f4").tobytes(), dynamic=True)
        self.vbo_col = ctx.buffer(rig.colors.astype("f4").tobytes())
        self.triangles = facing_triangles(rig, self.camera.eye())
        self.ibo = ctx.buffer(self.triangles.astype("u4").tobytes())
        self.vao = ctx.vertex_array(
            self.prog,
            [
                (self.vbo_pos, "3f", "in_pos"),
                (self.vbo_nrm, "3f", "in_normal"),
                (self.vbo_col, "3f", "in_color"),
            ],
            index_buffer=self.ibo,
            index_element_size=4,
        )
        size = (self.width, self.height)
        self.fbo = ctx.framebuffer(
            color_attachments=[ctx.renderbuffer(size, 3)],
            depth_attachment=ctx.depth_renderbuffer(size),
        )
        self.msaa_fbo = None
        if samples > 1:
            self.msaa_fbo = ctx.framebuffer(
                color_attachments=[ctx.renderbuffer(size, 4, samples=samples)],
                depth_attachment=ctx.depth_renderbuffer(size, samples=samples),
            )
        self.samples = samples

    def _smooth_normals(self, flat_positions: np.ndarray) -> np.ndarray:
        """Unit area-weighted normals [D, 3] of the vertices whose normals can change."""
        p = flat_positions.reshape(-1, 3)
        t = self._dyn_tris
        a = p[t[:, 0]]
        u, v = p[t[:, 1]] - a, p[t[:, 2]] - a
        fn = np.empty_like(u)  # cross product, written out: np.cross is several times slower
        fn[:, 0] = u[:, 1] * v[:, 2] - u[:, 2] * v[:, 1]
        fn[:, 1] = u[:, 2] * v[:, 0] - u[:, 0] * v[:, 2]
        fn[:, 2] = u[:, 0] * v[:, 1] - u[:, 1] * v[:, 0]
        n = self._incidence @ fn
        return n / np.maximum(np.sqrt(np.einsum("ij,ij->i", n, n))[:, None], 1e-12)

    def weights_vector(self, weights) -> np.ndarray:
        """A weight vector in rig target order from a dict (name -> weight) or an array."""
        if isinstance(weights, dict):
            return self.rig.weight_vector(weights)
        w = np.asarray(weights, np.float32)
        if w.shape != (len(self.rig.target_names),):
            raise ValueError(
                f"weights: expected {len(self.rig.target_names)} values, got shape {w.shape}"
            )
        return w

    def pose(self, weights=None) -> tuple[np.ndarray, np.ndarray]:
        """Posed positions and normals, each flat [V * 3] float32, for the given weights."""
        w = (
            np.zeros(len(self.rig.target_names), np.float32)
            if weights is None
            else self.weights_vector(weights)
        )
        nz = np.flatnonzero(w)
        pos = self.rig.positions.reshape(-1)
        nrm = self.rig.normals.reshape(-1)
        # einsum, not BLAS: a multithreaded sgemv spins against llvmpipe's render threads and
        # costs ten times more CPU on a busy 2-core machine
        if len(nz) > len(w) // 4:  # dense: one pass, no gathered copy of the targets
            pos = pos + np.einsum("t,tv->v", w, self._flat)
        elif len(nz):
            pos = pos + np.einsum("t,tv->v", w[nz], self._flat[nz])
        if len(nz):
            # normals from the posed mesh: blending each shape's stored normal deltas goes wrong
            # where shapes combine (jawOpen + mouthClose stretches the mouth corners); authored
            # rest normals are kept and only the change is added
            nrm = nrm.reshape(-1, 3).copy()
            nrm[self._dyn_verts] += self._smooth_normals(pos) - self._rest_smooth
            nrm = nrm.reshape(-1)
        return pos.astype(np.float32, copy=False), nrm.astype(np.float32, copy=False)

    def render(self, weights=None) -> np.ndarray:
        """One frame [H, W, 3] uint8 for the given weights (dict, array in rig order, or None)."""
        pos, nrm = self.pose(weights)
        with self.ctx:
            self.vbo_pos.write(pos.tobytes())
            self.vbo_nrm.write(nrm.tobytes())
            target = self.msaa_fbo or self.fbo
            target.use()
            self.ctx.enable(self.ctx.DEPTH_TEST | self.ctx.CULL_FACE)
            target.clear(*self.background, 1.0, depth=1.0)  # the buffer holds sRGB values
            self.vao.render()
            if self.msaa_fbo is not None:
                self.ctx.copy_framebuffer(self.fbo, self.msaa_fbo)
            raw = self.fbo.read(components=3, alignment=1)
        img = np.frombuffer(raw, np.uint8).reshape(self.height, self.width, 3)
        return img[::-1].copy()

    def render_sequence(self, values: np.ndarray, names) -> np.ndarray:
        """Frames [n, H, W, 3] for parameter rows ``values`` [n, len(names)] named by ``names``."""
        order = np.array([self._index.get(n, -1) for n in names])
        keep = order >= 0
        out = np.empty((len(values), self.height, self.width, 3), np.uint8)
        w = np.zeros(len(self.rig.target_names), np.float32)
        for i, row in enumerate(np.asarray(values, np.float32)):
            w[:] = 0
            w[order[keep]] = row[keep]
            out[i] = self.render(w)
        return out

    def project(self, points) -> np.ndarray:
        """Pixel coordinates [N, 2] (x right, y down from the top-left) of world points [N, 3]."""
        return self.camera.project(points, self.width, self.height)

    def close(self) -> None:
        if self.ctx is not None:
            self.ctx.release()
            self.ctx = None

    def __enter__(self) -> Renderer:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
