"""The controller's ROUTER: one session per agent, the target, the verifier.

Single-threaded on purpose: one message is handled at a time, so each
agent's target KV cache and RNG are touched by one code path only.  Bad
input from any peer is answered with an ``ERROR`` message and counted;
the loop carries on serving the others.
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections import Counter, deque
from collections.abc import Callable
from dataclasses import dataclass, field, replace

import torch
import zmq
from zmq.utils.monitor import recv_monitor_message

from agent.limits import controller_frame_bytes
from agent.lm import probs_from_logits
from agent.models import LoadedModel
from agent.protocol import (
    Bye,
    Configure,
    DraftPayload,
    DraftRequest,
    Error,
    Hello,
    LinkUpdate,
    Message,
    ProtocolError,
    Ready,
    TimePing,
    TimePong,
    Verdict,
    decode,
    encode,
    zmtp_frame_bytes,
)
from agent.settings import Settings
from controller.acceptance import round_expectations
from controller.clocksync import ClockEstimator
from controller.device_verify import Payload, session_generator, verify_round
from controller.keys import HANDSHAKE_FAILED, Enrolment
from controller.liveness import Liveness, check_echo, fail_over
from controller.policies import BandAllocator, Decision, DraftPolicy, Estimates, policy_class
from controller.profiles import Generation
from controller.results import RoundRecord
from controller.settings import configure_settings
from controller.target import StaticTarget, TargetSlot
from controller.verify import reconstruct, tail_mass

log = logging.getLogger(__name__)

IDLE_POLL_NS = 20_000  # a poll that blocked this long means the controller sat idle

SYNC_PINGS_START = 8  # clock-offset pings when an agent becomes ready
SYNC_PINGS_BETWEEN = 4  # and between prompts
BATCH_WAIT_LIMIT_S = 30.0  # a homogeneous batch verifies without an agent silent this long


def job_seed(seed: int, prompt_id: str) -> int:
    """Per-prompt seed: a prompt's output does not depend on which agent ran it."""
    return int.from_bytes(hashlib.sha256(f"{seed}:{prompt_id}".encode()).digest()[:7], "little")


@dataclass
class Job:
    """One prompt to generate for."""

    prompt_id: str
    prompt_token_ids: list[int]
    max_new_tokens: int
    seed: int
    generated: list[int] = field(default_factory=list)
    started_ns: int = 0  # controller clock: first draft request sent
    done_ns: int = 0  # controller clock: last token verified
    # the request it runs under (rounds carry it); -1 while queued, so the rounds
    # of an attempt abandoned by a lost agent can be told from the final ones
    request_id: int = -1

    def extend(self, new: list[int], eos_ids: set[int]) -> tuple[list[int], bool]:
        """Append a round's tokens, cut at max_new_tokens and after an end-of-sequence token.

        Returns the tokens kept and whether the prompt is done.
        """
        new = new[: self.max_new_tokens - len(self.generated)]
        for i, tok in enumerate(new):
            if tok in eos_ids:
                new = new[: i + 1]
                break
        self.generated.extend(new)
        return new, len(self.generated) >= self.max_new_tokens or bool(new and new[-1] in eos_ids)


def eos_token_ids(model: LoadedModel) -> set[int]:
    """The end-of-sequence ids of a model's generation config (none for the tiny test models)."""
    eos = model.model.generation_config.eos_token_id
    return set(eos if isinstance(eos, list) else [eos] if eos is not None else [])


@dataclass
class _Round:
    """One payload on its way through a batch: what arrived, then what verification made of it."""

    session: Session
    msg: DraftPayload
    frame_len: int
    t_recv: int  # controller ns: frame received
    t_decoded: int  # decoded and staged
    t_batch: int  # its batch's forward pass started
    drafts: torch.Tensor  # [γ] long
    committed: list[int]  # prompt and tokens generated so far
    topk_probs: torch.Tensor  # [γ, K] float32
    t_ready: int = 0  # arrived and readable: uplink ends and queue (controller busy) starts here
    t_target: int = 0  # forward pass done
    t_verified: int = 0
    n_accepted: int = 0
    next_token: int = 0
    expected: dict = field(default_factory=dict)  # controller.acceptance's fields for the RoundRecord


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
    t_ready: int = 0  # the staged payload's end of uplink (see _Round.t_ready)


