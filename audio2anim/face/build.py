"""Generate the default face rig: a stylized head with all 52 ARKit blendshapes.

Why generated rather than the MediaPipe canonical face mesh: that mesh is a 468-vertex face
mask (no back of head, no eyes, no mouth interior, faceted at 512 px), so every part a talking
head needs - eyeballs, lids, teeth, tongue, the mouth cavity, brows, hair - would be ours anyway,
and blendshapes are easier to define on geometry whose parameterization we control. Everything
here is deterministic numpy; `audio2anim face build` reruns it.

Construction (units: metres, +y up, +z out of the face, the character's left at +x):

- **Skin**: a signed-distance sculpture (smooth unions of ellipsoids and capsules for cranium,
  jaw, chin, cheeks, nose, brow ridge, ears and neck; spherical eye sockets subtracted) meshed by
  casting rays from a point inside the head over an (elevation, azimuth) grid that is denser on
  the face. Lips are radial displacements in grid space; the lip line is one grid row whose
  interior vertices are duplicated, so the mouth can open.
- **Mouth interior**: a tube of rings from the lip line into a dark cavity closed at the throat,
  teeth (a rounded box per tooth along a parabolic arch) and a tongue.
- **Eyes**: eyeballs with pupil/iris/sclera rings; eyelids are thin spherical shells around each
  eyeball whose edges follow an almond outline, so blinking moves the edge row along the sphere.
- **Brows**: thin strips laid on the skin. **Hair**: vertex colour and a slight bulge on the skin.

Blendshapes are deltas at weight 1: the jaw rotates about a hinge axis; lids and eyeballs are
re-evaluated parametrically; other shapes are smooth displacement fields (gaussian masks, split
at the lip line by per-vertex upper/lower weights). Normal deltas come from recomputing normals.
"""

from __future__ import annotations

import numpy as np

from .. import arkit
from .rig import Rig, vertex_normals

# --- sculpture --------------------------------------------------------------------------------

EYE_R = 0.0125  # eyeball radius
EYE_C = np.array([0.031, 0.012, 0.064])  # left eye centre (character's left, +x)
LID_UP_R = EYE_R + 0.0017
LID_LOW_R = EYE_R + 0.0011
MOUND_R = LID_UP_R + 0.0005  # skin over the eyeball: the lids at rest, hiding the lid shells
# the almond eye outline, as elevation limits (radians) over azimuth around the eye centre
ALPHA_C, BETA_UP, BETA_LOW = 0.98, 0.44, -0.39
HOLE_UP, HOLE_LOW = 0.14, 0.09  # how far the skin opening exceeds the lids' rest edges


def lid_edges(alpha, up_shift=0.0, low_shift=0.0):
    """Upper and lower lid edge elevations at azimuths ``alpha``, and the almond profile."""
    prof = np.clip(1 - (alpha / ALPHA_C) ** 2, 0, 1) ** 0.75
    return (BETA_UP + up_shift) * prof, (BETA_LOW + low_shift) * prof, prof


def _eye_opening(p, centre):
    """Signed distance to the region cut out of the skin in front of an eyeball."""
    q = p - centre
    rad = np.linalg.norm(q, axis=-1)
    alpha = np.arctan2(q[..., 0], q[..., 2]) * np.sign(centre[0])
    beta = np.arcsin(np.clip(q[..., 1] / np.maximum(rad, 1e-9), -1, 1))
    up, low, prof = lid_edges(alpha)
    wide = prof**0.5
    ang = np.maximum(beta - up - HOLE_UP * wide, low - HOLE_LOW * wide - beta)
    ang = np.where(prof > 0, ang, np.abs(beta) + np.abs(alpha) - ALPHA_C + 0.01)
    # bounded in depth: cut through the lids only, never a groove far along the corner rays
    return np.maximum(np.maximum(ang * rad, (EYE_R - 0.001) - rad), rad - (MOUND_R + 0.008))


RAY_ORIGIN = np.array([0.0, -0.005, 0.0])
MOUTH_Y = -0.047  # lip line height at the centre
MOUTH_HALF_W = 0.024  # lip line half width (x)

SKIN = 0
TUBE, TEETH_UP, TEETH_LOW, TONGUE, EYE_L, EYE_R_PART, LID_L, LID_R, BROW, HAIR = range(1, 11)


def _srgb(*c: float) -> np.ndarray:
    c = np.asarray(c, np.float64)
    return np.where(c <= 0.04045, c / 12.92, ((c + 0.055) / 1.055) ** 2.4)


COL_SKIN = _srgb(0.93, 0.74, 0.62)
COL_LIP = _srgb(0.80, 0.44, 0.44)
COL_HAIR = _srgb(0.30, 0.19, 0.12)
COL_BROW = _srgb(0.26, 0.16, 0.10)
COL_LASH = _srgb(0.16, 0.10, 0.08)
COL_SCLERA = _srgb(0.96, 0.95, 0.93)
COL_IRIS = _srgb(0.33, 0.50, 0.64)
COL_LIMBUS = _srgb(0.12, 0.16, 0.22)
COL_PUPIL = _srgb(0.03, 0.03, 0.04)
COL_TEETH = _srgb(0.96, 0.94, 0.88)
COL_TONGUE = _srgb(0.86, 0.33, 0.36)
COL_GUM = _srgb(0.45, 0.14, 0.15)
COL_CAVITY = _srgb(0.10, 0.025, 0.03)


