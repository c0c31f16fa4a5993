"""``feature.viseme_probs``: a `Visemes` stream's probabilities as a `Features` stream, for the
w2v predictors trained on a viseme front end's posteriors (the feature method on the Whisper
encoder)::

    rs → vis (feature.whisper_visemes) → probs (feature.viseme_probs) → pred (predictor.w2v_cnn) → …

Ports: ``in`` `Visemes` (IDs + probabilities [frames, 15]) → ``out`` `Features`: the same
probabilities [frames, 15], same frame rate and media times, ``kind`` ``viseme-probs``. The
IDs are dropped. A predictor checkpoint trained on these (``feature.kind: viseme-probs`` in its
sidecar) takes only this kind, so a wav2vec2 stream (``w2v2-…``, other widths) is refused
before the graph starts, and a predictor trained on wav2vec2 features refuses this one.

Params: none.

Example node::

    probs: {op: feature.viseme_probs}
"""

from __future__ import annotations

from audio2anim.graph.formats import ANY, Format
from audio2anim.graph.operator import Operator, OperatorParams, Outputs, Port
from audio2anim.graph.packets import Packet
from audio2anim.graph.registry import register
from audio2anim.streams import Features, Visemes
from audio2anim.visemes import N_VISEMES
from audio2anim.visemes import VISEME_PROBS as KIND


class VisemeProbsParams(OperatorParams):
    pass


@register("feature.viseme_probs")
class VisemeProbs(Operator):
    """Visemes → Features (kind ``viseme-probs``): the viseme probabilities, unchanged."""

    Params = VisemeProbsParams
    inputs = {"in": Port(Visemes, doc="viseme IDs + probabilities")}
    outputs = {"out": Port(Features, doc="the probabilities as features, kind viseme-probs")}

    def input_format(self, port):
        return Format(width=N_VISEMES)

    def output_format(self, port, inputs):
        return Format(inputs.get("in", ANY).rate, width=N_VISEMES, kind=KIND)

    def process(self, port: str, packet: Packet) -> Outputs:
        v: Visemes = packet.payload
        return (Packet(Features(v.probs, v.frame_rate, KIND), packet.media_time),)
