"""The controller: serves agents on a ROUTER until every prompt is done, wiring the pieces below.

A module of ``controller/serve/``, the controller in pieces of one concept each; they import downward only.

Single-threaded on purpose: one message is handled at a time, so each
agent's target KV cache and RNG are touched by one code path only.  Bad
input from any peer is answered with an ``ERROR`` message and counted;
the loop carries on serving the others.  The pieces: ``router`` (socket,
monitor, frames to messages), ``sessions`` (handshake, clock sync,
admission), ``batching`` (staging and batch windows), ``rounds``
(verification, estimates, verdicts and round records).
"""

from __future__ import annotations

import logging
import time
from collections import Counter, deque
from collections.abc import Callable

from agent.limits import controller_frame_bytes
from agent.models import LoadedModel
from agent.protocol import Bye, DraftPayload, Error, Hello, HiddenAnswer, ProtocolError, Ready, TimePong
from agent.settings import Settings
from controller.clocksync import ClockEstimator
from controller.keys import Enrolment
from controller.liveness import Liveness, fail_over
from controller.policies import BandAllocator
from controller.profiles import Generation
from controller.results import RoundRecord
from controller.serve.batching import Batcher
from controller.serve.jobs import Job, eos_token_ids
from controller.serve.rounds import Rounds
from controller.serve.router import Incoming, Router
from controller.serve.sessions import SYNC_PINGS_BETWEEN, Admission, Session
from controller.settings import configure_settings
from controller.target import StaticTarget
from controller.wisv.semantic import Semantic

log = logging.getLogger(__name__)


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
        self.core = self.make_core(target, device)  # one static KV cache, a row per session
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
        self.liveness = liveness or Liveness()
        self.failed_prompts: list[str] = []
        self.failed_by: dict[str, set[str]] = {}  # prompt id -> agents that failed it (controller.liveness)
        max_gamma = max(gamma_max or 0, generation.gamma_max, generation.draft_length)
        frame_limit_bytes = controller_frame_bytes(self.vocab_size, max_gamma)
        self.router = Router(endpoint, frame_limit_bytes, self.vocab_size, self.liveness, enrolment, self.errors)
        self.endpoint = self.router.endpoint
        self.wisv = Semantic.for_generation(generation, self.core)  # WISV semantic verification (lossy), or None
        self.rounds = Rounds(self)
        self.admission = Admission(self, self.rounds.send_share)
        self.batcher = Batcher(self, self.rounds.verify_batch)

    def make_core(self, target: LoadedModel, device: str) -> StaticTarget:
        """The target's static cache; a controller that verifies elsewhere (controller.specfed_drafting) overrides it."""
        return StaticTarget(target.model, device)

    def settings_for(self, generation: Generation) -> Settings:
        """The CONFIGURE settings of a generation (controller.settings.configure_settings)."""
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
        self.wisv = Semantic.for_generation(generation, self.core)
        self.pending = deque(jobs)
        self.unfinished = len(jobs)
        self.started = False
        self.active = None
        self.max_agents = agents
        self.min_agents = agents or max(1, len(self.sessions))
        self.first_request_ns = self.last_output_ns = None
        self.allocator, self.rounds_since_solve, self.batcher.deadline_ns = None, 0, None
        for session in list(self.sessions.values()):
            session.policy = None  # fresh estimates for every grid point
            if session.settings != self.admission.settings_of(session.name):
                session.ready = False
                self.admission.configure(session)
            elif session.ready and session.pings_left == 0:
                self.admission.sync_clock(session, SYNC_PINGS_BETWEEN)
            # else: a CONFIGURE or a clock sync is in flight and ends in Admission.assign

    def _reply_error(self, identity: bytes, exc: ProtocolError) -> None:
        self.errors[exc.code] += 1
        session = self.sessions.get(identity)
        who = session.name if session else identity.hex()
        log.warning("bad input from %s: %s", who, exc)
        context = {k: v for k, v in exc.context.items() if isinstance(v, (int, str, float))}
        self.router.send(identity, Error(exc.code, exc.message, context))

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
        finished = until or (lambda: self.done)
        while True:
            if self.batcher.deadline_ns is not None and time.monotonic_ns() >= self.batcher.deadline_ns:
                self.batcher.flush()  # the batch window closes on time, whether or not messages keep coming
            if finished():
                return
            if deadline and time.monotonic() > deadline:
                what = f"{self.unfinished} prompt(s) unfinished" if until is None else "the agents not ready"
                raise TimeoutError(f"{what} after {timeout_s} s")
            if check:
                check()
            self.liveness.check_rounds(self)
            wait_ms = 100
            if self.batcher.deadline_ns is not None:
                wait_ms = max(0, min(100, (self.batcher.deadline_ns - time.monotonic_ns()) // 1_000_000 + 1))
            if not self.router.wait(wait_ms):
                continue
            # closed connections first: a descriptor is reused only after its DISCONNECTED event
            for identity in self.router.closed_connections():
                self.agent_lost(identity, "its connection closed")
            incoming = self.router.receive()
            if incoming is not None:
                self.handle(incoming)

    def handle(self, incoming: Incoming) -> None:
        """Dispatch one message to its piece; a refused payload ends the sender's round (controller.liveness)."""
        identity, msg = incoming.identity, incoming.message
        try:
            if incoming.error is not None:
                raise incoming.error
            session = self.sessions.get(identity)
            if isinstance(msg, Hello):
                self.admission.on_hello(identity, msg)
                return
            if session is None:
                raise ProtocolError("unknown_agent", f"{type(msg).__name__} from an agent that never said hello")
            if isinstance(msg, Ready):
                self.admission.on_ready(session, msg)
            elif isinstance(msg, DraftPayload):
                self.batcher.stage(session, msg, incoming.frame_len, incoming.t_recv)
            elif isinstance(msg, TimePong):
                self.admission.on_pong(session, msg, incoming.t_recv)
            elif isinstance(msg, HiddenAnswer):
                self.rounds.on_hidden_answer(session, msg, incoming.frame_len, incoming.t_recv)
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
            ends_round = incoming.ends_round and exc.code not in ("unexpected", "unknown_agent")
            if held is not None and held.job is not None and ends_round:
                fail_over(self, held, Error(exc.code, exc.message, {}))  # a refused payload ends its round
        except Exception as exc:  # a bug must not take the other agents down
            log.exception("internal error handling a message")
            self._reply_error(identity, ProtocolError("internal", f"{type(exc).__name__}: {exc}"))

    def agent_lost(self, identity: bytes, why: str) -> None:
        """Forget an agent; its unfinished prompt goes back to the queue (its staged payload is dropped)."""
        session = self.sessions.pop(identity, None)
        if session is None:
            return
        session.target.release()
        if self.wisv is not None:
            self.wisv.drop(identity)  # a round waiting for its hidden answer
        self.router.hidden_dtype_of.pop(identity, None)
        self.batcher.flush()  # a homogeneous batch no longer waits for it
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
                self.admission.replace_lost_active()
            for other in list(self.sessions.values()):
                self.admission.assign(other)

    def ready_count(self) -> int:
        """Agents configured with the current settings, clock-synced and idle."""
        return self.admission.ready_count()

    def lower_min_agents(self) -> None:
        """An agent that never became ready is gone: wait for one fewer."""
        self.admission.lower_min_agents()

    def say_bye(self, reason: str) -> None:
        for identity in list(self.sessions):
            self.router.send(identity, Bye(reason))

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
        self.router.close()
