"""Closed loopback ports that stay closed: bound by this process for its whole life and never listened on.

A port picked free and released can be taken by another test worker's broker or server before the test
uses it, and then it is not closed any more. A bound socket that does not listen refuses every connection
(ECONNREFUSED at once), and no other process can bind its port meanwhile.
"""

from __future__ import annotations

import socket

_held: list[socket.socket] = []


def closed_port() -> int:
    """A loopback port every connection to is refused, for as long as the tests run."""
    held = socket.socket()
    held.bind(("127.0.0.1", 0))
    _held.append(held)
    return int(held.getsockname()[1])