class Controller:
    """Serves agents on a ROUTER socket until every job is done."""

    def __init__(
        self,
        target: LoadedModel,
        drafter_spec: dict,
        generation: Generation,
        jobs: list[Job],
        on_round: Callable[[RoundRecord], None],
        on_output: Callable[[Job], None],
        endpoint: str = "tcp://127.0.0.1:*",
        device: str = "cpu",
        telemetry: dict | None = None,
        min_agents: int = 1,
        links: dict | None = None,
        agent_model: dict | None = None,
        enrolment: Enrolment | None = None,
        liveness: Liveness | None = None,
        gamma_max: int | None = None,
    ) -> None:
        self.target = target
        self.agent_model = agent_model or {}  # CONFIGURE's device and dtype (controller.placement.agent_settings)
        self.generation = generation
        self.vocab_size = target.vocab_size
        self.device = device
        self.drafter_spec = drafter_spec
        self.core = StaticTarget(target.model, device)  # one static KV cache, a row per session
        self.telemetry = telemetry  # {"port": SUB port, "rate_hz": float, "host_sampler": str}
        self.links = links or {}  # controller.profiles.load_links
        self.settings = self.settings_for(generation)
        self.eos_ids = eos_token_ids(target)
        self.pending: deque[Job] = deque(jobs)
        self.unfinished = len(jobs)
        self.max_agents: int | None = None  # at most this many agents get prompts (None: all)
        self.active: set[str] | None = None  # their names, fixed when the prompts start
        self.on_round = on_round
        self.on_output = on_output
        self.sessions: dict[bytes, Session] = {}
        self.departed: list[Session] = []
        self.errors: Counter[str] = Counter()
        self.next_request_id = 0
        # No prompt is handed out before this many agents are ready and
        # clock-synced, so every agent of a run takes part from the start.
        self.min_agents = min_agents
        self.started = False
        self.first_request_ns: int | None = None  # generation window on the controller's clock
        self.last_output_ns: int | None = None
        self.allocator: BandAllocator | None = None  # the grid point's bandwidth policy, once prompts start
        self.rounds_since_solve = 0
        self.batch_deadline_ns: int | None = None  # verify the staged payloads by then at the latest
        self.idle_until_ns = 0  # the controller last waited for messages until then (a frame's queue starts there)
        self.ctx = zmq.Context.instance()
        self.sock = self.ctx.socket(zmq.ROUTER)
        self.sock.setsockopt(zmq.LINGER, 2000)
        # bounded cost per frame, enrolled peers only, stalled peers dropped (controller.liveness)
        self.enrolment = enrolment
        self.liveness = liveness or Liveness()
        self.user_of: dict[bytes, str] = {}  # agent identity -> the name its CURVE key is enrolled under
        self.failed_prompts: list[str] = []
        self.failed_by: dict[str, set[str]] = {}  # prompt id -> agents that failed it (controller.liveness)
        max_gamma = max(gamma_max or 0, generation.gamma_max, generation.draft_length)
        self.sock.setsockopt(zmq.MAXMSGSIZE, controller_frame_bytes(self.vocab_size, max_gamma))
        self.liveness.apply(self.sock)
        if enrolment is not None:
            enrolment.serve(self.sock)
        # An agent whose connection closes (its process crashed or was killed, locally or on a remote
        # host) is lost at once, and its prompt goes to the others: the ROUTER's monitor reports the
        # closed file descriptor, and each agent's messages say which descriptor they came in on.
        self.monitor = self.sock.get_monitor_socket(zmq.EVENT_DISCONNECTED | HANDSHAKE_FAILED)
        self.fd_of: dict[bytes, int] = {}  # agent identity -> the descriptor of its connection
        self.closed: set[bytes] = set()  # identities whose connection closed: their queued frames are dropped
        self.sock.bind(endpoint)
        self.endpoint = self.sock.getsockopt_string(zmq.LAST_ENDPOINT)

    def settings_for(self, generation: Generation) -> Settings:
        """The CONFIGURE settings of a generation (``controller.settings.configure_settings``)."""
        return configure_settings(generation, self.vocab_size, self.drafter_spec, self.telemetry, self.agent_model)

    def begin(self, generation: Generation, jobs: list[Job], agents: int | None = None) -> None:
        """Start a new set of prompts (a grid point) with the agents already connected.

        Agents whose settings differ are sent ``CONFIGURE`` again (they keep
        a drafter already loaded); every agent re-syncs its clock; prompts
        go out once ``agents`` of them (all connected ones when None) are
        ready, and only those get prompts.
        """
        if not self.done:
            raise RuntimeError("begin() while prompts are unfinished")
        self.generation = generation
        self.settings = self.settings_for(generation)
        self.pending = deque(jobs)
        self.unfinished = len(jobs)
        self.started = False
        self.active = None
        self.max_agents = agents
        self.min_agents = agents or max(1, len(self.sessions))
        self.first_request_ns = self.last_output_ns = None
        self.allocator, self.rounds_since_solve, self.batch_deadline_ns = None, 0, None
        for session in list(self.sessions.values()):
            session.policy = None  # fresh estimates for every grid point
            if session.settings != self.session_settings(session.name):
                session.ready = False
                self._configure(session)
            elif session.ready and session.pings_left == 0:
                self._sync_clock(session, SYNC_PINGS_BETWEEN)
            # else: a CONFIGURE or a clock sync is in flight and ends in _assign

    def session_settings(self, name: str) -> Settings:
        """CONFIGURE settings for one agent: the shared ones plus its emulated link, if any."""
        settings = self.settings
        links, gen = self.links, self.generation
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

    def _policy(self, session: Session):
        g = self.generation
        if session.policy is None or session.policy_key != (g.draft_policy, g.draft_length, g.gamma_max):
            session.policy = policy_class(g.draft_policy)(g.draft_length, g.gamma_max)
            session.policy_key = (g.draft_policy, g.draft_length, g.gamma_max)
            session.estimates = Estimates()
        return session.policy

    # -- sending --------------------------------------------------------
    def _send(self, identity: bytes, message: Message) -> int:
        frame = encode(message)
        self.sock.send_multipart([identity, frame])
        return zmtp_frame_bytes(len(frame))

    def _reply_error(self, identity: bytes, exc: ProtocolError) -> None:
        self.errors[exc.code] += 1
        session = self.sessions.get(identity)
        who = session.name if session else identity.hex()
        log.warning("bad input from %s: %s", who, exc)
        context = {k: v for k, v in exc.context.items() if isinstance(v, (int, str, float))}
        self._send(identity, Error(exc.code, exc.message, context))

    # -- the loop -------------------------------------------------------
    @property
    def done(self) -> bool:
        return self.unfinished == 0

    def serve(
        self,
        timeout_s: float | None = None,
        check: Callable[[], None] | None = None,
        until: Callable[[], bool] | None = None,
    ) -> None:
        """Handle messages until all jobs are done, or ``until()`` holds (or ``timeout_s`` passes).

        ``check`` runs between messages (at least every 100 ms); it may raise
        to abort, or call ``agent_lost`` for an agent that died.
        """
        deadline = time.monotonic() + timeout_s if timeout_s else None
        poller = zmq.Poller()
        poller.register(self.sock, zmq.POLLIN)
        poller.register(self.monitor, zmq.POLLIN)
        finished = until or (lambda: self.done)
        while True:
            if self.batch_deadline_ns is not None and time.monotonic_ns() >= self.batch_deadline_ns:
                self.flush_batch()  # the batch window closes on time, whether or not messages keep coming
            if finished():
                return
            if deadline and time.monotonic() > deadline:
                what = f"{self.unfinished} prompt(s) unfinished" if until is None else "the agents not ready"
                raise TimeoutError(f"{what} after {timeout_s} s")
            if check:
                check()
            self.liveness.check_rounds(self)
            wait_ms = 100
            if self.batch_deadline_ns is not None:
                wait_ms = max(0, min(100, (self.batch_deadline_ns - time.monotonic_ns()) // 1_000_000 + 1))
            t_poll = time.monotonic_ns()
            events = poller.poll(wait_ms)
            if not events or time.monotonic_ns() - t_poll > IDLE_POLL_NS:
                self.idle_until_ns = time.monotonic_ns()  # it was waiting: anything read later arrived after this
            if not events:
                continue
            # closed connections first: a descriptor is reused only after its DISCONNECTED event
            self._closed_connections()
            if not self.sock.poll(0):
                continue
            frames = self.sock.recv_multipart(copy=False)
            t_recv = time.monotonic_ns()
            identity = frames[0].bytes
            if identity in self.closed:
                continue  # sent before its connection closed; the agent is gone
            self.fd_of[identity] = frames[0].get(zmq.SRCFD)
            if self.enrolment is not None and self.enrolment.secure:
                self.user_of[identity] = frames[-1].get("User-Id")
            if len(frames) != 2:
                self._reply_error(identity, ProtocolError("malformed", f"expected one frame, got {len(frames) - 1}"))
                continue
            self.handle(identity, frames[1].bytes, t_recv)

    def _closed_connections(self) -> None:
        """Lose the agents whose connection the ROUTER's monitor reports closed."""
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
                    self.agent_lost(identity, "its connection closed")

    def handle(self, identity: bytes, frame: bytes, t_recv: int) -> None:
        try:
            msg = decode(frame, vocab_size=self.vocab_size)
            session = self.sessions.get(identity)
            if isinstance(msg, Hello):
                self._on_hello(identity, msg)
                return
            if session is None:
                raise ProtocolError("unknown_agent", f"{type(msg).__name__} from an agent that never said hello")
            if isinstance(msg, Ready):
                self._on_ready(session, msg)
            elif isinstance(msg, DraftPayload):
                self._on_payload(session, msg, len(frame), t_recv)
            elif isinstance(msg, TimePong):
                self._on_pong(session, msg, t_recv)
            elif isinstance(msg, Bye):
                self.agent_lost(identity, f"said bye: {msg.reason}")
            elif isinstance(msg, Error):
                self.errors[f"agent_{msg.code}"] += 1
                log.warning("agent %s reports %s: %s", session.name, msg.code, msg.message)
                fail_over(self, session, msg)
            else:
                raise ProtocolError("unexpected", f"{type(msg).__name__} is not sent to a controller")
        except ProtocolError as exc:
            self._reply_error(identity, exc)
            held = self.sessions.get(identity)
            if held is not None and held.job is not None and exc.code not in ("unexpected", "unknown_agent"):
                fail_over(self, held, Error(exc.code, exc.message, {}))  # a refused payload ends its round
        except Exception as exc:  # a bug must not take the other agents down
            log.exception("internal error handling a message")
            self._reply_error(identity, ProtocolError("internal", f"{type(exc).__name__}: {exc}"))

    # -- handlers -------------------------------------------------------
    def _on_hello(self, identity: bytes, msg: Hello) -> None:
        enrolled = self.user_of.get(identity)
        if enrolled is not None and msg.agent != enrolled:
            raise ProtocolError("not_enrolled", f"HELLO as {msg.agent!r} with the key enrolled as {enrolled!r}")
        twin = next((s for s in self.sessions.values() if s.name == msg.agent and s.identity != identity), None)
        if twin is not None:
            raise ProtocolError("duplicate_name", f"agent {msg.agent!r} is already connected")
        if identity in self.sessions:
            self.agent_lost(identity, "said hello again")
        session = Session(identity, msg.agent, msg.facts, self.core.slot())
        self.sessions[identity] = session
        log.info("agent %s connected", msg.agent)
        self._configure(session)

    def _configure(self, session: Session) -> None:
        session.settings = self.session_settings(session.name)
        session.band_hz = None  # a (re)configured link starts from the settings' band
        session.configures_out += 1
        self._send(session.identity, Configure(session.settings.to_wire()))

    def _on_ready(self, session: Session, msg: Ready) -> None:
        if msg.info.get("vocab_size") != self.vocab_size:
            raise ProtocolError(
                "unexpected", f"drafter vocabulary {msg.info.get('vocab_size')} != target {self.vocab_size}"
            )
        session.configures_out = max(0, session.configures_out - 1)
        if session.configures_out:
            return  # a later CONFIGURE is on its way; wait for its READY
        first = not session.info
        session.ready, session.info = True, msg.info
        self._sync_clock(session, SYNC_PINGS_START if first else SYNC_PINGS_BETWEEN)

    def _sync_clock(self, session: Session, pings: int) -> None:
        """A burst of pings; the job is assigned when the last pong is in."""
        session.clock.new_burst()
        session.pings_left = pings
        self._ping(session)

    def _ping(self, session: Session) -> None:
        session.ping_seq += 1
        self._send(session.identity, TimePing(session.ping_seq, time.monotonic_ns()))

    def _on_pong(self, session: Session, msg: TimePong, t4: int) -> None:
        if msg.seq != session.ping_seq or session.pings_left <= 0:
            raise ProtocolError("unexpected", f"pong {msg.seq} does not answer ping {session.ping_seq}")
        session.clock.add(msg.t1_ns, msg.t2_ns, msg.t3_ns, t4)
        session.pings_left -= 1
        if session.pings_left > 0:
            self._ping(session)
        else:
            self._assign(session)

    def _assign(self, session: Session) -> None:
        if not self.started:
            synced = [
                s
                for s in self.sessions.values()
                if s.ready and s.pings_left == 0 and s.settings == self.session_settings(s.name)
            ]
            if len(synced) < self.min_agents:
                return
            self.started = True
            chosen = sorted(synced, key=lambda s: s.name)[: self.max_agents or len(synced)]
            self.active = {s.name for s in chosen} if self.max_agents else None
            g = self.generation
            if g.bandwidth_policy != "none":
                self.allocator = BandAllocator(
                    g.bandwidth_policy,
                    self.links["band_hz"],
                    [s.name for s in chosen],
                    {s.name: s.settings.link["up"].get("snr_db") for s in chosen},
                    g.draft_length,
                    g.gamma_max,
                )
            for s in chosen:
                self._assign_one(s)
            return
        self._assign_one(session)

    def ready_count(self) -> int:
        """Agents configured with the current settings, clock-synced and idle."""
        return sum(
            1
            for s in self.sessions.values()
            if s.ready and s.pings_left == 0 and s.settings == self.session_settings(s.name)
        )

    def lower_min_agents(self) -> None:
        """An agent that never became ready is gone: wait for one fewer."""
        self.min_agents = max(1, self.min_agents - 1)
        for s in list(self.sessions.values()):
            if s.ready and s.pings_left == 0 and s.job is None:
                self._assign(s)

    def replace_lost_active(self) -> None:
        """An active agent left: let the other ready agents take its prompts."""
        if self.active is not None:
            self.active = None
            for s in list(self.sessions.values()):
                if s.ready and s.pings_left == 0 and s.job is None:
                    self._assign_one(s)

    def _assign_one(self, session: Session) -> None:
        if session.job is not None or not session.ready or session.settings != self.session_settings(session.name):
            return
        if self.active is not None and session.name not in self.active:
            return
        # not a prompt this agent already failed (controller.liveness.fail_over)
        job = next((j for j in self.pending if session.name not in self.failed_by.get(j.prompt_id, ())), None)
        if job is None:
            return
        self.pending.remove(job)
        if self.first_request_ns is None:
            # capture the target's graphs for this generation's shapes before its first round
            self.core.warmup([1, len(self.sessions)], self.generation.draft_length + 1)
            self.first_request_ns = time.monotonic_ns()
        job.generated = []
        session.job, session.round, session.last_verified_ns = job, 0, 0
        session.request_id = job.request_id = self.next_request_id
        self.next_request_id += 1
        session.target.reset()
        session.generator = session_generator(self.device, job.seed + 1)
        self._policy(session)
        session.next_gamma = self.generation.draft_length
        if self.allocator is not None:
            if self.allocator.add(session.name, session.settings.link["up"].get("snr_db")):
                log.info(
                    "agent %s joined the band: equal split among %d agents", session.name, len(self.allocator.names)
                )
            session.next_gamma = self.allocator.gamma(session.name)
            self._send_share(session)
        self._send(
            session.identity,
            DraftRequest(session.request_id, job.prompt_id, job.prompt_token_ids, session.next_gamma, job.seed),
        )
        session.waiting_since_ns = time.monotonic_ns()
        job.started_ns = time.monotonic_ns()

    def _on_payload(self, session: Session, msg: DraftPayload, frame_len: int, t_recv: int) -> None:
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
        session.t_ready = min(t_recv, max(sent + held_ns, self.idle_until_ns))
        if self.batch_deadline_ns is None:
            limit = self.generation.batch_window_s if self.batching == "heterogeneous" else BATCH_WAIT_LIMIT_S
            self.batch_deadline_ns = t_decoded + int(limit * 1e9)
        self.flush_batch()

    @property
    def batching(self) -> str:
        """The batching mode in force: the profile's, or the bandwidth policy's when "auto"."""
        mode = self.generation.batching
        if mode != "auto":
            return mode
        return {
            "equal-split": "homogeneous",
            "multispin-homogeneous": "homogeneous",
            "multispin-heterogeneous": "heterogeneous",
        }.get(self.generation.bandwidth_policy, "off")

    def flush_batch(self) -> None:
        """Verify the staged payloads whenever the batching mode says a batch is complete.

        "off": every staged payload, one pass each.  "homogeneous": one pass
        once every agent with a prompt has a payload staged (an agent that
        finishes its prompt is no longer waited for).  "heterogeneous": one
        pass once the batch window after the first staged payload has passed,
        or sooner when every busy agent is staged.
        """
        while True:
            staged = sorted((s for s in self.sessions.values() if s.staged is not None), key=lambda s: s.staged[2])
            if not staged:
                self.batch_deadline_ns = None
                return
            mode = self.batching
            busy = [s for s in self.sessions.values() if s.job is not None]
            complete = mode == "off" or all(s.staged is not None for s in busy)
            late = self.batch_deadline_ns is not None and time.monotonic_ns() >= self.batch_deadline_ns
            if not complete and late:
                if mode == "homogeneous":
                    self.errors["batch_wait_limit"] += 1
                    log.warning(
                        "a homogeneous batch waited %.0f s for %d agent(s); verifying without them",
                        BATCH_WAIT_LIMIT_S,
                        len(busy) - len(staged),
                    )
                complete = True
            if not complete:
                return
            self.batch_deadline_ns = None
            for batch in [[s] for s in staged] if mode == "off" else [staged]:
                self._verify_batch(batch)

    def _verify_batch(self, batch: list[Session]) -> None:
        """One target forward pass over the batch's drafts, then each agent's verification and verdict."""
        g = self.generation
        t_batch = time.monotonic_ns()
        rounds = []
        for session in batch:
            msg, frame_len, t_recv, t_decoded = session.staged
            session.staged = None
            job = session.job
            rounds.append(
                _Round(
                    session,
                    msg,
                    frame_len,
                    t_recv,
                    t_decoded,
                    t_batch,
                    t_ready=session.t_ready,
                    drafts=torch.from_numpy(msg.token_ids.astype("int64")),  # [γ]
                    committed=job.prompt_token_ids + job.generated,
                    topk_probs=torch.from_numpy(msg.topk_probs.astype("float32")),  # [γ, K]
                )
            )
        # the target pass and the ragged batch's verification on the target's device (controller.device_verify)
        strategy = g.reconstruction if g.sampling == "full" else "renormalise"
        verdicts, t_target, t_verified = verify_round(
            self.core,
            [r.session.target for r in rounds],
            [r.committed + r.drafts.tolist() for r in rounds],
            [len(r.committed) - 1 for r in rounds],
            [
                Payload(
                    r.msg.token_ids, r.msg.draft_probs, None if r.msg.dense else r.msg.topk_indices, r.msg.topk_probs
                )
                for r in rounds
            ],
            [r.session.generator for r in rounds],
            g.temperature,
            strategy,
            on_logits=self._expectations(rounds) if g.temperature > 0 else None,
        )
        positions = sum(len(r.drafts) + 1 for r in rounds)
        for r, (n_accepted, next_token) in zip(rounds, verdicts, strict=True):
            r.t_target, r.t_verified, r.n_accepted, r.next_token = t_target, t_verified, n_accepted, next_token
            self._estimate(r, server_ns=t_verified - t_batch, positions=positions)
        if self.allocator is not None:
            self.rounds_since_solve += len(rounds)
            if self.rounds_since_solve >= g.realloc_rounds:
                self.rounds_since_solve = 0
                self.allocator.resolve({s.name: s.estimates for s in self.sessions.values()})
        for r in rounds:
            self._reply(r, len(rounds))

    def _expectations(self, rounds: list[_Round]) -> Callable:
        """Record each round's exact expected acceptance (controller.acceptance) from the pass's logits."""
        g = self.generation

        def measure(logits: torch.Tensor, offsets: list[int]) -> None:
            for b, (r, off) in enumerate(zip(rounds, offsets, strict=True)):
                n = len(r.drafts)
                p = probs_from_logits(logits[b, off : off + n + 1].float(), g.temperature).cpu()  # [γ + 1, V]
                if r.msg.dense:
                    q = r.topk_probs  # [γ, V]: the distribution itself
                elif g.sampling == "top-k":
                    topk_idx = torch.from_numpy(r.msg.topk_indices.astype("int64"))
                    q = reconstruct(topk_idx, r.topk_probs, p.shape[-1], "renormalise")  # [γ, V]
                else:
                    continue  # q is only a reconstruction: nothing exact to record
                r.expected = round_expectations(p, q, r.msg.dense, g.sampling)

        return measure

    def _estimate(self, r: _Round, server_ns: int, positions: int) -> None:
        """Feed the round into the agent's online estimates (the draft and bandwidth policies read them)."""
        msg, session = r.msg, r.session
        t = msg.times
        to_ctrl = session.clock.to_controller
        per_token = msg.token_ids.itemsize + 4 + msg.top_k * (0 if msg.dense else msg.topk_indices.itemsize)
        per_token += msg.top_k * msg.topk_probs.itemsize + (4 if msg.tv is not None else 0)
        link = msg.link or {}
        reply_s = (to_ctrl(t[3]) - session.last_verified_ns) / 1e9 if t[3] and session.last_verified_ns else None
        draft_s, up_s = (t[1] - t[0]) / 1e9, float(link.get("up_s") or 0.0)
        wait_s, server_s = (r.t_batch - r.t_decoded) / 1e9, server_ns / 1e9
        other_s = None
        prev = session.prev_parts
        if prev is not None and prev[0] == (msg.request_id, msg.round - 1):
            # the previous round's cycle, draft start to draft start, less its modelled parts
            other_s = (t[0] - prev[1]) / 1e9 - prev[2]
        session.prev_parts = ((msg.request_id, msg.round), t[0], draft_s + up_s + wait_s + server_s)
        session.estimates.add(
            gamma=msg.draft_length,
            accepted=r.n_accepted,
            t_draft_s=draft_s,
            bytes_up=zmtp_frame_bytes(r.frame_len),
            per_token_bytes=per_token,
            up_s=(r.t_recv - to_ctrl(t[2])) / 1e9,
            reported_rate=link.get("rate_bps"),
            t_verify_s=server_s,
            t_down_s=reply_s,
            verify_positions=positions,
            t_wait_s=wait_s,
            snr_db=link.get("snr_db"),
            t_other_s=other_s,
        )

    def _reply(self, r: _Round, batch_size: int) -> None:
        """Choose the next γ (and band share), send the verdict, record the round, finish the prompt if done."""
        session, msg = r.session, r.msg
        job = session.job
        g = self.generation
        new, done = job.extend(r.drafts[: r.n_accepted].tolist() + [r.next_token], self.eos_ids)
        t = msg.times
        clock = session.clock
        to_ctrl = clock.to_controller
        est = session.estimates
        band_sent = session.band_hz  # the share this round's payload was sent with
        if self.allocator is not None:
            decision = Decision(self.allocator.gamma(session.name), self.allocator.predicted(session.name))
            self._send_share(session)  # before the verdict: the next payload uses it
        else:
            decision = session.policy.decide(est)
        session.next_gamma = max(1, min(int(decision.gamma), g.gamma_max))
        t_reply = time.monotonic_ns()
        verdict = Verdict(
            msg.request_id, msg.round, r.n_accepted, r.next_token, done, session.next_gamma, [r.t_recv, t_reply]
        )
        bytes_down = self._send(session.identity, verdict)
        session.waiting_since_ns = 0 if done else time.monotonic_ns()
        session.round += 1
        session.rounds_done += 1
        phases = {
            "drafting": [to_ctrl(t[0]), to_ctrl(t[1])],
            "packing": [to_ctrl(t[1]), to_ctrl(t[2])],
            "uplink": [to_ctrl(t[2]), max(to_ctrl(t[2]), r.t_ready)],
            "queue": [max(to_ctrl(t[2]), r.t_ready), r.t_recv],
            "decode": [r.t_recv, r.t_decoded],
            "batch_wait": [r.t_decoded, r.t_batch],
            "target_forward": [r.t_batch, r.t_target],
            "verification": [r.t_target, r.t_verified],
        }
        if t[3] and session.last_verified_ns:
            phases["reply"] = [session.last_verified_ns, to_ctrl(t[3])]
            phases["rollback"] = [to_ctrl(t[3]), to_ctrl(t[4])]
        session.last_verified_ns = r.t_verified
        self.on_round(
            RoundRecord(
                agent=session.name,
                prompt_id=job.prompt_id,
                request_id=msg.request_id,
                round=msg.round,
                draft_length=msg.draft_length,
                top_k=msg.top_k,
                accepted=r.n_accepted,
                emitted=len(new),
                next_kind="bonus" if r.n_accepted == msg.draft_length else "recovered",
                bytes_up=zmtp_frame_bytes(r.frame_len),
                bytes_down=bytes_down,
                agent_draft_start_ns=t[0],
                agent_draft_end_ns=t[1],
                agent_send_ns=t[2],
                agent_prev_verdict_recv_ns=t[3],
                agent_prev_rollback_done_ns=t[4],
                ctrl_recv_ns=r.t_recv,
                ctrl_decoded_ns=r.t_decoded,
                ctrl_target_done_ns=r.t_target,
                ctrl_verified_ns=r.t_verified,
                ctrl_reply_ns=t_reply,
                tail_mass=float(tail_mass(r.topk_probs).mean()),
                tv_distance=float(msg.tv.mean()) if msg.tv is not None else None,
                clock_offset_ns=round(clock.offset_at(r.t_recv)) if clock.samples else None,
                phases=phases,
                channel=dict(msg.link or {}) or None,
                next_draft_length=session.next_gamma,
                predicted_goodput=decision.predicted_goodput,
                alpha_estimate=est.alpha,
                batch_size=batch_size,
                band_hz=band_sent,
                **r.expected,
            )
        )
        if done:
            session.job = None
            session.jobs_done += 1
            session.target.reset()
            self.unfinished -= 1
            job.done_ns = self.last_output_ns = time.monotonic_ns()
            self.on_output(job)
            if self.pending:
                self._sync_clock(session, SYNC_PINGS_BETWEEN)

    def _send_share(self, session: Session) -> None:
        """Send the agent its band share when the allocation moved it (by more than 0.5%)."""
        share = self.allocator.share(session.name)
        if session.band_hz and abs(share - session.band_hz) <= 0.005 * session.band_hz:
            return
        self._send(session.identity, LinkUpdate(up={"bandwidth_hz": share}))
        session.band_hz = share

    def agent_lost(self, identity: bytes, why: str) -> None:
        """Forget an agent; its unfinished prompt goes back to the queue (its staged payload is dropped)."""
        session = self.sessions.pop(identity, None)
        if session is None:
            return
        session.target.release()
        self.flush_batch()  # a homogeneous batch no longer waits for it
        log.warning("agent %s left: %s", session.name, why)
        session.left, session.left_ns = why, time.monotonic_ns()
        self.departed.append(session)
        if self.allocator is not None and self.allocator.remove(session.name):
            # the others take up its share: from their next payload on (sent with their next verdict)
            self.rounds_since_solve = 0
            log.info("agent %s left the band: equal split among %d agents", session.name, len(self.allocator.names))
        if session.job is not None:
            session.job.request_id = -1  # its rounds so far are abandoned: the runners discard them
            self.pending.appendleft(session.job)
            if self.active is not None and session.name in self.active:
                self.replace_lost_active()
            for other in list(self.sessions.values()):
                self._assign(other)

    def say_bye(self, reason: str) -> None:
        for identity in list(self.sessions):
            self._send(identity, Bye(reason))

    def agent_summaries(self) -> dict[str, dict]:
        return {
            s.name: {
                "facts": s.facts,
                "drafter": s.info,
                "rounds": s.rounds_done,
                "prompts": s.jobs_done,
                "clock": s.clock.describe(),
                "left": s.left,
                "left_ns": s.left_ns,
            }
            for s in [*self.departed, *self.sessions.values()]
        }

    def clocks(self) -> dict[str, ClockEstimator]:
        return {s.name: s.clock for s in [*self.departed, *self.sessions.values()]}

    def generation_wall_s(self) -> float:
        """Seconds from the first draft request to the last finished prompt."""
        if self.first_request_ns is None or self.last_output_ns is None:
            return 0.0
        return (self.last_output_ns - self.first_request_ns) / 1e9

    def close(self) -> None:
        self.sock.disable_monitor()
        self.monitor.close(linger=0)
        self.sock.close()
