"""A face rig in memory, and its GLB form: one triangle mesh plus named morph targets.

`Rig` is what the renderer draws: rest positions, normals and linear RGB colours per vertex,
triangles, and for every blendshape the per-vertex position (and normal) deltas at weight 1.
Posing is linear: ``positions = rest + sum_k w_k * deltas_k`` (the glTF morph-target rule, the
same as three.js and game engines apply).

`save_glb` writes the rig as glTF 2.0 binary: one mesh, one primitive with ``COLOR_0``, morph
targets stored as sparse accessors (most shapes move a small part of the face, so the file stays
small) and their names in ``mesh.extras.targetNames`` (the convention three.js's GLTFLoader and
Blender read). `load_glb` reads that file back, and also other GLBs whose morph targets carry
ARKit names (Ready Player Me, VRM exports): every triangle primitive of every mesh in the default
scene, node transforms applied, material base colours baked into vertex colours (textures are
not sampled), targets merged by name across meshes.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

DEFAULT_GLB = Path(__file__).with_name("assets") / "face.glb"


@dataclass
class Rig:
    """A morphable triangle mesh.

    positions/normals/colors: [V, 3] float32 (colours linear RGB in [0, 1]); triangles: [F, 3]
    uint32; target_names: blendshape names; target_positions/target_normals: [T, V, 3] float32
    deltas at weight 1, in ``target_names`` order.
    """

    positions: np.ndarray
    normals: np.ndarray
    colors: np.ndarray
    triangles: np.ndarray
    target_names: tuple[str, ...] = ()
    target_positions: np.ndarray | None = None
    target_normals: np.ndarray | None = None

    def __post_init__(self) -> None:
        empty = np.zeros((0, len(self.positions), 3), np.float32)
        if self.target_positions is None:
            self.target_positions = empty
        if self.target_normals is None:
            self.target_normals = empty

    @property
    def n_vertices(self) -> int:
        return len(self.positions)

    def target(self, name: str) -> np.ndarray:
        """The [V, 3] position deltas of blendshape ``name`` (KeyError if the rig lacks it)."""
        return self.target_positions[self.target_names.index(name)]

    def weight_vector(self, weights: dict[str, float]) -> np.ndarray:
        """A [T] weight vector in target order from a name -> weight dict; unknown names ignored."""
        w = np.zeros(len(self.target_names), np.float32)
        index = {n: i for i, n in enumerate(self.target_names)}
        for name, value in weights.items():
            i = index.get(name)
            if i is not None:
                w[i] = value
        return w

    def posed(self, weights: dict[str, float] | np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Positions and (unnormalized) normals [V, 3] for the given blendshape weights."""
        w = self.weight_vector(weights) if isinstance(weights, dict) else np.asarray(weights)
        nz = np.flatnonzero(w)
        if len(nz) == 0:
            return self.positions.copy(), self.normals.copy()
        pos = self.positions + np.einsum("t,tvc->vc", w[nz], self.target_positions[nz])
        nrm = self.normals + np.einsum("t,tvc->vc", w[nz], self.target_normals[nz])
        return pos.astype(np.float32), nrm.astype(np.float32)


def vertex_normals(positions: np.ndarray, triangles: np.ndarray) -> np.ndarray:
    """Area-weighted unit vertex normals [V, 3] of a triangle mesh."""
    p = positions.astype(np.float64)
    a, b, c = p[triangles[:, 0]], p[triangles[:, 1]], p[triangles[:, 2]]
    fn = np.cross(b - a, c - a)
    n = np.zeros_like(p)
    for k in range(3):
        np.add.at(n, triangles[:, k], fn)
    length = np.linalg.norm(n, axis=1, keepdims=True)
    return (n / np.maximum(length, 1e-12)).astype(np.float32)


# --- writing -----------------------------------------------------------------------------------


