"""Causal smoothing of animation parameters: ``smoothing.ema``, ``smoothing.one_euro``,
``smoothing.savgol``.

Where it sits: between a predictor (or un-normalization) and the sinks/renderer, on a Params
stream. Removes frame-to-frame jitter of the predicted weights without waiting for the future
(EMA, One-Euro) or waiting a bounded, declared number of frames (Savitzky–Golay).

Ports: ``in`` (Params) -> ``out`` (Params, same names and frame rate).

All three keep their state across packets, so feeding a stream in blocks gives the same output
as feeding it in one piece. Every parameter channel is filtered independently. At a
discontinuity (frames dropped upstream) the state is forgotten and the filter starts again on
the frame after the gap, as at the start of a stream; Savitzky–Golay first emits its
lookahead tail, padded as at the end of a stream.

Two numbers describe their timing:

- ``latency()`` — the *algorithmic latency* the graph adds up: how many seconds of future input
  the operator waits for before it can emit a frame (its lookahead). EMA and One-Euro emit each
  frame as soon as it arrives: 0. Savitzky–Golay with lookahead ``L`` frames: ``L / frame_rate``.
- ``step_delay()`` — an upper bound on how far a sharp step edge is moved later in the output,
  measured at the 50 % crossing (the filter's lag). It costs no wall-clock waiting but it is the
  delay a viewer perceives on a sudden mouth opening. EMA: ``tau · ln 2``. One-Euro: at most the
  EMA lag at ``min_cutoff`` (its cutoff only rises with speed), plus at most one frame of
  discretisation. Savitzky–Golay: its lookahead is chosen so a centred window has no lag on
  polynomial segments; a causal window (lookahead 0) lags by roughly half the window.

Example nodes::

    smooth: {op: smoothing.ema, params: {tau_ms: 30}}
    smooth: {op: smoothing.one_euro, params: {min_cutoff: 1.5, beta: 1.0, d_cutoff: 1.0}}
    smooth: {op: smoothing.savgol, params: {window_ms: 120, lookahead_ms: 40, polyorder: 2}}
"""

from __future__ import annotations

import math
from typing import ClassVar

import numpy as np
from pydantic import Field, model_validator

from ..graph.formats import ANY
from ..graph.operator import MediaClock, Operator, OperatorParams, Outputs, Port
from ..graph.packets import Packet
from ..graph.registry import register
from ..streams import Params


class _ParamsSmoother(Operator):
    """Shared plumbing: checks the stream stays the same shape, and wraps arrays in packets.

    Subclasses implement ``_filter(values [T, N] float64) -> [T', N]`` and keep their own state.
    """

    inputs: ClassVar[dict[str, Port]] = {"in": Port(Params, doc="animation parameters")}
    outputs: ClassVar[dict[str, Port]] = {"out": Port(Params, doc="smoothed parameters")}

    def __init__(self, params: OperatorParams) -> None:
        super().__init__(params)
        self._names: tuple[str, ...] | None = None
        self._rate: float | None = None

    def _check_stream(self, payload: object) -> Params:
        if not isinstance(payload, Params):
            raise TypeError(f"{self.name}: expected a Params payload, got {type(payload).__name__}")
        if self._names is None:
            self._names, self._rate = payload.names, float(payload.frame_rate)
            self._start(payload)
        elif payload.names != self._names or float(payload.frame_rate) != self._rate:
            raise ValueError(
                f"{self.name}: the Params stream changed mid-stream (names or frame rate "
                f"{self._rate} -> {payload.frame_rate})"
            )
        return payload

    def _start(self, first: Params) -> None:
        """Called once with the first payload, when the frame rate becomes known."""

    def output_format(self, port, inputs):
        return inputs.get("in", ANY)  # same names and frame rate

    def _wrap(self, values: np.ndarray, media_time: float) -> Packet:
        assert self._names is not None and self._rate is not None
        out = Params(values.astype(np.float32), self._names, self._rate)
        return Packet(out, media_time)

    def process(self, port: str, packet: Packet) -> Outputs:
        payload = self._check_stream(packet.payload)
        if payload.values.shape[0] == 0:
            return None
        values = np.asarray(payload.values, dtype=np.float64)
        return [self._wrap(self._filter(values), packet.media_time)]

    def _filter(self, values: np.ndarray) -> np.ndarray:
        raise NotImplementedError


# --------------------------------------------------------------------------------------------
# EMA


class EmaParams(OperatorParams):
    tau_ms: float = Field(
        30.0,
        gt=0,
        description="time constant in milliseconds; per frame, alpha = 1 - exp(-dt / tau), so "
        "the smoothing is the same at any frame rate",
    )


