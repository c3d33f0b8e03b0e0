"""The ROUTER socket: frames in, typed messages and connection events out.

A module of ``controller/serve/``, the controller in pieces of one concept each; they import downward only.

The socket takes frames up to the largest legal payload (``MAXMSGSIZE``),
from enrolled peers only when CURVE is on (controller.keys), and drops
stalled peers (controller.liveness's heartbeats).  An agent whose
connection closes (its process crashed or was killed, locally or on a
remote host) is reported at once: the ROUTER's monitor reports the closed
file descriptor, and each agent's messages say which descriptor they came
in on.
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from dataclasses import dataclass

import zmq
from zmq.utils.monitor import recv_monitor_message

from agent.protocol import Message, ProtocolError, decode, encode, zmtp_frame_bytes
from controller.keys import HANDSHAKE_FAILED, Enrolment
from controller.liveness import Liveness

log = logging.getLogger(__name__)

IDLE_POLL_NS = 20_000  # a poll that blocked this long means the controller sat idle


@dataclass(frozen=True)
class Incoming:
    """One message from an agent: decoded, or the error that says why not."""

    identity: bytes
    frame_len: int  # bytes of the message frame
    t_recv: int  # controller ns: frame received
    message: Message | None = None
    error: ProtocolError | None = None
    # whether ``error`` may end the sender's round (a refused payload does; a
    # frame that is not one message, or an internal error, does not)
    ends_round: bool = True


class Router:
    """The controller's ROUTER and its monitor; counts handshake failures in ``errors``."""

    def __init__(
        self,
        endpoint: str,
        frame_limit_bytes: int,
        vocab_size: int,
        liveness: Liveness,
        enrolment: Enrolment | None,
        errors: Counter[str],
    ) -> None:
        self.vocab_size = vocab_size
        self.errors = errors
        self.ctx = zmq.Context.instance()
        self.sock = self.ctx.socket(zmq.ROUTER)
        self.sock.setsockopt(zmq.LINGER, 2000)
        # bounded cost per frame, enrolled peers only, stalled peers dropped (controller.liveness)
        self.enrolment = enrolment
        self.user_of: dict[bytes, str] = {}  # agent identity -> the name its CURVE key is enrolled under
        # agent identity -> the hidden dtype its CONFIGURE negotiated for WISV full-hidden payloads
        self.hidden_dtype_of: dict[bytes, str] = {}
        self.sock.setsockopt(zmq.MAXMSGSIZE, frame_limit_bytes)
        liveness.apply(self.sock)
        if enrolment is not None:
            enrolment.serve(self.sock)
        self.monitor = self.sock.get_monitor_socket(zmq.EVENT_DISCONNECTED | HANDSHAKE_FAILED)
        self.fd_of: dict[bytes, int] = {}  # agent identity -> the descriptor of its connection
        self.closed: set[bytes] = set()  # identities whose connection closed: their queued frames are dropped
        self.idle_until_ns = 0  # the controller last waited for messages until then (a frame's queue starts there)
        self.poller = zmq.Poller()
        self.poller.register(self.sock, zmq.POLLIN)
        self.poller.register(self.monitor, zmq.POLLIN)
        self.sock.bind(endpoint)
        self.endpoint = self.sock.getsockopt_string(zmq.LAST_ENDPOINT)

    def send(self, identity: bytes, message: Message) -> int:
        """Send one message; returns its bytes on the wire."""
        frame = encode(message)
        self.sock.send_multipart([identity, frame])
        return zmtp_frame_bytes(len(frame))

    def wait(self, wait_ms: int) -> bool:
        """Wait up to ``wait_ms`` for a frame or a connection event; whether one came."""
        t_poll = time.monotonic_ns()
        events = self.poller.poll(wait_ms)
        if not events or time.monotonic_ns() - t_poll > IDLE_POLL_NS:
            self.idle_until_ns = time.monotonic_ns()  # it was waiting: anything read later arrived after this
        return bool(events)

    def closed_connections(self) -> list[bytes]:
        """The identities whose connection the monitor reports closed since the last call."""
        lost = []
        while self.monitor.poll(0):
            event = recv_monitor_message(self.monitor)
            if event["event"] & HANDSHAKE_FAILED:
                self.errors["handshake_failed"] += 1
                if self.enrolment is not None:
                    self.enrolment.handshake_failed += 1
                continue
            if event["event"] != zmq.EVENT_DISCONNECTED:
                continue
            for identity, fd in list(self.fd_of.items()):
                if fd == event["value"]:
                    del self.fd_of[identity]
                    self.closed.add(identity)
                    lost.append(identity)
        return lost

    def receive(self) -> Incoming | None:
        """The next message, if one is queued and its sender's connection is still open."""
        if not self.sock.poll(0):
            return None
        frames = self.sock.recv_multipart(copy=False)
        t_recv = time.monotonic_ns()
        identity = frames[0].bytes
        if identity in self.closed:
            return None  # sent before its connection closed; the agent is gone
        self.fd_of[identity] = frames[0].get(zmq.SRCFD)
        if self.enrolment is not None and self.enrolment.secure:
            self.user_of[identity] = frames[-1].get("User-Id")
        if len(frames) != 2:
            error = ProtocolError("malformed", f"expected one frame, got {len(frames) - 1}")
            return Incoming(identity, 0, t_recv, error=error, ends_round=False)
        frame = frames[1].bytes
        try:
            message = decode(frame, vocab_size=self.vocab_size, hidden_dtype=self.hidden_dtype_of.get(identity))
            return Incoming(identity, len(frame), t_recv, message=message)
        except ProtocolError as exc:
            return Incoming(identity, len(frame), t_recv, error=exc)
        except Exception as exc:  # a bug must not take the other agents down
            log.exception("internal error decoding a message")
            error = ProtocolError("internal", f"{type(exc).__name__}: {exc}")
            return Incoming(identity, len(frame), t_recv, error=error, ends_round=False)

    def close(self) -> None:
        self.sock.disable_monitor()
        self.monitor.close(linger=0)
        self.sock.close()
