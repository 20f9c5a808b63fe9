"""Ray addresses as users type them, and whether anything answers at one."""

from __future__ import annotations

import socket

from core.errors import ConfigError

__all__ = ["REACH_TIMEOUT_S", "reachable", "split_address"]

#: Seconds to wait for a cluster's port to answer before saying it is not there.
REACH_TIMEOUT_S = 5.0


def split_address(address: str) -> tuple[str, int]:
    """``(host, port)`` of ``HOST:PORT`` (a ``ray://`` prefix is dropped); ConfigError otherwise."""
    host, sep, port = address.strip().removeprefix("ray://").rpartition(":")
    if not sep or not host or not port.isdigit():
        raise ConfigError(
            f"A Ray address is HOST:PORT (as `ray start --head` prints it) or 'local'; "
            f"got {address!r} (--ray)."
        )
    return host, int(port)


def reachable(address: str, timeout: float = REACH_TIMEOUT_S) -> bool:
    """Whether the cluster's head answers on its port (a TCP connect; no Ray call)."""
    host, port = split_address(address)
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False
