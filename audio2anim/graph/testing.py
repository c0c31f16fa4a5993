"""Test an operator without a graph: feed it packets, collect what it emits.

`run_operator` drives one operator through the life cycle the runner gives it (see
`audio2anim.graph.operator`): ``setup()``, ``process(port, packet)`` for every input packet,
``flush()`` once the inputs have ended, and ``close()`` always (also after an error; not after a
failed ``setup()``, as in the runner). Each method may be plain or ``async def``; plain methods
run on a worker thread when the operator says ``executor = "thread"``. Outputs are checked and
stamped as the runner does: a bare `Packet` goes to port "out", ``(port, packet)`` to that port,
an undeclared port is a `TypeError`; each output gets ``origin`` (the operator's registry name)
and, unless it set one, the capture time of the newest input consumed so far. A packet marked
``discontinuity`` is handled as the runner handles it: an operator that defines ``reset()`` is
flushed and reset first, and its next output on each port is marked. The harness keeps
no clock: packets reach the operator exactly as given (set ``capture_time`` / ``received_time``
on them to test lateness), so nothing the harness does depends on how fast the machine is.

    import numpy as np
    from audio2anim.graph.testing import audio_packets, run_operator

    x = np.zeros(16000, np.float32)                           # one second at 16 kHz
    out = run_operator("params.loudness_jaw", audio_packets(x, 16000, block=320))["out"]
    assert sum(len(p.payload.values) for p in out) == 60      # 60 Hz frames, exactly
    assert [p.media_time for p in out] == sorted(p.media_time for p in out)

Inputs: a list of packets (all on the first declared input), a list of ``(port, packet)`` in
the order to deliver them, or ``{port: [packets]}``, merged by media time as the runner merges
fan-in (earliest first; on a tie, the port listed first). A `Source` takes no inputs: its
``packets()`` are collected (``limit`` stops it early, as a stop would).
"""

from __future__ import annotations

import asyncio
import inspect
import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np

from .operator import Operator, OperatorParams, Source, restarts, routed
from .packets import Packet

__all__ = [
    "audio_packets",
    "chunk_packets",
    "dropping",
    "make_operator",
    "params_packets",
    "run_operator",
    "run_operator_async",
]

Inputs = Iterable[Packet] | Iterable[tuple[str, Packet]] | Mapping[str, Iterable[Packet]]


def make_operator(
    op: Operator | type[Operator] | str, params: OperatorParams | Mapping[str, Any] | None = None
) -> Operator:
    """An operator instance from an instance (returned as is), a class or a registry name;
    ``params`` is the class's ``Params`` model or a dict of its fields (None: the defaults)."""
    if isinstance(op, Operator):
        if params is not None:
            raise TypeError("params are given with a class or a registry name, not an instance")
        return op
    if isinstance(op, str):
        from .registry import get

        op = get(op)
    if params is None:
        params = op.Params()
    elif not isinstance(params, OperatorParams):
        params = op.Params(**params)
    return op(params)


def _schedule(op: Operator, inputs: Inputs) -> list[tuple[str, Packet]]:
    """The (port, packet) delivery order for ``inputs`` (see the module docstring)."""
    if isinstance(inputs, Mapping):
        queues = [(port, list(pkts)) for port, pkts in inputs.items()]
        heads = [0] * len(queues)
        order = []
        while True:
            best = None
            for i, (_, pkts) in enumerate(queues):
                if heads[i] < len(pkts):
                    t = pkts[heads[i]].media_time
                    if best is None or t < best[0]:
                        best = (t, i)
            if best is None:
                break
            port, pkts = queues[best[1]]
            order.append((port, pkts[heads[best[1]]]))
            heads[best[1]] += 1
    else:
        primary = next(iter(op.inputs), "in")
        order = [(primary, x) if isinstance(x, Packet) else tuple(x) for x in inputs]
    for port, pkt in order:
        if port not in op.inputs:
            raise ValueError(
                f"{type(op).__name__} has no input '{port}' "
                f"(inputs: {', '.join(op.inputs) or 'none'})"
            )
        if not isinstance(pkt, Packet):
            raise TypeError(f"input on port '{port}' is a {type(pkt).__name__}, not a Packet")
    return order


class _Outputs:
    """Collects and stamps what an operator emits, as the runner's ``_emit`` does."""

    def __init__(self, op: Operator) -> None:
        self.ports: dict[str, list[Packet]] = {port: [] for port in op.outputs}
        self.origin = op.name or type(op).__name__
        self.latest_capture = math.nan
        self.gaps: set[str] = set()

    def consumed(self, pkt: Packet) -> None:
        cap = pkt.capture_time
        if cap == cap and not (cap <= self.latest_capture):
            self.latest_capture = cap

    def add(self, outs) -> None:
        for port, pkt in routed(outs, self.ports, self.latest_capture, self.origin, self.gaps):
            self.ports[port].append(pkt)

    def count(self) -> int:
        return sum(map(len, self.ports.values()))


def _needs_loop(op: Operator) -> bool:
    """Whether any step must run on an event loop (a source, or an ``async def`` method)."""
    return isinstance(op, Source) or any(
        inspect.iscoroutinefunction(getattr(op, m)) for m in ("setup", "process", "flush", "close")
    )


def _prepare(op, inputs, params) -> tuple[Operator, list[tuple[str, Packet]]]:
    op = make_operator(op, params)
    schedule = _schedule(op, inputs)
    if isinstance(op, Source) and schedule:
        raise ValueError(f"{type(op).__name__} is a source: it takes no inputs")
    return op, schedule