class _BinBuilder:
    """Accumulates the GLB binary chunk and its buffer views (4-byte aligned)."""

    def __init__(self) -> None:
        self.data = bytearray()
        self.views: list = []

    def add(self, array: np.ndarray, target: int | None = None) -> int:
        import pygltflib

        while len(self.data) % 4:
            self.data.append(0)
        raw = np.ascontiguousarray(array).tobytes()
        self.views.append(
            pygltflib.BufferView(
                buffer=0, byteOffset=len(self.data), byteLength=len(raw), target=target
            )
        )
        self.data.extend(raw)
        return len(self.views) - 1


def save_glb(rig: Rig, path: str | Path, tolerance: float = 0.0) -> Path:
    """Write ``rig`` to ``path`` as a GLB with named sparse morph targets; returns the path.

    Vertices whose deltas are all at most ``tolerance`` in magnitude are left out of the sparse
    accessors (zero on load); the default keeps every non-zero delta, so the file loads back
    exactly.
    """
    import pygltflib as g

    path = Path(path)
    b = _BinBuilder()
    accessors: list = []

    def dense(array: np.ndarray, gl_type: str, target: int | None, minmax: bool = False) -> int:
        view = b.add(array, target)
        comp = g.UNSIGNED_INT if array.dtype == np.uint32 else g.FLOAT
        acc = g.Accessor(bufferView=view, componentType=comp, count=len(array), type=gl_type)
        if minmax:
            acc.min = array.min(axis=0).tolist()
            acc.max = array.max(axis=0).tolist()
        accessors.append(acc)
        return len(accessors) - 1

    def sparse(deltas: np.ndarray) -> int:
        small = len(deltas) < 65536  # 16-bit sparse indices where they suffice
        nz = np.flatnonzero(np.abs(deltas).max(axis=1) > tolerance)
        nz = nz.astype(np.uint16 if small else np.uint32)
        acc = g.Accessor(componentType=g.FLOAT, count=len(deltas), type=g.VEC3)
        vals = deltas[nz].astype(np.float32)
        if len(nz):
            acc.sparse = g.Sparse(
                count=len(nz),
                indices=g.AccessorSparseIndices(
                    bufferView=b.add(nz),
                    componentType=g.UNSIGNED_SHORT if small else g.UNSIGNED_INT,
                ),
                values=g.AccessorSparseValues(bufferView=b.add(vals)),
            )
            acc.min = np.minimum(vals.min(axis=0), 0).tolist()
            acc.max = np.maximum(vals.max(axis=0), 0).tolist()
        else:
            acc.min, acc.max = [0.0] * 3, [0.0] * 3
        accessors.append(acc)
        return len(accessors) - 1

    pos = dense(rig.positions.astype(np.float32), g.VEC3, g.ARRAY_BUFFER, minmax=True)
    nrm = dense(rig.normals.astype(np.float32), g.VEC3, g.ARRAY_BUFFER)
    col = dense(rig.colors.astype(np.float32), g.VEC3, g.ARRAY_BUFFER)
    idx = dense(rig.triangles.astype(np.uint32).reshape(-1), g.SCALAR, g.ELEMENT_ARRAY_BUFFER)
    targets = []
    for k in range(len(rig.target_names)):
        targets.append(
            {"POSITION": sparse(rig.target_positions[k]), "NORMAL": sparse(rig.target_normals[k])}
        )
    prim = g.Primitive(
        attributes=g.Attributes(POSITION=pos, NORMAL=nrm, COLOR_0=col),
        indices=idx,
        material=0,
        targets=targets,
    )
    mesh = g.Mesh(
        name="face",
        primitives=[prim],
        weights=[0.0] * len(rig.target_names),
        extras={"targetNames": list(rig.target_names)},
    )
    material = g.Material(
        name="face",
        pbrMetallicRoughness=g.PbrMetallicRoughness(
            baseColorFactor=[1, 1, 1, 1], metallicFactor=0.0, roughnessFactor=0.65
        ),
    )
    gltf = g.GLTF2(
        asset=g.Asset(generator="audio2anim.face", version="2.0"),
        scene=0,
        scenes=[g.Scene(nodes=[0])],
        nodes=[g.Node(name="face", mesh=0)],
        meshes=[mesh],
        materials=[material],
        accessors=accessors,
        bufferViews=b.views,
        buffers=[g.Buffer(byteLength=len(b.data))],
    )
    gltf.set_binary_blob(bytes(b.data))
    path.parent.mkdir(parents=True, exist_ok=True)
    gltf.save_binary(str(path))
    return path


