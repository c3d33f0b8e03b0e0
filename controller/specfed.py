"""SpecFed's round coordinator: workers score the drafts, the server aggregates and verifies.

ALGORITHMS.md section 3.  ``WorkerPool`` owns a ROUTER socket that SpecFed
workers (``python -m agent --role worker``) connect to: it answers their
``HELLO`` with a ``CONFIGURE`` naming each worker's model, and in each round
sends every live worker a ``SCORE_REQUEST`` and gathers the
``SCORE_PAYLOAD``s.  A worker that dies, says ``BYE`` or misses a round's
deadline is *lost*: the round goes on with the others, whose weights are
renormalised, and the loss is recorded.  ``federated_round`` turns one
round's payloads into p̃ = Σ_m w_m p̃_m, verifies the drafts against it with
the host verifier (``controller.verify``) and measures the paper's
quantities (``controller.federated``) when dense copies came along.
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import torch
import zmq

from agent.protocol import (
    Bye,
    Configure,
    Error,
    Hello,
    ProtocolError,
    Ready,
    ScorePayload,
    ScoreRequest,
    decode,
    encode,
    zmtp_frame_bytes,
)
from agent.settings import Settings
from controller.federated import aggregate, measure_round, normalise_weights, worker_distribution
from controller.verify import greedy_verify, speculative_verify

log = logging.getLogger(__name__)


class WorkersLost(RuntimeError):
    """Every worker is gone: nothing is left to score a round."""


@dataclass
class WorkerSession:
    name: str
    identity: bytes
    weight: float  # the profile's w_m (normalised over all workers)
    settings: Settings | None = None  # the CONFIGURE settings last sent
    ready: bool = False
    lost: str | None = None  # why the worker was lost, once it is
    sent: list[int] = field(default_factory=list)  # the sequence last sent (for ``base``)
    request_id: int = -1


@dataclass
class Scored:
    """One worker's answer to a round: the payload and its traffic (scheme bytes only)."""

    payload: ScorePayload
    bytes_up: int  # frame bytes without the dense measurement copy
    bytes_down: int  # the request's frame bytes
    t_recv_ns: int


def _common_prefix(a: list[int], b: list[int]) -> int:
    n = min(len(a), len(b))
    for i in range(n):
        if a[i] != b[i]:
            return i
    return n


