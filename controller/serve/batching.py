"""Batching windows: payloads staged until the batching mode says their batch is complete.

A module of ``controller/serve/``, the controller in pieces of one concept each; they import downward only.
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from collections.abc import Callable
from typing import Protocol

from agent.protocol import DraftPayload, ProtocolError
from controller.liveness import check_echo
from controller.profiles import Generation
from controller.serve.router import Router
from controller.serve.sessions import Session

log = logging.getLogger(__name__)

BATCH_WAIT_LIMIT_S = 30.0  # a homogeneous batch verifies without an agent silent this long


class Host(Protocol):
    """What batching reads on the controller that holds it (and the counter it adds to)."""

    router: Router
    generation: Generation
    sessions: dict[bytes, Session]
    errors: Counter[str]


class Batcher:
    """Stages each agent's payload and hands complete batches to ``verify`` (one target pass each)."""

    def __init__(self, host: Host, verify: Callable[[list[Session]], None]) -> None:
        self.host = host
        self.verify = verify
        self.deadline_ns: int | None = None  # verify the staged payloads by then at the latest

    def stage(self, session: Session, msg: DraftPayload, frame_len: int, t_recv: int) -> None:
        """Hold a payload for its batch: it must answer the agent's current round, as asked."""
        t_decoded = time.monotonic_ns()
        job = session.job
        if job is None or msg.request_id != session.request_id or msg.round != session.round:
            raise ProtocolError(
                "unexpected",
                f"payload for request {msg.request_id} round {msg.round}, expected "
                f"request {session.request_id} round {session.round}",
            )
        if session.staged is not None:
            raise ProtocolError("unexpected", f"a second payload for round {msg.round} before its verdict")
        check_echo(session.settings, session.next_gamma, msg)
        session.waiting_since_ns = 0
        session.staged = (msg, frame_len, t_recv, t_decoded)
        # uplink ends at the latest of: the send plus the time an emulated link held the frame (it
        # cannot have arrived sooner) and the controller's last idle moment; the rest is queue
        held_ns = int(min(max(float((msg.link or {}).get("up_s") or 0.0), 0.0), 3600.0) * 1e9)
        sent = session.clock.to_controller(msg.times[2])
        session.t_ready = min(t_recv, max(sent + held_ns, self.host.router.idle_until_ns))
        if self.deadline_ns is None:
            limit = self.host.generation.batch_window_s if self.mode == "heterogeneous" else BATCH_WAIT_LIMIT_S
            self.deadline_ns = t_decoded + int(limit * 1e9)
        self.flush()

    @property
    def mode(self) -> str:
        """The batching mode in force: the profile's, or the bandwidth policy's when "auto"."""
        mode = self.host.generation.batching
        if mode != "auto":
            return mode
        return {
            "equal-split": "homogeneous",
            "multispin-homogeneous": "homogeneous",
            "multispin-heterogeneous": "heterogeneous",
        }.get(self.host.generation.bandwidth_policy, "off")

    def flush(self) -> None:
        """Verify the staged payloads whenever the batching mode says a batch is complete.

        "off": every staged payload, one pass each.  "homogeneous": one pass
        once every agent with a prompt has a payload staged (an agent that
        finishes its prompt is no longer waited for).  "heterogeneous": one
        pass once the batch window after the first staged payload has passed,
        or sooner when every busy agent is staged.
        """
        sessions = self.host.sessions
        while True:
            staged = sorted((s for s in sessions.values() if s.staged is not None), key=lambda s: s.staged[2])
            if not staged:
                self.deadline_ns = None
                return
            mode = self.mode
            busy = [s for s in sessions.values() if s.job is not None]
            complete = mode == "off" or all(s.staged is not None for s in busy)
            late = self.deadline_ns is not None and time.monotonic_ns() >= self.deadline_ns
            if not complete and late:
                if mode == "homogeneous":
                    self.host.errors["batch_wait_limit"] += 1
                    log.warning(
                        "a homogeneous batch waited %.0f s for %d agent(s); verifying without them",
                        BATCH_WAIT_LIMIT_S,
                        len(busy) - len(staged),
                    )
                complete = True
            if not complete:
                return
            self.deadline_ns = None
            for batch in [[s] for s in staged] if mode == "off" else [staged]:
                self.verify(batch)
