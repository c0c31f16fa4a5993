"""``audio2anim devices``: list the audio devices PortAudio sees (inputs for source.microphone)."""

from __future__ import annotations

import argparse


def add_commands(subparsers) -> None:
    p = subparsers.add_parser(
        "devices",
        help="list audio input/output devices",
        description="List the audio devices PortAudio sees. Use an input's index or a unique "
        "part of its name as source.microphone's `device` parameter.",
    )
    p.set_defaults(func=devices_command)


def devices_command(args: argparse.Namespace) -> int:
    """Print the device table; exit code 0 even when there are none (that is an answer)."""
    from ._audio_devices import format_device_table, query_devices

    print(format_device_table(query_devices()))
    return 0


if __name__ == "__main__":  # usable before the package CLI wires this module in
    import sys

    parser = argparse.ArgumentParser(prog="audio2anim")
    add_commands(parser.add_subparsers(dest="command", required=True))
    ns = parser.parse_args()
    sys.exit(ns.func(ns))
