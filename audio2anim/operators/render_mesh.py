"""``render.mesh``: animation parameters in, rendered face frames out.

Sits after a predictor or smoother and before a frame sink::

    pred -> smooth -> face -> out          (face: render.mesh, out: sink.video / sink.browser)

Ports: ``in`` `Params` (ARKit-named weights, any subset; names the rig lacks are ignored) ->
``out`` `Frames` (one image per parameter row, same frame rate, media time of the first row).

Params: ``size`` (square side in pixels; ``width``/``height`` override it), ``glb`` (a rig file
with ARKit-named morph targets; default: the packaged face), camera ``distance``/``yaw``/
``pitch``/``fov`` (metres, degrees), ``background`` (``#rrggbb``), ``msaa`` (samples),
``max_lag_s``: in a live graph, a block whose audio was captured longer ago than this is reduced
to its newest row, so the renderer catches up instead of queueing stale frames (pair it with a
``drop_oldest`` edge in front of this node). Runs on a worker thread: rendering is CPU work
under llvmpipe and must not stall the event loop.

Example node::

    face: {op: render.mesh, params: {size: 512, background: "#2a2e38", max_lag_s: 0.2}}
"""

from __future__ import annotations

from typing import Annotated, ClassVar

from pydantic import Field, field_validator

from .. import streams
from ..face.renderer import parse_color
from ..graph.formats import Format
from ..graph.operator import Operator, OperatorParams, Port, existing_file
from ..graph.packets import Packet
from ..graph.registry import register
from ..streams import Frames


class RenderMeshParams(OperatorParams):
    size: int = Field(512, ge=16, le=4096, description="square frame side in pixels")
    width: int | None = Field(None, ge=16, le=4096, description="frame width (overrides size)")
    height: int | None = Field(None, ge=16, le=4096, description="frame height (overrides size)")
    glb: Annotated[str | None, existing_file("glb")] = Field(
        None, description="rig GLB with ARKit morph targets; default: ours"
    )
    distance: float = Field(0.58, gt=0, description="camera distance to the face (metres)")
    yaw: float = Field(0.0, description="camera yaw (degrees, + = from the face's left)")
    pitch: float = Field(0.0, description="camera pitch (degrees, + = from above)")
    fov: float = Field(24.0, gt=1, lt=170, description="vertical field of view (degrees)")
    background: str = Field("#292e38", description="background colour #rrggbb")
    msaa: int = Field(1, ge=1, le=16, description="multisamples per pixel (1 = off, fastest)")
    max_lag_s: float | None = Field(
        None, gt=0, description="live: render only the newest row of blocks older than this"
    )

    @field_validator("background")
    @classmethod
    def _color(cls, v: str) -> str:
        parse_color(v)
        return v


@register("render.mesh")
class RenderMesh(Operator):
    """Renders the face rig posed by ARKit weights into RGB frames (moderngl, headless EGL)."""

    requires = ("moderngl", "pygltflib")

    Params = RenderMeshParams
    inputs: ClassVar = {"in": Port(streams.Params, doc="ARKit-named blendshape weights")}
    outputs: ClassVar = {"out": Port(Frames, doc="RGB frames, one per parameter row")}
    executor: ClassVar = "thread"

    def setup(self) -> None:
        from ..face.renderer import Camera, Renderer
        from ..face.rig import DEFAULT_GLB, load_glb

        p = self.params
        rig = load_glb(p.glb or DEFAULT_GLB)
        self.renderer = Renderer(
            rig,
            width=p.width or p.size,
            height=p.height or p.size,
            camera=Camera(distance=p.distance, yaw_deg=p.yaw, pitch_deg=p.pitch, fov_deg=p.fov),
            background=parse_color(p.background),
            msaa=p.msaa,
        )
        self.skipped = 0  # rows not rendered because they were late

    def output_format(self, port, inputs):
        return Format(inputs["in"].rate if "in" in inputs else None)

    def process(self, port: str, packet: Packet):
        params: streams.Params = packet.payload
        values = params.values
        media_time = packet.media_time
        lag_limit = self.params.max_lag_s
        if lag_limit is not None and len(values) > 1 and packet.lateness > lag_limit:
            self.skipped += len(values) - 1
            media_time += (len(values) - 1) / params.frame_rate
            values = values[-1:]
        images = self.renderer.render_sequence(values, params.names)
        return [Packet(Frames(images, params.frame_rate), media_time)]

    def close(self) -> None:
        renderer = getattr(self, "renderer", None)
        if renderer is not None:
            renderer.close()