@register("smoothing.ema")
class EmaSmoother(_ParamsSmoother):
    """Exponential moving average, y[t] = y[t-1] + alpha (x[t] - y[t-1]); starts at x[0]."""

    Params = EmaParams

    def __init__(self, params: EmaParams) -> None:
        super().__init__(params)
        self._state: np.ndarray | None = None
        self._alpha = 0.0

    def reset(self) -> None:
        self._state = None

    def _start(self, first: Params) -> None:
        dt = 1.0 / float(first.frame_rate)
        self._alpha = 1.0 - math.exp(-dt / (self.params.tau_ms / 1000.0))

    def _filter(self, values: np.ndarray) -> np.ndarray:
        out = np.empty_like(values)
        y = values[0].copy() if self._state is None else self._state
        a = self._alpha
        for t in range(values.shape[0]):
            y = y + a * (values[t] - y)
            out[t] = y
        self._state = y
        return out

    def step_delay(self) -> float:
        return self.params.tau_ms / 1000.0 * math.log(2.0)


# --------------------------------------------------------------------------------------------
# One-Euro


class OneEuroParams(OperatorParams):
    min_cutoff: float = Field(
        1.5, gt=0, description="cutoff frequency (Hz) when the parameter is still: lower = smoother"
    )
    beta: float = Field(
        1.0,
        ge=0,
        description="speed coefficient: cutoff = min_cutoff + beta * |speed|, speed in weight "
        "units per second; higher = less lag on fast movements (for [0, 1] weights, 0.5-5)",
    )
    d_cutoff: float = Field(
        1.0, gt=0, description="cutoff frequency (Hz) of the low-pass on the speed estimate"
    )


def _one_euro_alpha(cutoff: np.ndarray | float, dt: float) -> np.ndarray | float:
    """Casiez et al. 2012, eq. for the smoothing factor: alpha = 1 / (1 + tau / Te)."""
    tau = 1.0 / (2.0 * math.pi * cutoff)
    return 1.0 / (1.0 + tau / dt)


@register("smoothing.one_euro")
class OneEuroSmoother(_ParamsSmoother):
    """The 1€ filter (Casiez, Roussel, Vogel, CHI 2012), one instance per parameter channel.

    Per frame: dx = (x - x̂_prev) · rate; edx = lowpass(dx, alpha(d_cutoff));
    cutoff = min_cutoff + beta · |edx|; x̂ = lowpass(x, alpha(cutoff)). The first frame passes
    through unchanged with dx = 0, as in the paper's pseudo-code.
    """

    Params = OneEuroParams

    def __init__(self, params: OneEuroParams) -> None:
        super().__init__(params)
        self._x_hat: np.ndarray | None = None
        self._dx_hat: np.ndarray | None = None
        self._dt = 0.0

    def reset(self) -> None:
        self._x_hat = self._dx_hat = None

    def _start(self, first: Params) -> None:
        self._dt = 1.0 / float(first.frame_rate)

    def _filter(self, values: np.ndarray) -> np.ndarray:
        p = self.params
        dt = self._dt
        a_d = _one_euro_alpha(p.d_cutoff, dt)
        out = np.empty_like(values)
        start = 0
        if self._x_hat is None:
            self._x_hat = values[0].copy()
            self._dx_hat = np.zeros_like(values[0])
            out[0] = self._x_hat
            start = 1
        x_hat, dx_hat = self._x_hat, self._dx_hat
        for t in range(start, values.shape[0]):
            x = values[t]
            dx = (x - x_hat) / dt
            dx_hat = dx_hat + a_d * (dx - dx_hat)
            cutoff = p.min_cutoff + p.beta * np.abs(dx_hat)
            a = _one_euro_alpha(cutoff, dt)
            x_hat = x_hat + a * (x - x_hat)
            out[t] = x_hat
        self._x_hat, self._dx_hat = x_hat, dx_hat
        return out

    def step_delay(self) -> float:
        # Its cutoff never drops below min_cutoff, so on a step it converges at least as fast
        # as an EMA with tau = 1 / (2π min_cutoff); one frame covers the discretisation.
        tau = 1.0 / (2.0 * math.pi * self.params.min_cutoff)
        frame = self._dt if self._dt else 0.0
        return tau * math.log(2.0) + frame


# --------------------------------------------------------------------------------------------
# Savitzky–Golay