def _smin(a, b, k):
    h = np.clip(0.5 + 0.5 * (b - a) / k, 0.0, 1.0)
    return b * (1 - h) + a * h - k * h * (1 - h)


def _smax(a, b, k):
    return -_smin(-a, -b, k)


def _ellipsoid(p, c, r):
    q = (p - np.asarray(c)) / np.asarray(r)
    k0 = np.linalg.norm(q, axis=-1)
    k1 = np.linalg.norm(q / np.asarray(r), axis=-1)
    return k0 * (k0 - 1.0) / np.maximum(k1, 1e-9)


def _capsule(p, a, b, r):
    a, b = np.asarray(a), np.asarray(b)
    pa, ba = p - a, b - a
    h = np.clip((pa @ ba) / (ba @ ba), 0.0, 1.0)
    return np.linalg.norm(pa - h[..., None] * ba, axis=-1) - r


def head_sdf(p: np.ndarray) -> np.ndarray:
    """Signed distance (approximate, metres) to the skin surface; negative inside."""
    d = _ellipsoid(p, (0, 0.028, -0.008), (0.071, 0.092, 0.088))  # cranium
    d = _smin(d, _ellipsoid(p, (0, -0.030, 0.020), (0.058, 0.055, 0.066)), 0.025)  # jaw mass
    d = _smin(d, _ellipsoid(p, (0, -0.071, 0.052), (0.026, 0.019, 0.026)), 0.018)  # chin
    d = _smin(d, _ellipsoid(p, (0, -0.040, 0.066), (0.030, 0.023, 0.024)), 0.016)  # muzzle
    for sx in (1, -1):
        d = _smin(d, _ellipsoid(p, (sx * 0.035, -0.010, 0.051), (0.026, 0.024, 0.026)), 0.018)
        d = _smin(d, _ellipsoid(p, (sx * 0.071, 0.006, -0.006), (0.010, 0.024, 0.016)), 0.012)
        d = _smin(d, _ellipsoid(p, (sx * 0.011, -0.015, 0.088), (0.0085, 0.0075, 0.0085)), 0.010)
    d = _smin(d, _ellipsoid(p, (0, 0.036, 0.064), (0.052, 0.013, 0.020)), 0.014)  # brow ridge
    d = _smin(d, _capsule(p, (0, 0.026, 0.079), (0, -0.008, 0.099), 0.0072), 0.010)  # bridge
    d = _smin(d, _ellipsoid(p, (0, -0.010, 0.097), (0.010, 0.010, 0.010)), 0.007)  # nose tip
    d = _smin(d, _capsule(p, (0, -0.06, -0.02), (0, -0.22, -0.025), 0.047), 0.022)  # neck
    for sx in (1, -1):
        e = EYE_C * [sx, 1, 1]
        d = _smin(d, np.linalg.norm(p - e, axis=-1) - MOUND_R, 0.008)
        d = _smax(d, -_eye_opening(p, e), 0.0012)
    return d


def _ray_hits(dirs: np.ndarray, t_max: float = 0.32, iters: int = 90) -> np.ndarray:
    """Distance along each unit direction from RAY_ORIGIN to the outermost skin crossing.

    Sphere tracing inwards from ``t_max``: steps never exceed the distance bound, so thin
    features (the eye-socket rim) are not stepped over, which fixed-step marching does.
    """
    t = np.full(len(dirs), t_max)
    for _ in range(iters):
        d = head_sdf(RAY_ORIGIN + t[:, None] * dirs)
        t = t - np.maximum(0.85 * d, 2e-6)
    return t


def _direction(theta, phi):
    ct = np.cos(theta)
    return np.stack([np.sin(phi) * ct, np.sin(theta), np.cos(phi) * ct], axis=-1)


def _warped(n: int, lo: float, hi: float, density, endpoint: bool = True) -> np.ndarray:
    """n samples in [lo, hi] spaced inversely to ``density`` (more samples where it is high)."""
    x = np.linspace(lo, hi, 4001)
    cdf = np.concatenate([[0], np.cumsum(0.5 * (density(x[1:]) + density(x[:-1])) * np.diff(x))])
    cdf /= cdf[-1]
    u = np.linspace(0, 1, n) if endpoint else np.arange(n) / n
    return np.interp(u, cdf, x)


def hairline_y(abs_phi):
    """Height of the hairline at azimuth |phi|: the forehead, above the ears, the nape."""
    return 0.082 - 0.044 * _smoothstep(0.5, 1.3, abs_phi) - 0.068 * _smoothstep(2.0, 2.8, abs_phi)


def _smoothstep(e0, e1, x):
    t = np.clip((x - e0) / (e1 - e0), 0.0, 1.0)
    return t * t * (3 - 2 * t)


def _sigmoid(x):
    return 0.5 * (1 + np.tanh(0.5 * np.clip(x, -60, 60)))


def _gauss(p, c, r):
    q = (p - np.asarray(c)) / np.asarray(r)
    return np.exp(-np.sum(q * q, axis=-1))


class _Mesh:
    """Accumulates parts: positions, colours, triangles and a part id per vertex."""

    def __init__(self) -> None:
        self.pos: list[np.ndarray] = []
        self.col: list[np.ndarray] = []
        self.part: list[np.ndarray] = []
        self.tris: list[np.ndarray] = []
        self.n = 0

    def add(self, pos, col, tris, part) -> int:
        base = self.n
        self.pos.append(np.asarray(pos, np.float64))
        self.col.append(np.broadcast_to(col, (len(pos), 3)).astype(np.float64))
        self.part.append(np.full(len(pos), part))
        self.tris.append(np.asarray(tris, np.int64) + base)
        self.n += len(pos)
        return base

    def add_tris(self, tris) -> None:
        self.tris.append(np.asarray(tris, np.int64))


