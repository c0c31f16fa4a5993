"""The UDP socket the network sinks (`sink.livelink`, `sink.vmc`) send their datagrams on."""

from __future__ import annotations

import socket


def open_udp(host: str, port: int, owner: str) -> tuple[socket.socket, tuple[str, int]]:
    """(an IPv4 UDP socket, the resolved ``(address, port)`` to ``sendto``) for ``host:port``.

    An unresolvable host is one ValueError naming ``owner`` (the operator) and the host.
    """
    try:
        info = socket.getaddrinfo(host, port, socket.AF_INET, socket.SOCK_DGRAM)
    except socket.gaierror as e:
        raise ValueError(f"{owner}: cannot resolve host {host!r}: {e}") from None
    return socket.socket(socket.AF_INET, socket.SOCK_DGRAM), info[0][4]