def _run_sync(op: Operator, schedule: list[tuple[str, Packet]]) -> dict[str, list[Packet]]:
    """Plain methods only: called in turn (on one worker thread for ``executor = "thread"``)."""
    out = _Outputs(op)
    pool = ThreadPoolExecutor(1, "a2a-test") if op.executor == "thread" else None

    def call(fn: Callable, *args):
        return fn(*args) if pool is None else pool.submit(fn, *args).result()

    try:
        call(op.setup)
        try:
            for port, pkt in schedule:
                if pkt.discontinuity:
                    if restarts(op):
                        out.add(call(op.flush))
                        call(op.reset)
                    out.gaps.update(out.ports)
                out.consumed(pkt)
                out.add(call(op.process, port, pkt))
            out.add(call(op.flush))
        finally:
            call(op.close)
    finally:
        if pool is not None:
            pool.shutdown(wait=True)
    return out.ports


async def run_operator_async(
    op: Operator | type[Operator] | str,
    inputs: Inputs = (),
    params: OperatorParams | Mapping[str, Any] | None = None,
    *,
    limit: int | None = None,
) -> dict[str, list[Packet]]:
    """`run_operator` inside a running event loop (for tests that are ``async`` themselves)."""
    op, schedule = _prepare(op, inputs, params)
    out = _Outputs(op)
    pool = ThreadPoolExecutor(1, "a2a-test") if op.executor == "thread" else None

    async def call(fn: Callable, *args):
        if inspect.iscoroutinefunction(fn):
            return await fn(*args)
        if pool is not None:
            return await asyncio.get_running_loop().run_in_executor(pool, fn, *args)
        return fn(*args)

    try:
        await call(op.setup)
        try:
            if isinstance(op, Source):
                agen = op.packets()
                try:
                    async for item in agen:
                        out.add((item,))
                        if limit is not None and out.count() >= limit:
                            break
                finally:
                    await agen.aclose()
            else:
                for port, pkt in schedule:
                    if pkt.discontinuity:
                        if restarts(op):
                            out.add(await call(op.flush))
                            await call(op.reset)
                        out.gaps.update(out.ports)
                    out.consumed(pkt)
                    out.add(await call(op.process, port, pkt))
                out.add(await call(op.flush))
        finally:
            await call(op.close)
    finally:
        if pool is not None:
            pool.shutdown(wait=True)
    return out.ports


def run_operator(
    op: Operator | type[Operator] | str,
    inputs: Inputs = (),
    params: OperatorParams | Mapping[str, Any] | None = None,
    *,
    limit: int | None = None,
) -> dict[str, list[Packet]]:
    """Run ``op`` (an instance, a class or a registry name, with ``params``) over ``inputs`` to
    the end of its streams; return ``{output port: [packets]}``, every declared port present.

    Pass an instance to look at it afterwards (counters, files a sink wrote). Exceptions from
    the operator propagate unchanged (after ``close()``). An operator whose methods are all
    plain runs without an event loop (the runner would call them the same way)."""
    op, schedule = _prepare(op, inputs, params)
    if not _needs_loop(op):
        return _run_sync(op, schedule)
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(run_operator_async(op, schedule, limit=limit))
    raise RuntimeError("run_operator inside an event loop: use await run_operator_async(...)")


# -- packets from arrays ----------------------------------------------------------------------


def chunk_packets(
    data: np.ndarray,
    rate: float,
    blocks: int | Sequence[int] | None,
    wrap: Callable[[np.ndarray], Any],
    start: float = 0.0,
) -> list[Packet]:
    """Cut ``data`` (rows at ``rate`` per second) into packets of ``blocks`` rows (one size, a
    list of sizes that add up to ``len(data)``, or None: one packet) with exact media times
    ``start + row / rate``; ``wrap`` turns each chunk into the payload."""
    n = len(data)
    if blocks is None:
        sizes = [n]
    elif isinstance(blocks, int):
        if blocks <= 0:
            raise ValueError(f"block size {blocks}: must be positive")
        sizes = [min(blocks, n - i) for i in range(0, n, blocks)]
    else:
        sizes = [int(b) for b in blocks]
        if sum(sizes) != n or any(b <= 0 for b in sizes):
            raise ValueError(f"block sizes add up to {sum(sizes)} (need {n}, each positive)")
    packets, pos = [], 0
    for size in sizes:
        packets.append(Packet(wrap(data[pos : pos + size]), start + pos / rate))
        pos += size
    return packets


def audio_packets(
    samples: np.ndarray, rate: int, block: int | Sequence[int] | None = None, start: float = 0.0
) -> list[Packet]:
    """`Audio` packets of ``block`` samples each (see `chunk_packets`)."""
    from audio2anim.streams import Audio

    return chunk_packets(samples, rate, block, lambda x: Audio(x, rate), start)


def params_packets(
    values: np.ndarray,
    names: Sequence[str],
    frame_rate: float,
    block: int | Sequence[int] | None = None,
    start: float = 0.0,
) -> list[Packet]:
    """`Params` packets of ``block`` frames each (see `chunk_packets`)."""
    from audio2anim.streams import Params

    names = tuple(names)
    return chunk_packets(values, frame_rate, block, lambda v: Params(v, names, frame_rate), start)


def dropping(packets: Sequence[Packet], dropped: Iterable[int]) -> list[Packet]:
    """``packets`` without those at the indices ``dropped``, the packet after each gap marked
    as a discontinuity: what a leaky queue delivers (`audio2anim.graph.runner.Queue`)."""
    dropped = set(dropped)
    out, gap = [], False
    for i, pkt in enumerate(packets):
        if i in dropped:
            gap = True
            continue
        out.append(pkt.marked() if gap else pkt)
        gap = False
    return out
