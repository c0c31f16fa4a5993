"""The face: a rig (mesh + ARKit-named blendshapes, stored as GLB) and a headless renderer.

A plain library, usable from a notebook; it knows nothing of the graph.

    from audio2anim.face import Renderer, load_glb
    rig = load_glb()                       # the packaged default face (assets/face.glb)
    with Renderer(rig, 512) as r:
        image = r.render({"jawOpen": 0.7, "eyeBlinkLeft": 1.0})

`build_rig` (in `audio2anim.face.build`) regenerates the default rig; `read_params_csv` reads
parameter tracks (Live Link Face CSV or ours).
"""

import importlib

# imported on first use (PEP 562): `audio2anim.face.video` alone, as a batch that writes no
# video needs it, must not import the renderer and scipy
_LAZY = {
    "read_params_csv": ".params_csv",
    "Camera": ".renderer",
    "Renderer": ".renderer",
    "DEFAULT_GLB": ".rig",
    "Rig": ".rig",
    "load_glb": ".rig",
    "save_glb": ".rig",
}


def __getattr__(name: str):
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name], __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "DEFAULT_GLB",
    "Camera",
    "Renderer",
    "Rig",
    "load_glb",
    "read_params_csv",
    "save_glb",
]