class SavgolParams(OperatorParams):
    window_ms: float = Field(
        120.0,
        gt=0,
        description="length of the fitting window in milliseconds (rounded down to "
        "whole frames; at least polyorder + 1 frames)",
    )
    lookahead_ms: float = Field(
        40.0,
        ge=0,
        description="how much future the fit may see, in milliseconds (rounded down to whole "
        "frames); this is the operator's latency. 0 = fully causal endpoint fit; half the "
        "window = the classic centred filter",
    )
    polyorder: int = Field(2, ge=0, le=5, description="degree of the fitted polynomial")

    @model_validator(mode="after")
    def _lookahead_within_window(self) -> SavgolParams:
        if self.lookahead_ms >= self.window_ms:
            raise ValueError(
                f"lookahead_ms ({self.lookahead_ms}) must be shorter than window_ms "
                f"({self.window_ms})"
            )
        return self


@register("smoothing.savgol")
class SavgolSmoother(_ParamsSmoother):
    """Savitzky–Golay smoothing with bounded lookahead.

    For output frame t, a degree-``polyorder`` polynomial is least-squares fitted to input frames
    t - (W - 1 - L) … t + L and evaluated at t, so frame t leaves once frame t + L has arrived
    (latency L / frame_rate). Edges repeat the first/last frame ("nearest"), so the output has
    exactly as many frames as the input and the start needs no future.
    """

    Params = SavgolParams

    def __init__(self, params: SavgolParams) -> None:
        super().__init__(params)
        self._window = 0
        self._lookahead = 0
        self._coeffs: np.ndarray | None = None
        self._buffer: np.ndarray | None = None  # the last W - 1 input frames (padded at start)
        self._clock = MediaClock()

    def reset(self) -> None:
        self._buffer = None  # padded again from the first frame after the gap
        self._clock.reset()

    def setup(self) -> None:
        # scipy.signal takes ~1 s to import: do it before audio flows, not on the first frame
        import scipy.signal  # noqa: F401

    def _start(self, first: Params) -> None:
        from scipy.signal import savgol_coeffs

        p = self.params
        rate = float(first.frame_rate)
        window = int(math.floor(p.window_ms / 1000.0 * rate + 1e-9))
        if window < p.polyorder + 1:
            raise ValueError(
                f"{self.name}: window_ms={p.window_ms} is {window} frames at {rate} Hz; the fit "
                f"of polyorder {p.polyorder} needs at least {p.polyorder + 1}"
            )
        lookahead = min(int(math.floor(p.lookahead_ms / 1000.0 * rate + 1e-9)), window - 1)
        self._window, self._lookahead = window, lookahead
        self._clock.rate = rate
        # use="dot": coefficient k multiplies the k-th (oldest first) frame of the window.
        self._coeffs = savgol_coeffs(window, p.polyorder, pos=window - 1 - lookahead, use="dot")

    def process(self, port: str, packet: Packet) -> Outputs:
        payload = self._check_stream(packet.payload)
        if payload.values.shape[0] == 0:
            return None
        values = np.asarray(payload.values, dtype=np.float64)
        self._clock.input(packet)
        if self._buffer is None:
            pad = self._window - 1 - self._lookahead
            self._buffer = np.repeat(values[:1], pad, axis=0)
        return self._emit(values)

    def flush(self) -> Outputs:
        if self._buffer is None or self._lookahead == 0:
            return None
        last = self._buffer[-1:]
        return self._emit(np.repeat(last, self._lookahead, axis=0))

    def _emit(self, new: np.ndarray) -> Outputs:
        assert self._buffer is not None and self._coeffs is not None
        data = np.concatenate([self._buffer, new], axis=0)
        n_out = data.shape[0] - self._window + 1
        self._buffer = data[-(self._window - 1) :] if self._window > 1 else data[:0]
        if n_out <= 0:
            return None
        windows = np.lib.stride_tricks.sliding_window_view(data, self._window, axis=0)
        # windows: [n_out, N, W]; one dot product per output frame and channel
        out = np.einsum("tnw,w->tn", windows[:n_out], self._coeffs)
        return [self._wrap(out, self._clock.take(n_out))]

    def latency(self) -> float:
        if self._rate is None:  # before the stream starts: the declared bound
            return self.params.lookahead_ms / 1000.0
        return self._lookahead / self._rate

    def step_delay(self) -> float:
        # A fit evaluated L frames before the window's end lags by about (W-1)/2 - L frames when
        # the window is not centred; centred or more: no lag on a symmetric edge.
        if self._rate is None:
            return max(0.0, (self.params.window_ms / 2.0 - self.params.lookahead_ms) / 1000.0)
        return max(0.0, ((self._window - 1) / 2.0 - self._lookahead) / self._rate)
