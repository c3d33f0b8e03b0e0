"""What an agent needs for CURVE: its own key pair and the controller's public key.

Keys are ZeroMQ certificate files (``zmq.auth`` format), made by
``specbed keys``: the agent holds ``agents/NAME.key_secret`` (its public
and secret key) and ``controller.key`` (the controller's public key only).
With them, the agent's DEALER and its telemetry XPUB encrypt everything and
prove the agent's identity to the controller's allow-list; a peer posing as
the controller without the controller's secret key completes no handshake.
See SECURITY.md.
"""

from __future__ import annotations

import logging
import os
import stat
from dataclasses import dataclass
from pathlib import Path

import zmq
import zmq.auth

log = logging.getLogger(__name__)


class KeyError_(ValueError):
    """A key file that is missing, unreadable, not a certificate or too open."""


@dataclass(frozen=True)
class ClientKeys:
    """One agent's CURVE identity and the controller it trusts (z85 bytes)."""

    public: bytes
    secret: bytes
    server_public: bytes


def load_client_keys(key_file: str | Path, server_key_file: str | Path) -> ClientKeys:
    """Read the agent's secret certificate and the controller's public one; refuse world-readable secrets."""
    key_path, server_path = Path(key_file), Path(server_key_file)
    for path in (key_path, server_path):
        if not path.is_file():
            raise KeyError_(f"{path}: no such key file (make keys with `specbed keys`)")
    mode = stat.S_IMODE(os.stat(key_path).st_mode)
    if mode & 0o077:
        raise KeyError_(f"{key_path}: secret key readable by others (mode {mode:o}); chmod 600 it")
    try:
        public, secret = zmq.auth.load_certificate(key_path)
        server_public, _ = zmq.auth.load_certificate(server_path)
    except (ValueError, OSError) as exc:
        raise KeyError_(f"not a ZeroMQ certificate: {exc}") from None
    if secret is None:
        raise KeyError_(f"{key_path}: holds no secret key (give the .key_secret file)")
    return ClientKeys(public, secret, server_public)


def apply_client(sock: zmq.Socket, keys: ClientKeys | None) -> None:
    """Make ``sock`` (before it connects) a CURVE client of the controller; None leaves it in the clear."""
    if keys is None:
        return
    sock.curve_secretkey = keys.secret
    sock.curve_publickey = keys.public
    sock.curve_serverkey = keys.server_public
