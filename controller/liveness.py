"""Liveness and payload bookkeeping: no run waits forever on a peer that stopped, no payload lies about its shape.

A stalled host (SIGSTOP, a pulled cable) keeps its TCP connection open, so
the ROUTER's DISCONNECTED event never comes.  Two clocks catch it:

- ZMTP heartbeats (``ZMQ_HEARTBEAT_IVL``/``_TIMEOUT``/``_TTL``): ZeroMQ's I/O
  thread pings every connection each ``heartbeat_ivl_s`` and closes one that
  sends nothing for ``heartbeat_timeout_s``; the close reaches the
  controller as on a crashed agent, and its prompt goes to the others.
  ZeroMQ counts a message only once it is whole, so the timeout must exceed
  the longest legitimate transfer on a tc-shaped link (the agents' emulated
  links hold a payload back before sending it, not on the wire): the
  default, 60 s, carries 37 MB at 5 Mbit/s, the slowest rate of the bundled
  testbed profile, and the largest legal payload of the bundled pair (V =
  49,152, γ ≤ 16) is 6.3 MB.
- A per-round deadline (``round_timeout_s``): an agent with a prompt that
  sends no payload that long after its draft request or verdict is lost too
  (a live connection whose process no longer drafts).

The profile's optional ``liveness`` section sets the three numbers.
"""

from __future__ import annotations

import logging
import time
from collections import Counter, deque
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import zmq

from agent.protocol import DraftPayload, Error, ProtocolError

if TYPE_CHECKING:
    from agent.settings import Settings

log = logging.getLogger(__name__)

#: A prompt failed by this many agents (or by every agent present) is given up (recorded, not retried).
MAX_PROMPT_ERRORS = 3


class Served(Protocol):
    """What the round deadline and the fail-over read and change on the controller (controller.serve)."""

    sessions: dict[bytes, Any]  # identity -> controller.serve.sessions.Session
    router: Any  # controller.serve.router.Router: its ``closed`` identities
    admission: Any  # controller.serve.sessions.Admission: ``assign_one``
    errors: Counter[str]
    pending: deque
    failed_by: dict[str, set[str]]
    failed_prompts: list[str]
    unfinished: int

    def agent_lost(self, identity: bytes, why: str) -> None: ...


@dataclass(frozen=True)
class Liveness:
    """Heartbeat and deadline settings, seconds."""

    heartbeat_ivl_s: float = 5.0
    heartbeat_timeout_s: float = 60.0
    round_timeout_s: float = 600.0

    def apply(self, sock: zmq.Socket) -> None:
        """ZMTP heartbeats on ``sock`` (before it binds or connects); the TTL tells the peer to drop us alike."""
        sock.setsockopt(zmq.HEARTBEAT_IVL, int(self.heartbeat_ivl_s * 1000))
        sock.setsockopt(zmq.HEARTBEAT_TIMEOUT, int(self.heartbeat_timeout_s * 1000))
        # TTL travels in the PING in deciseconds, 16 bits: at most 6553 s
        sock.setsockopt(zmq.HEARTBEAT_TTL, min(int(self.heartbeat_timeout_s * 1000), 6_553_000))

    def to_dict(self) -> dict:
        return {
            "heartbeat_ivl_s": self.heartbeat_ivl_s,
            "heartbeat_timeout_s": self.heartbeat_timeout_s,
            "round_timeout_s": self.round_timeout_s,
        }

    def check_rounds(self, ctrl: Served) -> None:
        """Lose every agent that holds a prompt and sent no payload within ``round_timeout_s``."""
        now = time.monotonic_ns()
        limit_ns = int(self.round_timeout_s * 1e9)
        for session in list(ctrl.sessions.values()):
            if session.job is not None and session.waiting_since_ns and now - session.waiting_since_ns > limit_ns:
                ctrl.errors["timeout"] += 1
                ctrl.router.closed.add(session.identity)  # whatever it sends later is dropped
                ctrl.agent_lost(session.identity, f"no payload for {self.round_timeout_s:g} s (round deadline)")


def load_liveness(path: Path, data: Any) -> Liveness:
    """The profile's ``liveness`` section: positive seconds, interval below timeout."""
    from controller.profiles.base import ProfileError

    if data is None:
        return Liveness()
    if not isinstance(data, dict):
        raise ProfileError(f"{path}: liveness: expected a mapping with heartbeat_ivl_s, heartbeat_timeout_s, ...")
    names = ("heartbeat_ivl_s", "heartbeat_timeout_s", "round_timeout_s")
    unknown = sorted(set(data) - set(names))
    if unknown:
        raise ProfileError(f"{path}: liveness: unknown field(s) {unknown}; known: {list(names)}")
    values = {}
    for name in names:
        if name in data:
            v = data[name]
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not 0 < v <= 86400:
                raise ProfileError(f"{path}: liveness.{name}: expected seconds in (0, 86400], got {v!r}")
            values[name] = float(v)
    live = Liveness(**values)
    if live.heartbeat_ivl_s >= live.heartbeat_timeout_s:
        raise ProfileError(f"{path}: liveness: heartbeat_ivl_s must be below heartbeat_timeout_s")
    return live


def check_echo(settings: Settings | None, gamma: int, msg: DraftPayload) -> None:
    """A payload's γ, K and dtypes must be the ones the controller asked for ("mismatch")."""
    if settings is None:
        raise ProtocolError("unexpected", "a payload before CONFIGURE")
    asked = {
        "draft_length": gamma,
        "top_k": settings.top_k,
        "index_dtype": settings.index_dtype,
        "prob_dtype": settings.prob_dtype,
    }
    for name, want in asked.items():
        got = getattr(msg, name)
        if got != want:
            raise ProtocolError("mismatch", f"payload {name}={got!r}, asked for {want!r}", field=name)


def fail_over(ctrl: Served, session: Any, err: Error) -> None:
    """An agent's ERROR (or a refused payload) while it holds a prompt: the prompt goes to another agent.

    The agent stopped working on it (it drafts only on a request or a
    verdict), so leaving it assigned would hang the run.  The prompt is run
    afresh by an agent that has not failed it; once ``MAX_PROMPT_ERRORS``
    agents, or every agent present, failed it, it is given up: counted
    (``prompt_failed``) and listed in ``failed_prompts``; the run finishes
    without it.
    """
    req = err.context.get("request_id")
    job = session.job
    if job is None or (isinstance(req, int) and req != session.request_id):
        return
    session.job, session.staged, session.waiting_since_ns = None, None, 0
    session.target.reset()
    failed = ctrl.failed_by.setdefault(job.prompt_id, set())
    failed.add(session.name)
    if len(failed) >= MAX_PROMPT_ERRORS or {s.name for s in ctrl.sessions.values()} <= failed:
        ctrl.errors["prompt_failed"] += 1
        ctrl.failed_prompts.append(job.prompt_id)
        ctrl.unfinished -= 1
        log.error("prompt %s failed on agents %s; giving it up", job.prompt_id, sorted(failed))
        return
    log.warning("agent %s failed prompt %s (%s); it goes to another agent", session.name, job.prompt_id, err.code)
    ctrl.pending.appendleft(job)
    for s in list(ctrl.sessions.values()):
        ctrl.admission.assign_one(s)