# --- reading -----------------------------------------------------------------------------------

_DTYPES = {5120: np.int8, 5121: np.uint8, 5122: np.int16, 5123: np.uint16, 5125: np.uint32, 5126: np.float32}  # fmt: skip
_WIDTH = {"SCALAR": 1, "VEC2": 2, "VEC3": 3, "VEC4": 4, "MAT4": 16}


def _read_view(gltf, blob: bytes, view_index: int, offset: int, dtype, width: int, count: int):
    view = gltf.bufferViews[view_index]
    item = np.dtype(dtype).itemsize * width
    stride = view.byteStride or item
    start = (view.byteOffset or 0) + (offset or 0)
    if stride == item:
        return np.frombuffer(blob, dtype, count * width, start).reshape(count, width)
    rows = [np.frombuffer(blob, dtype, width, start + i * stride) for i in range(count)]
    return np.stack(rows)


def _read_accessor(gltf, blob: bytes, index: int) -> np.ndarray:
    acc = gltf.accessors[index]
    dtype = _DTYPES[acc.componentType]
    width = _WIDTH[acc.type]
    if acc.bufferView is not None:
        out = _read_view(gltf, blob, acc.bufferView, acc.byteOffset, dtype, width, acc.count)
        out = out.astype(np.float64 if dtype == np.float32 else dtype)
    else:
        out = np.zeros((acc.count, width), np.float64 if dtype == np.float32 else dtype)
    if acc.sparse is not None and acc.sparse.count:
        sp = acc.sparse
        ind = _read_view(
            gltf, blob, sp.indices.bufferView, sp.indices.byteOffset,
            _DTYPES[sp.indices.componentType], 1, sp.count,
        )[:, 0]  # fmt: skip
        vals = _read_view(
            gltf, blob, sp.values.bufferView, sp.values.byteOffset, dtype, width, sp.count
        )
        out = out.copy()
        out[ind.astype(np.int64)] = vals
    if acc.normalized and dtype != np.float32:
        out = out.astype(np.float64) / np.iinfo(dtype).max
    return out


def _node_matrix(node) -> np.ndarray:
    if node.matrix:
        return np.array(node.matrix, np.float64).reshape(4, 4).T  # glTF is column-major
    m = np.eye(4)
    if node.scale:
        m = np.diag([*node.scale, 1.0]) @ m
    if node.rotation:
        x, y, z, w = node.rotation
        r = np.array(
            [
                [1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)],
                [2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)],
                [2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)],
            ]
        )
        rm = np.eye(4)
        rm[:3, :3] = r
        m = rm @ m
    if node.translation:
        t = np.eye(4)
        t[:3, 3] = node.translation
        m = t @ m
    return m


