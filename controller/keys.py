"""Enrolment: the controller's CURVE key pair, one key pair per agent, and the allow-list.

``specbed keys --dir KEYS --agents NAME[,NAME...]`` writes::

    KEYS/controller.key          the controller's public key (every agent gets a copy)
    KEYS/controller.key_secret   its secret key (stays on the controller; mode 0600)
    KEYS/agents/NAME.key         NAME's public key: the allow-list entry
    KEYS/agents/NAME.key_secret  NAME's secret key (goes to NAME's board only; mode 0600)

The controller (``--keys KEYS``) serves its ROUTER and telemetry SUB as
CURVE servers and answers ZeroMQ's ZAP requests with the public keys under
``KEYS/agents/``: a peer with another key, or without CURVE, completes no
handshake, so it never reaches the protocol.  An enrolled key's ZAP user
id is its agent name, and the controller holds every agent to the name its
key was enrolled under.  Refused connections are counted by address and
key and recorded in the manifest.  See SECURITY.md.
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
import threading
from collections import Counter
from pathlib import Path

import zmq
import zmq.auth
from zmq.auth.thread import ThreadAuthenticator
from zmq.utils import z85

from agent.protocol import NAME_PATTERN
from agent.security import ClientKeys, load_client_keys

log = logging.getLogger(__name__)

ZAP_DOMAIN = b"specbed"
#: ROUTER monitor events of a peer that failed the handshake (no CURVE, a wrong server key, ...).
HANDSHAKE_FAILED = (
    zmq.EVENT_HANDSHAKE_FAILED_NO_DETAIL | zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL | zmq.EVENT_HANDSHAKE_FAILED_AUTH
)


class KeysError(ValueError):
    """A keys folder that cannot be used (missing files, bad names)."""


def make_keys(keys_dir: str | Path, agents: list[str]) -> list[Path]:
    """Write the controller's key pair (unless present) and one per agent (replacing a present one).

    Returns the files written.  Secrets are 0600 and the folders 0700.
    """
    keys_dir = Path(keys_dir)
    bad = [a for a in agents if not NAME_PATTERN.fullmatch(a)]
    if bad:
        raise KeysError(f"agent names {bad}: use 1-64 letters, digits, '.', '_' or '-'")
    (keys_dir / "agents").mkdir(parents=True, exist_ok=True)
    os.chmod(keys_dir, 0o700)
    os.chmod(keys_dir / "agents", 0o700)
    written = []
    if not (keys_dir / "controller.key_secret").exists():
        written += _create(keys_dir, "controller")
    for name in agents:
        written += _create(keys_dir / "agents", name)
    return written


def _create(folder: Path, name: str) -> list[Path]:
    for suffix in (".key", ".key_secret"):
        (folder / f"{name}{suffix}").unlink(missing_ok=True)
    # created 0600 from the start: the secret is never readable by others, not even briefly
    old = os.umask(0o077)
    try:
        public, secret = zmq.auth.create_certificates(folder, name)
    finally:
        os.umask(old)
    os.chmod(public, 0o644)
    return [Path(public), Path(secret)]


class _AllowList(ThreadAuthenticator):
    """ZAP handler: CURVE keys of enrolled agents pass (user id = agent name); others are counted."""

    def __init__(self, ctx: zmq.Context, names_by_key: dict[bytes, str]) -> None:
        super().__init__(ctx)
        self.names_by_key = names_by_key
        self.refused: Counter[tuple[str, str]] = Counter()  # (peer address, z85 key or mechanism)
        self.lock = threading.Lock()

    async def handle_zap_message(self, msg: list[bytes]) -> None:
        if len(msg) >= 6:
            address = msg[3].decode("utf-8", "replace")
            mechanism = msg[5]
            key = msg[6] if len(msg) > 6 else b""
            z = z85.encode(key).decode() if mechanism == b"CURVE" and len(key) == 32 else ""
            if z.encode() not in self.names_by_key:
                with self.lock:
                    self.refused[(address, z or mechanism.decode("utf-8", "replace"))] += 1
                log.warning("refused a connection from %s (key %s): not enrolled", address, z or mechanism)
        await super().handle_zap_message(msg)

    def curve_user_id(self, client_public_key: bytes) -> str:
        return self.names_by_key[z85.encode(client_public_key)]


class _Provider:
    def __init__(self, names_by_key: dict[bytes, str]) -> None:
        self.names_by_key = names_by_key

    def callback(self, domain: str, key: bytes) -> bool:
        return key in self.names_by_key


class Enrolment:
    """The controller's side of CURVE for one run: its keys, the allow-list, the ZAP handler.

    ``keys_dir`` None is an insecure run (``--insecure``): sockets in the
    clear, anyone may connect; it is logged and recorded in the manifest.
    """

    def __init__(self, keys_dir: str | Path | None, throwaway: bool = False) -> None:
        self.keys_dir = Path(keys_dir) if keys_dir is not None else None
        self.throwaway = throwaway
        self.auth: _AllowList | None = None
        self.handshake_failed = 0
        self.names_by_key: dict[bytes, str] = {}
        if self.keys_dir is None:
            log.warning("INSECURE: no CURVE keys; any process that reaches the controller's ports may join")
            return
        secret_file = self.keys_dir / "controller.key_secret"
        if not secret_file.is_file():
            raise KeysError(f"{secret_file} missing: make keys with `specbed keys --dir {self.keys_dir} --agents ...`")
        self.public, self.secret = zmq.auth.load_certificate(secret_file)
        for path in sorted((self.keys_dir / "agents").glob("*.key")):
            public, _ = zmq.auth.load_certificate(path)
            self.names_by_key[public] = path.stem
        if not self.names_by_key and not throwaway:
            raise KeysError(f"no agent keys under {self.keys_dir / 'agents'}: enrol agents with `specbed keys`")

    @classmethod
    def for_local(cls, names: list[str]) -> Enrolment:
        """Throwaway keys for agents started on this machine (removed by ``close``)."""
        folder = Path(tempfile.mkdtemp(prefix="specbed-keys-"))
        make_keys(folder, names)
        return cls(folder, throwaway=True)

    @property
    def secure(self) -> bool:
        return self.keys_dir is not None

    def start(self, ctx: zmq.Context) -> None:
        """Start the ZAP handler in ``ctx`` (once; the controller's sockets of this run share it)."""
        if not self.secure or self.auth is not None:
            return
        auth = _AllowList(ctx, self.names_by_key)
        try:
            auth.start()
        except zmq.ZMQError as exc:  # one ZAP handler per context: a run still open in this process holds it
            raise KeysError(f"cannot start the CURVE allow-list: {exc} (another run in this process?)") from None
        self.auth = auth
        self.auth.configure_curve_callback(ZAP_DOMAIN.decode(), _Provider(self.names_by_key))

    def serve(self, sock: zmq.Socket) -> None:
        """Make ``sock`` (before it binds) a CURVE server checked against the allow-list."""
        if not self.secure:
            return
        self.start(sock.context)
        sock.curve_server = True
        sock.curve_secretkey = self.secret
        sock.curve_publickey = self.public
        sock.zap_domain = ZAP_DOMAIN

    def agent_args(self, name: str) -> list[str]:
        """Command-line arguments that give agent ``name`` its keys (or make it insecure too)."""
        if not self.secure:
            return ["--insecure"]
        return ["--key", str(self.agent_secret(name)), "--server-key", str(self.keys_dir / "controller.key")]

    def agent_secret(self, name: str) -> Path:
        return self.keys_dir / "agents" / f"{name}.key_secret"

    def client_keys(self, name: str) -> ClientKeys:
        """An enrolled agent's keys, for an agent in this process (tests)."""
        return load_client_keys(self.agent_secret(name), self.keys_dir / "controller.key")

    def describe(self) -> dict:
        """The manifest's ``security`` entry: the mode, who is enrolled, who was refused."""
        if not self.secure:
            return {"mode": "insecure"}
        refused = []
        if self.auth is not None:
            with self.auth.lock:
                refused = [{"address": a, "key": k, "count": n} for (a, k), n in sorted(self.auth.refused.items())]
        return {
            "mode": "curve",
            "keys": "throwaway" if self.throwaway else str(self.keys_dir),
            "enrolled": sorted(self.names_by_key.values()),
            "refused": refused,
            "refused_total": sum(r["count"] for r in refused),
            "handshake_failed": self.handshake_failed,
        }

    def close(self) -> None:
        if self.auth is not None:
            self.auth.stop()
            self.auth = None
        if self.throwaway and self.keys_dir is not None:
            shutil.rmtree(self.keys_dir, ignore_errors=True)


def enrolment_for(keys_dir: str | Path | None, insecure: bool, remote: bool, local_names: list[str]) -> Enrolment:
    """A run's enrolment: ``--insecure``, the given keys, or throwaway keys for local agents."""
    if insecure:
        return Enrolment(None)
    if keys_dir is not None:
        return Enrolment(keys_dir)
    if not remote:
        return Enrolment.for_local(local_names)
    raise KeysError("remote agents need enrolled keys: give --keys KEYS (made by `specbed keys`) or --insecure")