class WorkerPool:
    """The ROUTER end of SpecFed: workers by name, configured, asked to score rounds."""

    def __init__(
        self,
        weights: dict[str, float],
        endpoint: str = "tcp://127.0.0.1:*",
        enrolment=None,  # controller.keys.Enrolment: only enrolled workers connect (None: insecure)
        max_frame_bytes: int | None = None,  # ZMQ_MAXMSGSIZE: the largest legal score payload
    ) -> None:
        self.weights = dict(weights)
        self.ctx = zmq.Context.instance()
        self.sock = self.ctx.socket(zmq.ROUTER)
        self.sock.setsockopt(zmq.LINGER, 1000)
        self.sock.setsockopt(zmq.ROUTER_MANDATORY, 1)
        if max_frame_bytes is not None:
            self.sock.setsockopt(zmq.MAXMSGSIZE, max_frame_bytes)
        if enrolment is not None:
            enrolment.serve(self.sock)
        self.sock.bind(endpoint)
        self.endpoint = self.sock.getsockopt_string(zmq.LAST_ENDPOINT)
        self.sessions: dict[str, WorkerSession] = {}
        self.by_identity: dict[bytes, str] = {}
        self.errors: Counter = Counter()
        self.vocab_size: int | None = None
        self.poller = zmq.Poller()
        self.poller.register(self.sock, zmq.POLLIN)
        self.check: Callable[[], None] = lambda: None  # called between messages (dead processes, ...)

    # --- plumbing ---------------------------------------------------------------------------------
    def _send(self, identity: bytes, msg) -> int:
        frame = encode(msg)
        try:
            self.sock.send_multipart([identity, frame])
        except zmq.ZMQError as exc:  # the peer is gone (ROUTER_MANDATORY)
            name = self.by_identity.get(identity)
            if name:
                self.lose(name, f"send failed: {exc}")
        return zmtp_frame_bytes(len(frame))

    def _recv(self, timeout_s: float) -> tuple[bytes, object, int] | None:
        """One decoded message (identity, message, frame bytes); None on timeout or a bad frame."""
        if not self.poller.poll(max(int(timeout_s * 1000), 0)):
            return None
        identity, frame = self.sock.recv_multipart()
        try:
            msg = decode(frame, vocab_size=self.vocab_size)
        except ProtocolError as exc:
            self.errors[exc.code] += 1
            log.warning("bad frame from %r: %s", identity, exc)
            self._send(identity, Error(exc.code, exc.message, {}))
            return None
        return identity, msg, len(frame)

    def lose(self, name: str, why: str) -> None:
        s = self.sessions.get(name)
        if s is not None and s.lost is None:
            s.lost = why
            log.warning("worker %s lost: %s", name, why)

    def live(self) -> list[WorkerSession]:
        return [s for s in self.sessions.values() if s.ready and s.lost is None]

    def live_weights(self) -> dict[str, float]:
        """w_m renormalised over the live workers."""
        live = self.live()
        if not live:
            raise WorkersLost("every worker is lost")
        return normalise_weights({s.name: self.weights[s.name] for s in live})

    def _handle_control(self, identity: bytes, msg) -> None:
        """Messages outside a round's answers: HELLO, READY, BYE, ERROR."""
        name = self.by_identity.get(identity)
        if isinstance(msg, Hello):
            if msg.agent not in self.weights:
                self.errors["unknown_agent"] += 1
                self._send(identity, Error("unknown_agent", f"{msg.agent!r} is not a worker of this run", {}))
                return
            old = self.sessions.get(msg.agent)
            if old is not None and old.lost is None and old.identity != identity:
                self.lose(msg.agent, "reconnected under a new identity")
            self.sessions[msg.agent] = WorkerSession(msg.agent, identity, self.weights[msg.agent])
            self.by_identity[identity] = msg.agent
        elif name is None:
            self.errors["unknown_agent"] += 1
            self._send(identity, Error("unknown_agent", "say HELLO first", {}))
        elif isinstance(msg, Ready):
            self.sessions[name].ready = True
            self.vocab_size = self.vocab_size or int(msg.info.get("vocab_size", 0)) or None
        elif isinstance(msg, Bye):
            self.lose(name, f"said bye: {msg.reason}")
        elif isinstance(msg, Error):
            self.errors[f"from_worker:{msg.code}"] += 1
            log.warning("worker %s reports %s: %s", name, msg.code, msg.message)
        else:
            self.errors["unexpected"] += 1

    # --- configuration ----------------------------------------------------------------------------
    def configure(self, settings_for: Callable[[str], Settings], expect: int, timeout_s: float) -> None:
        """Send every worker its CONFIGURE (now and on later HELLOs) and wait until ``expect`` are READY."""
        for s in self.sessions.values():
            s.ready, s.settings = False, None
        t0 = time.monotonic()
        while True:
            for s in self.sessions.values():
                if s.settings is None and s.lost is None:
                    s.settings = settings_for(s.name)
                    self._send(s.identity, Configure(s.settings.to_wire()))
            ready = sum(1 for s in self.sessions.values() if s.ready and s.lost is None)
            if ready >= expect:
                return
            self.check()
            if time.monotonic() - t0 > timeout_s:
                raise TimeoutError(f"{ready} of {expect} workers ready after {timeout_s:.0f} s")
            got = self._recv(0.2)
            if got is not None:
                self._handle_control(got[0], got[1])

    # --- one round --------------------------------------------------------------------------------
    def score(
        self, request_id: int, rnd: int, sequence: list[int], gamma: int, measure: bool, timeout_s: float
    ) -> dict[str, Scored]:
        """Ask every live worker to score ``sequence`` (its last γ tokens are drafts); their answers."""
        down: dict[str, int] = {}
        for s in self.live():
            base = 0 if s.request_id != request_id else min(_common_prefix(s.sent, sequence), len(sequence) - 1)
            req = ScoreRequest(request_id, rnd, base, sequence[base:], gamma, measure)
            s.sent, s.request_id = list(sequence), request_id
            down[s.name] = self._send(s.identity, req)
        answers: dict[str, Scored] = {}
        deadline = time.monotonic() + timeout_s
        while True:
            waiting = [s.name for s in self.live() if s.name in down and s.name not in answers]
            if not waiting:
                return answers
            self.check()
            left = deadline - time.monotonic()
            if left <= 0:
                for name in waiting:
                    self.lose(name, f"no answer to round {rnd} of request {request_id} in {timeout_s:.0f} s")
                continue
            got = self._recv(min(left, 0.2))
            if got is None:
                continue
            identity, msg, n = got
            name = self.by_identity.get(identity)
            if not isinstance(msg, ScorePayload):
                self._handle_control(identity, msg)
                continue
            ok = name in down and msg.request_id == request_id and msg.round == rnd and msg.draft_length == gamma
            if not ok or self.sessions[name].lost is not None:
                self.errors["unexpected"] += 1  # stale: a late answer, or from a lost worker
                continue
            dense, msg.dense_probs = msg.dense_probs, None
            up = zmtp_frame_bytes(len(encode(msg))) if dense is not None else zmtp_frame_bytes(n)
            msg.dense_probs = dense
            answers[name] = Scored(msg, up, down[name], time.monotonic_ns())

    def bye(self, reason: str = "run finished") -> None:
        for s in self.sessions.values():
            if s.lost is None:
                self._send(s.identity, Bye(reason))

    def close(self) -> None:
        self.sock.close()


