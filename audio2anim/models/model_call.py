"""How the streams call their models: directly, or through the batchers of `audio2anim serve`.

A stream runs its model through a *model call*, ``feeds`` (input name → array, batch of one) →
outputs by name (`ModelCall`). `model_call(onnx, batching, axes)` gives it: the ONNX session's own ``run`` by default, or, with a `ModelBatching` (what
``audio2anim serve --batch-window-ms`` hands each session's operators), a caller that sends the
feeds to a model batcher shared by every session, which stacks the calls of the sessions ready
together into one (``axes``: the batch axis of each input and output, 0 unless named). A
stream's state (history, GRU state, the autoregressive outputs) goes in and out of the call, so
the batched path is the same stream with another caller.

A batched caller can also be awaited (``acall``): then the streams' ``apush``/``aflush`` run on
the event loop and wait for the batch without a thread of their own. Both paths are the same
code: the streams' bodies are generators that yield each model call's feeds and receive its
outputs (`run_steps` drives them with a plain call, `arun_steps` awaits ``acall``).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Generator
from typing import Protocol

import numpy as np

ModelCall = Callable[[dict[str, np.ndarray]], dict[str, np.ndarray]]


class ModelBatching(Protocol):
    """A session's access to shared model batchers (`audio2anim.serve.batching`)."""

    def caller(
        self, key: str, make_run: Callable[[str], ModelCall], axes: dict[str, int]
    ) -> ModelCall:
        """The session's caller of the batcher ``key``; ``make_run(device)`` builds the batched
        model (called once per process and key), ``axes`` as `model_call`."""
        ...


def run_steps(steps: Generator, call: ModelCall):
    """Drive a stream's body (a generator of model calls, see the module docstring) with
    ``call`` → what it returns."""
    try:
        feeds = next(steps)
        while True:
            feeds = steps.send(call(feeds))
    except StopIteration as end:
        return end.value


async def arun_steps(steps: Generator, acall: Callable[[dict], Awaitable[dict]]):
    """`run_steps` with an awaitable model call (a batcher's ``acall``)."""
    try:
        feeds = next(steps)
        while True:
            feeds = steps.send(await acall(feeds))
    except StopIteration as end:
        return end.value


def awaitable(call) -> bool:
    """Whether a model call can be awaited (a batched caller's ``acall``)."""
    return callable(getattr(call, "acall", None))


def onnx_run(onnx_model) -> ModelCall:
    """An `OnnxModel`'s session as a `ModelCall` (any batch size)."""
    session = onnx_model.session
    names = [o.name for o in session.get_outputs()]

    def run(feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        return dict(zip(names, session.run(names, feeds), strict=True))

    return run


def model_call(
    onnx_model,
    batching: ModelBatching | None = None,
    axes: dict[str, int] | None = None,
    on_device: Callable[[str], ModelCall] | None = None,
) -> ModelCall:
    """How a stream calls ``onnx_model``: directly, or through ``batching`` (its batcher keyed
    by the exported file). The batcher runs ONNX Runtime on the CPU, or, when the service's
    device is not the CPU and ``on_device`` is given, ``on_device(device)``: the same model
    with the same inputs and outputs (e.g. in torch on the GPU)."""
    run = onnx_run(onnx_model)
    if batching is None:
        return run

    def make_run(device: str) -> ModelCall:
        return run if device == "cpu" or on_device is None else on_device(device)

    return batching.caller(f"{onnx_model.kind}@{onnx_model.path}", make_run, axes or {})


def check_batching(value):
    """An operator's ``batching`` param: None, or what the service hands it (not a graph file's
    value)."""
    if value is not None and not callable(getattr(value, "caller", None)):
        raise ValueError("batching is set by audio2anim serve, not in a graph file")
    return value
