"""Lay a Params stream out in the fixed ARKit column orders the avatar outputs need.

Live Link Face (CSV and UDP) always carries 61 values: the 52 ARKit blendshapes plus head and
eye rotations. A model predicts only some of them (a mouth group, an eyes group); the rest are
written as 0. This module maps a payload's names onto such a fixed order once per stream.

The sinks (`sink.csv`, `sink.livelink`, `sink.vmc`) use it.
"""

from __future__ import annotations

import numpy as np

from ..arkit import ALL
from ..formats.livelink_csv import ROTATIONS
from ..streams import Params


class ColumnMap:
    """Scatter a payload's parameters into a fixed column order; absent columns stay 0.

    ``order``: the target column names (ARKit spelling, e.g. ``ALL + ROTATIONS``). Names in a
    payload are matched case-insensitively on the first letter (``jawOpen`` = ``JawOpen``); a
    name that is not in ``order`` is an error naming the operator, since silently dropping a
    predicted parameter would hide a wrong model/sink pairing.
    """

    def __init__(self, order: tuple[str, ...], owner: str) -> None:
        self.order = order
        self.owner = owner
        self._index = {n[:1].lower() + n[1:]: i for i, n in enumerate(order)}
        self._names: tuple[str, ...] | None = None
        self._source: np.ndarray | None = None
        self._target: np.ndarray | None = None

    def _prepare(self, names: tuple[str, ...]) -> None:
        source, target = [], []
        for j, name in enumerate(names):
            i = self._index.get(name[:1].lower() + name[1:])
            if i is None:
                raise ValueError(
                    f"{self.owner}: parameter {name!r} is not one of the {len(self.order)} "
                    f"columns this output writes (ARKit blendshape names and head/eye rotations)"
                )
            source.append(j)
            target.append(i)
        self._names = names
        self._source = np.array(source, dtype=np.intp)
        self._target = np.array(target, dtype=np.intp)

    def frames(self, payload: Params) -> np.ndarray:
        """[T, len(order)] float64: the payload's values in this order, zeros elsewhere."""
        if payload.names != self._names:
            self._prepare(payload.names)
        values = np.asarray(payload.values, dtype=np.float64)
        out = np.zeros((values.shape[0], len(self.order)), dtype=np.float64)
        out[:, self._target] = values[:, self._source]
        return out


LIVE_LINK_ORDER: tuple[str, ...] = ALL + ROTATIONS