@dataclass
class RoundResult:
    n_accepted: int
    next_token: int
    weights: dict[str, float]  # the w_m used (renormalised over the answering workers)
    metrics: dict | None  # controller.federated.RoundMetrics.to_dict(), when measured


def federated_round(
    answers: dict[str, Scored],
    weights: dict[str, float],
    drafts: torch.Tensor,  # [γ] long
    q: torch.Tensor,  # [γ, V] the drafter's distribution
    draft_token_probs: torch.Tensor,  # [γ] exact q_i(x_i)
    vocab_size: int,
    strategy: str,
    temperature: float,
    generator: torch.Generator,
    measure: bool,
) -> RoundResult:
    """Reconstruct each p̃_m, aggregate, verify against p̃; measure against the dense copies."""
    if not answers:
        raise WorkersLost("no worker answered the round")
    w = normalise_weights({name: weights[name] for name in answers})
    idx = {n: torch.from_numpy(np.array(a.payload.topk_indices, dtype=np.int64)) for n, a in answers.items()}
    vals = {n: torch.from_numpy(a.payload.topk_probs.astype(np.float32)) for n, a in answers.items()}
    rebuilt = {n: worker_distribution(idx[n], vals[n], vocab_size, strategy, answers[n].payload.dense) for n in answers}
    p_tilde = aggregate(rebuilt, w)  # [γ + 1, V] float64
    if temperature == 0:
        n_acc, nxt = greedy_verify(drafts, p_tilde)
    else:
        n_acc, nxt = speculative_verify(drafts, q, p_tilde, generator, draft_token_probs=draft_token_probs)
    metrics = None
    dense_refs = {n: a.payload.dense_probs for n, a in answers.items()}
    if measure:
        if all(a.payload.dense for a in answers.values()):
            dense_refs = {n: rebuilt[n] for n in answers}  # the payload is the distribution itself
        if all(v is not None for v in dense_refs.values()):
            dense = {n: v if torch.is_tensor(v) else torch.from_numpy(np.array(v)) for n, v in dense_refs.items()}
            metrics = measure_round(dense, rebuilt, idx, vals, w, q).to_dict()
    return RoundResult(n_acc, nxt, w, metrics)