def load_glb(path: str | Path = DEFAULT_GLB) -> Rig:
    """Read a GLB (ours or any glTF 2.0 binary with named morph targets) into a `Rig`.

    Raises ValueError naming the file when it has no triangle geometry.
    """
    import pygltflib

    path = Path(path)
    try:
        gltf = pygltflib.GLTF2().load_binary(str(path))
    except Exception as e:
        raise ValueError(f"{path}: not a readable GLB ({type(e).__name__}: {e})") from None
    if gltf is None:
        raise ValueError(f"{path}: not a readable GLB")
    blob = gltf.binary_blob() or b""

    parts = []  # (positions, normals, colors, triangles, {name: (dpos, dnrm)})
    scene = gltf.scenes[gltf.scene or 0] if gltf.scenes else None
    roots = scene.nodes if scene else list(range(len(gltf.nodes)))

    def visit(node_index: int, parent: np.ndarray) -> None:
        node = gltf.nodes[node_index]
        m = parent @ _node_matrix(node)
        if node.mesh is not None:
            mesh = gltf.meshes[node.mesh]
            names = (mesh.extras or {}).get("targetNames") or []
            for prim in mesh.primitives:
                if prim.mode not in (None, 4):  # triangles only
                    continue
                parts.append(_read_primitive(gltf, blob, prim, names, m))
        for child in node.children or []:
            visit(child, m)

    for r in roots:
        visit(r, np.eye(4))
    if not parts:
        raise ValueError(f"{path}: no triangle meshes in the default scene")

    names: list[str] = []
    for part in parts:
        for n in part[4]:
            if n not in names:
                names.append(n)
    offset = 0
    tris, tp, tn = [], [], []
    for pos, _, _, tri, targets in parts:
        tris.append(tri + offset)
        offset += len(pos)
        zero = np.zeros_like(pos)
        tp.append([targets.get(n, (zero, zero))[0] for n in names])
        tn.append([targets.get(n, (zero, zero))[1] for n in names])
    n_t = len(names)
    return Rig(
        positions=np.concatenate([p[0] for p in parts]).astype(np.float32),
        normals=np.concatenate([p[1] for p in parts]).astype(np.float32),
        colors=np.concatenate([p[2] for p in parts]).astype(np.float32),
        triangles=np.concatenate(tris).astype(np.uint32),
        target_names=tuple(names),
        target_positions=np.concatenate(
            [
                np.stack(t) if n_t else np.zeros((0, len(p[0]), 3))
                for t, p in zip(tp, parts, strict=True)
            ],
            axis=1,
        ).astype(np.float32),
        target_normals=np.concatenate(
            [
                np.stack(t) if n_t else np.zeros((0, len(p[0]), 3))
                for t, p in zip(tn, parts, strict=True)
            ],
            axis=1,
        ).astype(np.float32),
    )


def _read_primitive(gltf, blob, prim, names, m):
    attrs = prim.attributes
    pos = _read_accessor(gltf, blob, attrs.POSITION)[:, :3].astype(np.float64)
    if prim.indices is not None:
        tri = _read_accessor(gltf, blob, prim.indices).reshape(-1, 3).astype(np.int64)
    else:
        tri = np.arange(len(pos)).reshape(-1, 3)
    if attrs.NORMAL is not None:
        nrm = _read_accessor(gltf, blob, attrs.NORMAL)[:, :3].astype(np.float64)
    else:
        nrm = vertex_normals(pos, tri).astype(np.float64)
    base = [1.0, 1.0, 1.0]
    if prim.material is not None and gltf.materials:
        pbr = gltf.materials[prim.material].pbrMetallicRoughness
        if pbr is not None and pbr.baseColorFactor:
            base = list(pbr.baseColorFactor[:3])
    col = np.tile(np.array(base, np.float64), (len(pos), 1))
    if attrs.COLOR_0 is not None:
        col = col * _read_accessor(gltf, blob, attrs.COLOR_0)[:, :3].astype(np.float64)
    rot = m[:3, :3]
    normal_rot = np.linalg.inv(rot).T
    pos_w = pos @ rot.T + m[:3, 3]
    nrm_w = nrm @ normal_rot.T
    nrm_w /= np.maximum(np.linalg.norm(nrm_w, axis=1, keepdims=True), 1e-12)
    targets = {}
    for k, t in enumerate(prim.targets or []):
        if k >= len(names):
            break
        dp = _read_accessor(gltf, blob, t["POSITION"]) if t.get("POSITION") is not None else None
        dn = _read_accessor(gltf, blob, t["NORMAL"]) if t.get("NORMAL") is not None else None
        dp = np.zeros_like(pos) if dp is None else dp[:, :3] @ rot.T
        dn = np.zeros_like(pos) if dn is None else dn[:, :3] @ normal_rot.T
        targets[names[k]] = (dp, dn)
    return pos_w, nrm_w, col, tri, targets