def _grid_tris(rows: int, cols: int, wrap: bool) -> np.ndarray:
    """Two triangles per quad of a rows x cols vertex grid (row-major), optionally wrapping cols."""
    i, j = np.meshgrid(np.arange(rows - 1), np.arange(cols if wrap else cols - 1), indexing="ij")
    a = i * cols + j
    b = i * cols + (j + 1) % cols
    c = (i + 1) * cols + (j + 1) % cols
    d = (i + 1) * cols + j
    return np.concatenate([np.stack([a, b, c], -1), np.stack([a, c, d], -1)]).reshape(-1, 3)


def _orient(tris: np.ndarray, pos: np.ndarray, toward_outside) -> np.ndarray:
    """Flip all of a part's triangles if most face against ``toward_outside(centroid)``.

    Parts are built as grids with consistent winding, so one vote for the whole part is right
    even where single triangles face inwards (socket walls, the lip contact strip).
    """
    a, b, c = pos[tris[:, 0]], pos[tris[:, 1]], pos[tris[:, 2]]
    n = np.cross(b - a, c - a)
    want = toward_outside((a + b + c) / 3)
    votes = np.sign(np.sum(n * want, axis=1)) * np.linalg.norm(n, axis=1)  # area-weighted
    return tris[:, [0, 2, 1]] if votes.sum() < 0 else tris


# --- parts ------------------------------------------------------------------------------------


