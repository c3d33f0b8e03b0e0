"""Sessions and admission: the handshake, clock sync, and which agent gets which prompt.

A module of ``controller/serve/``, the controller in pieces of one concept each; they import downward only.

An agent says HELLO (under the name its CURVE key is enrolled as, and no
name twice), gets CONFIGURE, answers READY, and is clock-synced by a burst
of pings; prompts go out once ``min_agents`` agents are ready and synced,
so every agent of a run takes part from the start.
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Protocol

import torch

from agent.protocol import (
    Configure,
    DraftRequest,
    Hello,
    ProtocolError,
    Ready,
    TimePing,
    TimePong,
)
from agent.settings import Settings
from controller.clocksync import ClockEstimator
from controller.device_verify import session_generator
from controller.policies import BandAllocator, DraftPolicy, Estimates, policy_class
from controller.profiles import Generation
from controller.serve.jobs import Job
from controller.serve.router import Router
from controller.target import StaticTarget, TargetSlot

log = logging.getLogger(__name__)

SYNC_PINGS_START = 8  # clock-offset pings when an agent becomes ready
SYNC_PINGS_BETWEEN = 4  # and between prompts


@dataclass
class Session:
    """One connected agent."""

    identity: bytes
    name: str
    facts: dict
    target: TargetSlot  # its row of the controller's static target cache
    ready: bool = False
    left: str | None = None  # why the controller lost it (said bye, connection closed, process exited)
    left_ns: int | None = None  # when (controller monotonic ns)
    job: Job | None = None
    request_id: int = -1
    round: int = 0
    generator: torch.Generator = field(default_factory=torch.Generator)
    rounds_done: int = 0
    jobs_done: int = 0
    info: dict = field(default_factory=dict)
    clock: ClockEstimator = field(default_factory=ClockEstimator)
    pings_left: int = 0
    ping_seq: int = 0
    last_verified_ns: int = 0  # previous round's verdict ready (controller clock)
    settings: Settings | None = None  # the CONFIGURE settings last sent
    policy: DraftPolicy | None = None  # for the current grid point
    policy_key: tuple | None = None
    estimates: Estimates | None = None
    next_gamma: int = 0  # γ asked for in the last verdict
    staged: tuple | None = None  # (payload, frame bytes, received ns, decoded ns) waiting for its batch
    band_hz: float | None = None  # the agent's share of links.band_hz, as last sent to it
    prev_parts: tuple | None = None  # ((request, round), agent draft start ns, modelled seconds) of the last round
    configures_out: int = 0  # CONFIGUREs sent and not yet answered with READY
    waiting_since_ns: int = 0  # a draft request or verdict sent, its payload not yet in (0: none awaited)
    t_ready: int = 0  # the staged payload's end of uplink (see controller.serve.rounds.InFlight.t_ready)

    def use_policy(self, g: Generation) -> DraftPolicy:
        """The draft policy of the generation, with fresh estimates when it changed."""
        if self.policy is None or self.policy_key != (g.draft_policy, g.draft_length, g.gamma_max):
            self.policy = policy_class(g.draft_policy)(g.draft_length, g.gamma_max)
            self.policy_key = (g.draft_policy, g.draft_length, g.gamma_max)
            self.estimates = Estimates()
        return self.policy


def agent_settings(settings: Settings, links: dict, gen: Generation, name: str) -> Settings:
    """CONFIGURE settings for one agent: the shared ones plus its emulated link, if any."""
    if links or gen.uplink_rate_bps:
        own = links.get("agents", {}).get(name, {})
        up = {**links.get("up", {}), **own.get("up", {})}
        if gen.uplink_rate_bps:
            up["rate_bps"] = float(gen.uplink_rate_bps)
        if "band_hz" in links:
            # the whole band until the bandwidth policy's LINK message gives the agent its share
            up["bandwidth_hz"] = float(links["band_hz"])
        down = {**links.get("down", {}), **own.get("down", {})}
        seed = int(links.get("seed", 0)) + int.from_bytes(hashlib.sha256(name.encode()).digest()[:3], "little")
        delay_s = float(own.get("draft_delay_s") or 0.0)
        settings = replace(settings, link={"up": up, "down": down, "seed": seed}, draft_delay_s=delay_s)
    return settings


class Host(Protocol):
    """What admission reads and changes on the controller that holds it."""

    router: Router
    core: StaticTarget
    device: str
    vocab_size: int
    generation: Generation
    settings: Settings
    links: dict
    sessions: dict[bytes, Session]
    pending: deque[Job]
    failed_by: dict[str, set[str]]
    unfinished: int
    started: bool
    min_agents: int
    max_agents: int | None
    active: set[str] | None
    allocator: BandAllocator | None
    next_request_id: int
    first_request_ns: int | None
    last_output_ns: int | None
    on_output: Callable[[Job], None]

    def agent_lost(self, identity: bytes, why: str) -> None: ...


class Admission:
    """The handshake and clock sync of each agent, and the hand-out of prompts to the ready ones."""

    def __init__(self, host: Host, send_share: Callable[[Session], None]) -> None:
        self.host = host
        self.send_share = send_share  # the agent's band share, before its draft request (controller.serve.rounds)

    def settings_of(self, name: str) -> dict:
        h = self.host
        return agent_settings(h.settings, h.links, h.generation, name)

    def on_hello(self, identity: bytes, msg: Hello) -> None:
        h = self.host
        enrolled = h.router.user_of.get(identity)
        if enrolled is not None and msg.agent != enrolled:
            raise ProtocolError("not_enrolled", f"HELLO as {msg.agent!r} with the key enrolled as {enrolled!r}")
        twin = next((s for s in h.sessions.values() if s.name == msg.agent and s.identity != identity), None)
        if twin is not None:
            raise ProtocolError("duplicate_name", f"agent {msg.agent!r} is already connected")
        if identity in h.sessions:
            h.agent_lost(identity, "said hello again")
        session = Session(identity, msg.agent, msg.facts, h.core.slot())
        h.sessions[identity] = session
        log.info("agent %s connected", msg.agent)
        self.configure(session)

    def configure(self, session: Session) -> None:
        session.settings = self.settings_of(session.name)
        session.band_hz = None  # a (re)configured link starts from the settings' band
        session.configures_out += 1
        hidden = session.settings.hidden  # WISV full-hidden: its payloads carry the negotiated 14th field
        if hidden is not None and hidden.upload == "full":
            self.host.router.hidden_dtype_of[session.identity] = hidden.dtype
        else:
            self.host.router.hidden_dtype_of.pop(session.identity, None)
        self.host.router.send(session.identity, Configure(session.settings.to_wire()))

    def on_ready(self, session: Session, msg: Ready) -> None:
        vocab_size = self.host.vocab_size
        if msg.info.get("vocab_size") != vocab_size:
            raise ProtocolError("unexpected", f"drafter vocabulary {msg.info.get('vocab_size')} != target {vocab_size}")
        session.configures_out = max(0, session.configures_out - 1)
        if session.configures_out:
            return  # a later CONFIGURE is on its way; wait for its READY
        first = not session.info
        session.ready, session.info = True, msg.info
        self.sync_clock(session, SYNC_PINGS_START if first else SYNC_PINGS_BETWEEN)

    def sync_clock(self, session: Session, pings: int) -> None:
        """A burst of pings; the job is assigned when the last pong is in."""
        session.clock.new_burst()
        session.pings_left = pings
        self._ping(session)

    def _ping(self, session: Session) -> None:
        session.ping_seq += 1
        self.host.router.send(session.identity, TimePing(session.ping_seq, time.monotonic_ns()))

    def on_pong(self, session: Session, msg: TimePong, t4: int) -> None:
        if msg.seq != session.ping_seq or session.pings_left <= 0:
            raise ProtocolError("unexpected", f"pong {msg.seq} does not answer ping {session.ping_seq}")
        session.clock.add(msg.t1_ns, msg.t2_ns, msg.t3_ns, t4)
        session.pings_left -= 1
        if session.pings_left > 0:
            self._ping(session)
        else:
            self.assign(session)

    def assign(self, session: Session) -> None:
        h = self.host
        if not h.started:
            synced = [
                s
                for s in h.sessions.values()
                if s.ready and s.pings_left == 0 and s.settings == self.settings_of(s.name)
            ]
            if len(synced) < h.min_agents:
                return
            h.started = True
            chosen = sorted(synced, key=lambda s: s.name)[: h.max_agents or len(synced)]
            h.active = {s.name for s in chosen} if h.max_agents else None
            g = h.generation
            if g.bandwidth_policy != "none":
                h.allocator = BandAllocator(
                    g.bandwidth_policy,
                    h.links["band_hz"],
                    [s.name for s in chosen],
                    {s.name: s.settings.link["up"].get("snr_db") for s in chosen},
                    g.draft_length,
                    g.gamma_max,
                )
            for s in chosen:
                self.assign_one(s)
            return
        self.assign_one(session)

    def ready_count(self) -> int:
        """Agents configured with the current settings, clock-synced and idle."""
        return sum(
            1
            for s in self.host.sessions.values()
            if s.ready and s.pings_left == 0 and s.settings == self.settings_of(s.name)
        )

    def lower_min_agents(self) -> None:
        """An agent that never became ready is gone: wait for one fewer."""
        h = self.host
        h.min_agents = max(1, h.min_agents - 1)
        for s in list(h.sessions.values()):
            if s.ready and s.pings_left == 0 and s.job is None:
                self.assign(s)

    def replace_lost_active(self) -> None:
        """An active agent left: let the other ready agents take its prompts."""
        h = self.host
        if h.active is not None:
            h.active = None
            for s in list(h.sessions.values()):
                if s.ready and s.pings_left == 0 and s.job is None:
                    self.assign_one(s)

    def assign_one(self, session: Session) -> None:
        h = self.host
        if session.job is not None or not session.ready or session.settings != self.settings_of(session.name):
            return
        if h.active is not None and session.name not in h.active:
            return
        # not a prompt this agent already failed (controller.liveness.fail_over)
        job = next((j for j in h.pending if session.name not in h.failed_by.get(j.prompt_id, ())), None)
        if job is None:
            return
        h.pending.remove(job)
        if h.first_request_ns is None:
            # capture the target's graphs for this generation's shapes before its first round
            h.core.warmup([1, len(h.sessions)], h.generation.draft_length + 1)
            h.first_request_ns = time.monotonic_ns()
        job.generated = []
        session.job, session.round, session.last_verified_ns = job, 0, 0
        session.request_id = job.request_id = h.next_request_id
        h.next_request_id += 1
        session.target.reset()
        session.generator = session_generator(h.device, job.seed + 1)
        session.use_policy(h.generation)
        session.next_gamma = h.generation.draft_length
        if h.allocator is not None:
            if h.allocator.add(session.name, session.settings.link["up"].get("snr_db")):
                log.info("agent %s joined the band: equal split among %d agents", session.name, len(h.allocator.names))
            session.next_gamma = h.allocator.gamma(session.name)
            self.send_share(session)
        h.router.send(
            session.identity,
            DraftRequest(session.request_id, job.prompt_id, job.prompt_token_ids, session.next_gamma, job.seed),
        )
        session.waiting_since_ns = time.monotonic_ns()
        job.started_ns = time.monotonic_ns()

    def finish(self, session: Session) -> None:
        """The session's prompt is done: hand it to the runner, sync the agent's clock before the next."""
        h = self.host
        job = session.job
        session.job = None
        session.jobs_done += 1
        session.target.reset()
        h.unfinished -= 1
        job.done_ns = h.last_output_ns = time.monotonic_ns()
        h.on_output(job)
        if h.pending:
            self.sync_clock(session, SYNC_PINGS_BETWEEN)
