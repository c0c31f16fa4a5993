"""The face: a rig (mesh + ARKit-named blendshapes, stored as GLB) and a headless renderer.

A plain library, usable from a notebook; it knows nothing of the graph.

    from audio2anim.face import Renderer, load_glb
    rig = load_glb()                       # the packaged default face (assets/face.glb)
    with Renderer(rig, 512) as r:
        image = r.render({"jawOpen": 0.7, "eyeBlinkLeft": 1.0})

`build_rig` (in `audio2anim.face.build`) regenerates the default rig; `read_params_csv` reads
parameter tracks (Live Link Face CSV or ours).
"""

from .params_csv import read_params_csv
from .renderer import Camera, Renderer
from .rig import DEFAULT_GLB, Rig, load_glb, save_glb

__all__ = [
    "DEFAULT_GLB",
    "Camera",
    "Renderer",
    "Rig",
    "load_glb",
    "read_params_csv",
    "save_glb",
]
