#!/usr/bin/env python3
"""Cost of the smoothing operators and avatar outputs per animation frame.

Feeds 52-parameter ARKit frames at 60 Hz through each operator directly (no runner), in
packets of 1 frame (live: one frame per packet) and of 120 frames (offline, e.g. `animate`),
and prints microseconds per frame and how many times faster than real time (60 frames/s) the
operator alone runs. UDP outputs send to a local socket that this script drains.

    .venv/bin/python bench/live_outputs.py [--seconds 20] [--write-docs]

``--write-docs`` also writes the table into docs/performance.md (section ``live-outputs``).
"""

from __future__ import annotations

import argparse
import socket
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from perf_page import add_arguments, write_from_args  # noqa: E402

from audio2anim.arkit import ALL  # noqa: E402
from audio2anim.graph.packets import Packet  # noqa: E402
from audio2anim.graph.registry import get  # noqa: E402
from audio2anim.streams import Params  # noqa: E402

FPS = 60.0


def cases(tmp: Path, port: int) -> list[tuple[str, str, dict]]:
    return [
        ("smoothing.ema", "smoothing.ema", {}),
        ("smoothing.one_euro", "smoothing.one_euro", {}),
        ("smoothing.savgol", "smoothing.savgol", {}),
        ("sink.csv livelink", "sink.csv", {"path": str(tmp / "a.csv")}),
        ("sink.csv simple", "sink.csv", {"path": str(tmp / "b.csv"), "layout": "simple"}),
        ("sink.livelink", "sink.livelink", {"port": port}),
        ("sink.vmc arkit", "sink.vmc", {"port": port}),
        ("sink.vmc vrm", "sink.vmc", {"port": port, "names": "vrm"}),
    ]


def measure(op_name: str, params: dict, values: np.ndarray, per_packet: int, drain) -> float:
    """Seconds per frame for ``values`` fed in packets of ``per_packet`` frames."""
    cls = get(op_name)
    op = cls(cls.Params(**params))
    op.setup()  # imports and sockets happen here, outside the timed loop
    start = time.perf_counter()
    for i in range(0, len(values), per_packet):
        op.process("in", Packet(Params(values[i : i + per_packet], ALL, FPS), i / FPS))
        drain()
    op.flush()
    elapsed = time.perf_counter() - start
    op.close()
    return elapsed / len(values)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=20.0, help="stream length per case")
    add_arguments(parser)
    args = parser.parse_args()
    n = int(args.seconds * FPS)
    rng = np.random.default_rng(0)
    values = np.clip(0.5 + 0.2 * rng.standard_normal((n, len(ALL))), 0, 1).astype(np.float32)

    recv = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    recv.bind(("127.0.0.1", 0))
    recv.setblocking(False)

    def drain() -> None:
        try:
            while True:
                recv.recv(65536)
        except BlockingIOError:
            pass

    print(f"{n} frames of {len(ALL)} parameters at {FPS:.0f} Hz per case")
    print(f"{'operator':<22}{'frames/packet':>14}{'us/frame':>11}{'x realtime':>12}")
    rows = [
        f"{n} frames of {len(ALL)} parameters at {FPS:.0f} Hz per case",
        "",
        "| operator | frames/packet | µs/frame | × real time |",
        "|---|---|---|---|",
    ]
    with tempfile.TemporaryDirectory() as tmp:
        for label, op_name, params in cases(Path(tmp), recv.getsockname()[1]):
            for per_packet in (1, 120):
                s = measure(op_name, params, values, per_packet, drain)
                print(f"{label:<22}{per_packet:>14}{s * 1e6:>11.1f}{1 / (s * FPS):>12.0f}")
                rows.append(f"| {label} | {per_packet} | {s * 1e6:.1f} | {1 / (s * FPS):.0f} |")
    recv.close()
    write_from_args(args, "live-outputs", "\n".join(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