class _Builder:
    def __init__(self, n_theta: int = 72, n_phi: int = 88) -> None:
        self.m = _Mesh()
        self.n_theta, self.n_phi = n_theta, n_phi

    # skin ------------------------------------------------------------------------------------
    def skin(self) -> None:
        # elevation of the lip line, seen from the ray origin
        theta_m = -0.45
        for _ in range(3):
            t = _ray_hits(_direction(np.array([theta_m]), np.array([0.0])))[0]
            theta_m = np.arcsin((MOUTH_Y - RAY_ORIGIN[1]) / t)
        theta = _warped(
            self.n_theta,
            -np.pi / 2,
            np.pi / 2,
            lambda x: (
                0.5
                + 2.2 * np.exp(-(((x + 0.15) / 0.55) ** 2))
                + 2.0 * np.exp(-(((x - 0.25) / 0.12) ** 2))
                + 2.5 * np.exp(-(((x - theta_m) / 0.13) ** 2))
            ),
        )
        theta[np.argmin(np.abs(theta - theta_m))] = theta_m
        phi = _warped(
            self.n_phi,
            -np.pi,
            np.pi,
            lambda x: (
                0.35
                + 2.0 * np.exp(-((x / 0.8) ** 2))
                + 1.5 * np.exp(-((x / 0.32) ** 2))
                + 1.0 * np.exp(-(((np.abs(x) - 0.42) / 0.15) ** 2))
            ),
            endpoint=False,
        )
        phi[np.argmin(np.abs(phi))] = 0.0
        th, ph = np.meshgrid(theta, phi, indexing="ij")
        dirs = _direction(th, ph).reshape(-1, 3)
        r = _ray_hits(dirs).reshape(th.shape)

        # lips: radial displacement in grid space; the lip line is row i_m
        self.phi_w = phi_w = np.arcsin(MOUTH_HALF_W / (r[np.argmin(np.abs(theta - theta_m)), 0]))
        u = ph / phi_w
        v = th - theta_m
        lip_prof = np.clip(1 - u**2, 0, 1) ** 0.6
        bump_up = np.exp(-(((v - 0.035) / 0.04) ** 2)) * (v > -0.02)
        bump_low = np.exp(-(((v + 0.045) / 0.05) ** 2)) * (v < 0.02)
        r = r + 0.0030 * lip_prof * bump_up + 0.0036 * lip_prof * bump_low
        crease = np.exp(-((u / 1.08) ** 8)) * np.exp(-((v / 0.018) ** 2))
        r = r - 0.0030 * crease
        # hair: a colour above a hairline that drops at the sides and back
        pos = RAY_ORIGIN + r[..., None] * _direction(th, ph)
        aphi = np.abs(ph)
        # averaged over each vertex's grid cell (4x4 samples), so the colour blends across
        # whole cells and the hairline shows no stair steps where it crosses the coarse rows
        d_th = np.gradient(theta)[:, None]
        d_ph = np.gradient(phi)[None, :]
        hair = np.zeros_like(r)
        offsets = (np.arange(4) - 1.5) / 4
        for a in offsets:
            for b_ in offsets:
                ths, phs = th + a * d_th, ph + b_ * d_ph
                ps = RAY_ORIGIN + r[..., None] * _direction(ths, phs)
                ap = np.abs(phs)
                hy = hairline_y(ap) - 0.004  # tucked under the hair cap's edge
                hair += _smoothstep(-0.004, 0.004, ps[..., 1] - hy) / 16
        hair *= 1 - _smoothstep(0.0, 0.01, np.abs(pos[..., 0]) - 0.068) * (aphi < 1.7)  # ears

        lip = np.zeros_like(r)  # lip colour, averaged over each vertex's cell like the hair
        for a in offsets:
            for b_ in offsets:
                us = (ph + b_ * d_ph) / phi_w
                vs = th + a * d_th - theta_m
                prof = np.clip(1 - us**2, 0, 1)
                top = 0.07 * prof**0.45 * (1 - 0.22 * np.exp(-((us / 0.14) ** 2)))
                bottom = 0.095 * prof**0.55
                inside = (np.abs(us) < 1) & (vs <= top) & (vs >= -bottom)
                lip += inside / 16
        # the lip line row itself belongs to both lips
        lip[int(np.argmin(np.abs(theta - theta_m))), np.abs(phi) < phi_w] = 1.0
        lip = lip[..., None]
        col = COL_SKIN * (1 - lip) + COL_LIP * lip
        col = col * (1 - hair[..., None]) + COL_HAIR * hair[..., None]

        n_t, n_p = th.shape
        self.i_m = i_m = int(np.argmin(np.abs(theta - theta_m)))
        cols = np.flatnonzero(np.abs(phi) < phi_w)  # interior lip-line columns (duplicated)
        self.mouth_cols = cols
        pos = pos.reshape(-1, 3)
        col = col.reshape(-1, 3)
        tris = _grid_tris(n_t, n_p, wrap=True)
        # duplicate the interior lip-line vertices: originals = upper lip, copies = lower lip
        orig = i_m * n_p + cols
        dup = len(pos) + np.arange(len(cols))
        remap = dict(zip(orig.tolist(), dup.tolist(), strict=True))
        # triangles of the quad row below the lip line (rows i_m-1 .. i_m) use the copies
        row_below = (tris // n_p).min(axis=1) == i_m - 1
        sub = tris[row_below]
        sub = np.vectorize(lambda k: remap.get(k, k))(sub)
        tris[row_below] = sub
        pos = np.concatenate([pos, pos[orig]])
        col = np.concatenate([col, col[orig]])
        tris = _orient(tris, pos, lambda c: c - RAY_ORIGIN)
        self.skin_base = self.m.add(pos, col, tris, SKIN)
        self.lip_upper = self.skin_base + orig
        self.lip_lower = self.skin_base + dup
        self.corners = self.skin_base + i_m * n_p + np.array([cols[0] - 1, cols[-1] + 1])

    # mouth interior --------------------------------------------------------------------------
    def mouth(self) -> None:
        m = self.m
        allpos = np.concatenate(m.pos)
        # closed loop: corner R(-x), upper lip -> corner L(+x), lower lip back
        loop = np.concatenate(
            [self.corners[:1], self.lip_upper, self.corners[1:], self.lip_lower[::-1]]
        )
        n_up = len(self.lip_upper)
        is_up = np.zeros(len(loop), bool)
        is_up[1 : 1 + n_up] = True
        is_low = np.zeros(len(loop), bool)
        is_low[2 + n_up :] = True
        edge = allpos[loop]
        self.mouth_front_z = edge[:, 2].max()
        x = edge[:, 0]
        s = np.clip(1 - (x / (np.abs(x).max() + 1e-9)) ** 2, 0, 1) ** 0.5
        vert = np.where(is_up, 1.0, np.where(is_low, -1.0, 0.0))
        # (depth, vertical extent, x scale, colour) per ring
        rings = [
            (0.0025, 0.0, 1.0, COL_LIP),
            (0.0050, 0.011, 1.0, COL_GUM),
            (0.0260, 0.017, 1.25, COL_CAVITY),
            (0.0420, 0.008, 0.9, COL_CAVITY),
        ]
        ring_ids = [loop]
        self.tube_side = []
        for depth, ext, xs, colr in rings:
            p = np.stack(
                [x * xs, edge[:, 1] + vert * ext * s, edge[:, 2] - depth + 0.0 * x], axis=1
            )
            base = m.add(p, colr, np.zeros((0, 3)), TUBE)
            ring_ids.append(base + np.arange(len(loop)))
            self.tube_side.append((base, vert))
        throat = allpos[loop].mean(axis=0) * [0, 1, 0] + [0, 0, self.mouth_front_z - 0.047]
        tip = m.add(throat[None], COL_CAVITY, np.zeros((0, 3)), TUBE)
        self.tube_side.append((tip, np.zeros(1)))
        n = len(loop)
        tris = []
        for ra, rb in zip(ring_ids[:-1], ring_ids[1:], strict=True):
            for k in range(n):
                a, b = ra[k], ra[(k + 1) % n]
                c, d = rb[(k + 1) % n], rb[k]
                tris += [(a, b, c), (a, c, d)]
        last = ring_ids[-1]
        tris += [(last[k], last[(k + 1) % n], tip) for k in range(n)]
        tris = np.array(tris)
        allpos = np.concatenate(m.pos)
        axis_y = MOUTH_Y

        def inward(c):  # tube normals face the cavity axis
            return np.stack([-c[:, 0], axis_y - c[:, 1], np.zeros(len(c))], 1) + [0, 0, 1e-4]

        m.add_tris(_orient(tris, allpos, inward))
        self.teeth_and_tongue()

    def teeth_and_tongue(self) -> None:
        m = self.m
        zf = self.mouth_front_z
        sphere_pos, sphere_tris = _uv_sphere(4, 8)
        boxy = np.sign(sphere_pos) * np.abs(sphere_pos) ** 0.45  # a rounded box
        for upper in (True, False):
            # upper incisal edges 3.6 mm below the lip line (seen when the jaw opens), lower teeth
            # behind them (overbite) with their tops just above the line
            half, h = (0.0205, 0.0095) if upper else (0.0175, 0.0075)
            y = MOUTH_Y - 0.0036 + h / 2 if upper else MOUTH_Y + 0.0005 - h / 2
            w = 2 * half / 9 * 0.92  # 10 teeth per row, small gaps
            for x in np.linspace(-half, half, 10):
                z = zf - (0.0065 if upper else 0.0095) - 11.0 * x * x  # parabolic arch
                centre = np.array([x, y, z])
                q = boxy * [w / 2, h / 2, 0.0018]
                ang = -np.arctan(22.0 * x)  # face along the arch
                c, s_ = np.cos(ang), np.sin(ang)
                p = centre + np.stack(
                    [c * q[:, 0] + s_ * q[:, 2], q[:, 1], -s_ * q[:, 0] + c * q[:, 2]], 1
                )
                tris = _orient(sphere_tris, p, lambda cc, o=centre: cc - o)
                m.add(p, COL_TEETH, tris, TEETH_UP if upper else TEETH_LOW)
        tp, tt = _uv_sphere(10, 16)
        centre = np.array([0.0, MOUTH_Y - 0.0085, zf - 0.026])
        p = tp * [0.0155, 0.0055, 0.0150] + centre
        m.add(p, COL_TONGUE, _orient(tt, p, lambda cc: cc - centre), TONGUE)
        self.tongue_centre = centre

    # eyes ------------------------------------------------------------------------------------
    def eyes(self) -> None:
        m = self.m
        gam = np.array([0, 0.09, 0.17, 0.19, 0.30, 0.42, 0.445, 0.47, 0.5, 0.7, 1.0, 1.4, 1.9, 2.5, np.pi])  # fmt: skip
        n_a = 20
        g, a = np.meshgrid(gam, np.arange(n_a) * 2 * np.pi / n_a, indexing="ij")
        unit = np.stack([np.sin(g) * np.cos(a), np.sin(g) * np.sin(a), np.cos(g)], -1).reshape(
            -1, 3
        )
        gg = g.reshape(-1)
        col = np.where(
            (gg < 0.18)[:, None],
            COL_PUPIL,
            np.where(
                (gg < 0.43)[:, None],
                COL_IRIS,
                np.where((gg < 0.46)[:, None], COL_LIMBUS, COL_SCLERA),
            ),
        )
        tris = _grid_tris(len(gam), n_a, wrap=True)
        self.eye_unit = unit
        self.eyeball = {}
        for side, part in ((1, EYE_L), (-1, EYE_R_PART)):
            c = EYE_C * [side, 1, 1]
            p = c + EYE_R * unit
            base = m.add(p, col, _orient(tris, p, lambda cc, c=c: cc - c), part)
            self.eyeball[side] = (base, c)
        self.lids = {}
        for side, part in ((1, LID_L), (-1, LID_R)):
            self.lids[side] = self._lids(side, part)

    def lid_positions(self, side, up_edge, low_edge):
        """Positions of one eye's lid vertices for given edge elevation arrays (per column)."""
        c = EYE_C * [side, 1, 1]
        alpha = self.lid_alpha
        out = []
        for edge, top, radius, fr in (
            (up_edge, 1.35, LID_UP_R, self.lid_rows),
            (low_edge, -1.35, LID_LOW_R, self.lid_rows),
        ):
            rows = []
            for f, rr in fr:
                beta = edge + f * (top - edge)
                rad = radius if rr is None else EYE_R + rr
                rows.append(c + rad * _direction(beta, alpha * side))
            out.append(np.concatenate(rows))
        return np.concatenate(out)

    def _lids(self, side, part):
        m = self.m
        self.lid_alpha = np.linspace(-2.1, 2.1, 27)
        # (fraction from edge to top, radius override for the tucked margin row)
        self.lid_rows = [(0.0, 0.0004), (0.0, None), (0.03, None)] + [
            (f, None) for f in np.linspace(0.08, 1.0, 9)
        ]
        up, low, _ = lid_edges(self.lid_alpha)
        p = self.lid_positions(side, up, low)
        n_c, n_r = len(self.lid_alpha), len(self.lid_rows)
        colors = []
        for lid in ("up", "low"):
            for k in range(n_r):
                if lid == "up" and k <= 2:
                    colors.append(np.tile(COL_LASH, (n_c, 1)))
                elif lid == "low" and k == 0:
                    colors.append(np.tile(COL_LIP * 0.8, (n_c, 1)))
                else:
                    colors.append(np.tile(COL_SKIN, (n_c, 1)))
        grid = _grid_tris(n_r, n_c, wrap=False)
        c = EYE_C * [side, 1, 1]
        # the two lids run in opposite directions (edge to top, edge to bottom): orient each
        tris = np.concatenate([_orient(grid + k * n_r * n_c, p, lambda cc: cc - c) for k in (0, 1)])
        base = m.add(p, np.concatenate(colors), tris, part)
        return base

    # brows -----------------------------------------------------------------------------------
    def brow_positions(self, side, lift_inner=0.0, lift_outer=0.0, down=0.0):
        t = np.linspace(0, 1, 16)
        x = 0.010 + 0.041 * t
        y = 0.031 + 0.0055 * np.sin(np.pi * t**0.7) - 0.003 * t
        thick = 0.0075 * (1 - t) + 0.0028 * t
        rows = []
        for off, lift in ((0.5, 0.0009), (0.0, 0.0016), (-0.5, 0.0009)):
            pts = np.stack([side * x, y + off * thick, np.full_like(x, 0.08)], 1)
            d = pts - RAY_ORIGIN
            d /= np.linalg.norm(d, axis=1, keepdims=True)
            r = _ray_hits(d)
            rows.append(RAY_ORIGIN + (r + lift)[:, None] * d)
        return np.concatenate(rows)

    def hair(self) -> None:
        """A cap over the skull: its edge follows the hairline exactly (dense along azimuth),
        so the hairline is a clean curve; it stands 2.5 mm off the skin, tapering at the edge."""
        n_c, n_r = 120, 14
        phi = np.linspace(-np.pi, np.pi, n_c, endpoint=False)
        target_y = hairline_y(np.abs(phi))
        lo, hi = np.full(n_c, -0.9), np.full(n_c, 1.5)
        for _ in range(16):  # the elevation where the skin reaches the hairline, per column
            mid = 0.5 * (lo + hi)
            d = _direction(mid, phi)
            y = RAY_ORIGIN[1] + _ray_hits(d) * d[:, 1]
            lo, hi = np.where(y < target_y, mid, lo), np.where(y < target_y, hi, mid)
        edge = 0.5 * (lo + hi)
        f = np.linspace(0, 1, n_r)[:, None] ** 1.3
        th = edge[None, :] + f * (np.pi / 2 - 0.02 - edge[None, :])
        ph = np.broadcast_to(phi, th.shape)
        d = _direction(th, ph).reshape(-1, 3)
        lift = np.broadcast_to(0.0006 + 0.003 * _smoothstep(0, 0.3, f), th.shape).reshape(-1)
        pos = RAY_ORIGIN + (_ray_hits(d) + lift)[:, None] * d
        tris = _grid_tris(n_r, n_c, wrap=True)
        tris = _orient(tris, pos, lambda c: c - RAY_ORIGIN)
        self.m.add(pos, COL_HAIR, tris, HAIR)

    def brows(self) -> None:
        for side in (1, -1):
            p = self.brow_positions(side)
            tris = _grid_tris(3, 16, wrap=False)
            tris = _orient(tris, p, lambda cc: cc - RAY_ORIGIN)
            self.m.add(p, COL_BROW, tris, BROW)


def _uv_sphere(n_rings: int, n_seg: int):
    """Unit sphere: (n_rings + 1) x n_seg grid from +z pole to -z pole, and its triangles."""
    g = np.linspace(0, np.pi, n_rings + 1)
    a = np.arange(n_seg) * 2 * np.pi / n_seg
    gg, aa = np.meshgrid(g, a, indexing="ij")
    pos = np.stack([np.sin(gg) * np.cos(aa), np.sin(gg) * np.sin(aa), np.cos(gg)], -1)
    return pos.reshape(-1, 3), _grid_tris(n_rings + 1, n_seg, wrap=True)


# --- blendshapes ------------------------------------------------------------------------------


def _rotate_about(p, pivot, axis, angle):
    """Rodrigues rotation of points p [N,3] about a line through pivot along unit axis."""
    axis = np.asarray(axis, np.float64) / np.linalg.norm(axis)
    q = p - pivot
    c, s = np.cos(angle), np.sin(angle)
    cross = np.cross(axis, q)
    dot = (q @ axis)[..., None]
    return pivot + q * c[..., None] + cross * s[..., None] + axis * dot * (1 - c[..., None])


def build_rig() -> Rig:
    """Build the default rig (about 20k triangles, all 52 ARKit blendshapes)."""
    b = _Builder()
    b.skin()
    b.mouth()
    b.eyes()
    b.brows()
    b.hair()
    m = b.m
    P = np.concatenate(m.pos)
    part = np.concatenate(m.part)
    col = np.concatenate(m.col)
    tris = np.concatenate(m.tris)
    n = len(P)

    # per-vertex lip side (upper weight) and jaw weight
    lip_line = np.concatenate([P[b.corners[:1]], P[b.lip_upper], P[b.corners[1:]]])
    order = np.argsort(lip_line[:, 0])
    lx, ly = lip_line[order, 0], lip_line[order, 1]
    x, y, z = P[:, 0], P[:, 1], P[:, 2]
    e = np.maximum(np.abs(x) - MOUTH_HALF_W, 0)
    y_line = np.interp(x, lx, ly) + 0.55 * e
    upper = _sigmoid((y - y_line) / (0.0007 + 0.3 * e))
    jaw = _sigmoid((y_line - y) / (0.0006 + 0.3 * e)) * _smoothstep(-0.03, 0.035, z)
    upper[b.lip_upper], upper[b.lip_lower] = 1.0, 0.0
    jaw[b.lip_upper], jaw[b.lip_lower] = 0.0, 1.0
    for base, vert in b.tube_side:
        idx = base + np.arange(len(vert))
        upper[idx] = np.where(vert > 0, 1.0, np.where(vert < 0, 0.0, 0.5))
        jaw[idx] = np.where(vert > 0, 0.0, np.where(vert < 0, 1.0, 0.5))
    upper[part == TEETH_UP], jaw[part == TEETH_UP] = 1.0, 0.0
    upper[part == TEETH_LOW], jaw[part == TEETH_LOW] = 0.0, 1.0
    upper[part == TONGUE], jaw[part == TONGUE] = 0.0, 1.0
    for prt in (EYE_L, EYE_R_PART, LID_L, LID_R, BROW):
        jaw[part == prt] = 0.0
    lower = 1.0 - upper
    soft = np.isin(part, (SKIN, TUBE, LID_L, LID_R, BROW, HAIR))  # moved by skin fields

    zf = b.mouth_front_z
    M = np.array([0.0, MOUTH_Y, zf])
    W = MOUTH_HALF_W
    corner = {1: P[b.corners[1]], -1: P[b.corners[0]]}
    side_w = {1: _sigmoid(x / 0.006), -1: _sigmoid(-x / 0.006)}

    def field(c, r):
        return _gauss(P, c, r) * soft

    mouth_all = field(M + [0, -0.003, -0.004], (W * 1.35, 0.022, 0.022))
    # masks measured from the lip line: flat-topped across the mouth so the lip edges move as
    # one (mouthClose must meet exactly), falling off above/below and into the mouth
    dy = y - y_line
    lat = np.exp(-((x / (1.5 * W)) ** 8))
    zm = np.exp(-(((z - zf + 0.004) / 0.02) ** 2)) * soft * lat
    lip_up = upper * zm * np.exp(-((np.maximum(dy, 0) / 0.011) ** 2))
    lip_low = lower * zm * np.exp(-((np.maximum(-dy, 0) / 0.013) ** 2))
    edge = zm * np.exp(-((dy / 0.005) ** 2))
    open_prof = np.clip(1 - (x / W) ** 2, 0, 1)

    def corner_mask(side, r=(0.013, 0.013, 0.025)):
        return field(corner[side], r)

    pivot = np.array([0.0, MOUTH_Y + 0.045, -0.005])
    jaw_angle = 0.33

    def jaw_rot(weight):
        return _rotate_about(P, pivot, (1, 0, 0), jaw_angle * weight) - P

    full_jaw = jaw_rot(np.ones(n))
    vec = np.asarray

    T: dict[str, np.ndarray] = {}
    T["jawOpen"] = jaw_rot(jaw)
    T["jawForward"] = jaw[:, None] * vec([0, 0, 0.010])
    T["jawLeft"] = jaw[:, None] * vec([0.008, 0, 0])
    T["jawRight"] = jaw[:, None] * vec([-0.008, 0, 0])
    close_low = lower * zm * np.exp(-((np.maximum(-dy, 0) / 0.02) ** 2))
    close_up = upper * zm * np.exp(-((np.maximum(dy, 0) / 0.01) ** 2))
    T["mouthClose"] = (-0.62 * close_low + 0.38 * close_up)[:, None] * full_jaw
    # funnel: corners in, lips forward and flared, a round opening (widest at the centre)
    T["mouthFunnel"] = (
        mouth_all[:, None] * np.stack([-0.40 * x, np.zeros(n), np.full(n, 0.006)], 1)
        + (edge * open_prof**2)[:, None]
        * np.stack([np.zeros(n), 0.0045 * upper - 0.0065 * lower, np.full(n, 0.004)], 1)
        + ((lip_up - lip_low) * (1 - edge))[:, None] * vec([0, 0.0025, 0.001])
    )
    T["mouthPucker"] = (
        mouth_all[:, None] * np.stack([-0.55 * x, np.zeros(n), np.full(n, 0.011)], 1)
        + (edge * open_prof)[:, None] * vec([0, 0, 0.004])
        + ((lip_up - lip_low) * (1 - edge))[:, None] * vec([0, 0.0025, 0.002])
    )
    T["mouthLeft"] = mouth_all[:, None] * vec([0.008, 0, -0.001])
    T["mouthRight"] = mouth_all[:, None] * vec([-0.008, 0, -0.001])
    names_lr = {1: "Left", -1: "Right"}
    for s, nm in names_lr.items():
        cm = corner_mask(s)
        cm_wide = corner_mask(s, (0.02, 0.02, 0.03))
        cheek = field([s * 0.036, MOUTH_Y + 0.03, zf - 0.02], (0.018, 0.015, 0.03))
        T[f"mouthSmile{nm}"] = cm_wide[:, None] * vec([s * 0.006, 0.0065, -0.003]) + cheek[
            :, None
        ] * vec([s * 0.001, 0.003, 0.002])
        T[f"mouthFrown{nm}"] = cm_wide[:, None] * vec([s * 0.001, -0.0065, 0.0])
        T[f"mouthDimple{nm}"] = cm[:, None] * vec([s * 0.006, 0.001, -0.0065])
        T[f"mouthStretch{nm}"] = cm_wide[:, None] * vec([s * 0.0075, -0.003, -0.002]) + (
            lip_low * side_w[s]
        )[:, None] * vec([0, -0.002, 0])
        # pressed lips thin out towards the lip line; the line itself only moves back
        T[f"mouthPress{nm}"] = side_w[s][:, None] * (
            (lip_up * (1 - edge))[:, None] * vec([0, -0.0035, -0.002])
            + (lip_low * (1 - edge))[:, None] * vec([0, 0.0035, -0.002])
            + (edge * (lip_up + lip_low))[:, None] * vec([0, 0, -0.002])
        )
        T[f"mouthLowerDown{nm}"] = (lip_low * side_w[s] * (0.35 + 0.65 * open_prof))[:, None] * vec(
            [0, -0.0075, 0.001]
        )
        T[f"mouthUpperUp{nm}"] = (lip_up * side_w[s] * (0.35 + 0.65 * open_prof))[:, None] * vec(
            [0, 0.0065, 0.001]
        )
        cheek_sq = field([s * 0.034, EYE_C[1] - 0.021, EYE_C[2] + 0.004], (0.017, 0.011, 0.02))
        T[f"cheekSquint{nm}"] = cheek_sq[:, None] * vec([0, 0.0045, 0.002])
        sneer = field([s * 0.013, -0.010, 0.086], (0.011, 0.014, 0.02))
        T[f"noseSneer{nm}"] = sneer[:, None] * vec([s * 0.0020, 0.0055, 0.0005]) + field(
            [s * 0.012, 0.03, 0.07], (0.012, 0.01, 0.03)
        )[:, None] * vec([0, -0.0015, 0])
        brow = field([s * 0.030, 0.040, 0.07], (0.022, 0.012, 0.03))
        brow_in = field([s * 0.015, 0.038, 0.075], (0.012, 0.012, 0.03))
        T[f"browDown{nm}"] = brow[:, None] * vec([-s * 0.0015, -0.0045, 0.0005]) + brow_in[
            :, None
        ] * vec([-s * 0.0015, -0.0015, 0])
        T[f"browOuterUp{nm}"] = field([s * 0.044, 0.038, 0.06], (0.015, 0.014, 0.03))[
            :, None
        ] * vec([0, 0.0065, 0])
    bi = field([0.016, 0.038, 0.075], (0.012, 0.014, 0.03)) + field(
        [-0.016, 0.038, 0.075], (0.012, 0.014, 0.03)
    )
    T["browInnerUp"] = bi[:, None] * vec([0, 0.0065, 0])
    # rolled lips turn in: the red part slides towards the line and back into the mouth
    T["mouthRollLower"] = (lip_low * (1 - edge))[:, None] * vec([0, 0.0045, -0.006]) + (
        lip_low * edge
    )[:, None] * vec([0, 0.0005, -0.005])
    T["mouthRollUpper"] = (lip_up * (1 - edge))[:, None] * vec([0, -0.004, -0.0055]) + (
        lip_up * edge
    )[:, None] * vec([0, -0.0005, -0.0045])
    shrug_low = lower * field(M + [0, -0.016, -0.004], (W * 1.1, 0.02, 0.025))
    T["mouthShrugLower"] = shrug_low[:, None] * vec([0, 0.005, 0.004])
    T["mouthShrugUpper"] = lip_up[:, None] * vec([0, 0.0045, 0.0025])
    puff = np.zeros(n)
    for s in (1, -1):
        puff += field([s * 0.042, MOUTH_Y + 0.010, zf - 0.032], (0.02, 0.022, 0.028))
    outward = np.stack([x, np.zeros(n), z - 0.0], 1)
    outward /= np.maximum(np.linalg.norm(outward, axis=1, keepdims=True), 1e-9)
    T["cheekPuff"] = puff[:, None] * outward * 0.012
    tongue = part == TONGUE
    T["tongueOut"] = tongue[:, None] * vec([0, -0.005, 0.026])

    # eyes: lids and eyeballs re-evaluated parametrically
    alpha = b.lid_alpha
    n_lid = len(b.lid_rows) * len(alpha) * 2
    for s, nm in names_lr.items():
        lid_base = b.lids[s]
        lid_idx = lid_base + np.arange(n_lid)
        up0, low0, prof = lid_edges(alpha)
        rest = b.lid_positions(s, up0, low0)

        def lid_delta(up, low, lid_idx=lid_idx, rest=rest, s=s):
            d = np.zeros((n, 3))
            d[lid_idx] = b.lid_positions(s, up, low) - rest
            return d

        closed_low = low0 * 0.8
        T[f"eyeBlink{nm}"] = lid_delta(closed_low - 0.05 * prof, closed_low)
        T[f"eyeSquint{nm}"] = lid_delta(up0 * 0.82, low0 * 0.45) + 0.5 * T[f"cheekSquint{nm}"]
        T[f"eyeWide{nm}"] = lid_delta(up0 + 0.13 * prof**0.5, low0 - 0.06 * prof)
        ball_base, c = b.eyeball[s]
        ball = ball_base + np.arange(len(b.eye_unit))
        look = {"Up": (1, 0), "Down": (-1, 0), "In": (0, -s), "Out": (0, s)}
        for dname, (dy, dx) in look.items():
            # rotate the forward axis towards (dx, dy): axis = forward x target
            axis = np.cross([0, 0, 1.0], [dx, dy, 0.0])
            angle = 0.38 if dname in ("In", "Out") else 0.33
            d = np.zeros((n, 3))
            d[ball] = _rotate_about(P[ball], c, axis, np.full(len(ball), angle)) - P[ball]
            if dname == "Up":
                d += lid_delta(up0 + 0.10 * prof, low0 + 0.04 * prof)
            elif dname == "Down":
                d += lid_delta(up0 - 0.30 * prof, low0 - 0.06 * prof)
            T[f"eyeLook{dname}{nm}"] = d

    missing = set(arkit.ALL) - set(T)
    assert not missing, missing
    names = tuple(arkit.ALL)
    rest_n = vertex_normals(P, tris)
    tp = np.stack([T[k] for k in names]).astype(np.float32)
    tn = np.stack([vertex_normals(P + T[k], tris) - rest_n for k in names]).astype(np.float32)
    # drop the far tails of the smooth masks (< 0.05 mm; < 0.25 degree of normal) so the sparse
    # accessors in the GLB stay small; what is kept is stored exactly
    tp[np.abs(tp).max(axis=2) < 5e-5] = 0.0
    tn[np.abs(tn).max(axis=2) < 4e-3] = 0.0
    return Rig(
        positions=P.astype(np.float32),
        normals=rest_n,
        colors=col.astype(np.float32),
        triangles=tris.astype(np.uint32),
        target_names=names,
        target_positions=tp,
        target_normals=tn,
    )
