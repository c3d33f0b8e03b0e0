"""SpecFed with ``drafter: agent``: the drafter runs on an agent, the controller forwards its drafts to the workers.

The drafting agent is the distributed scheme's agent (``python -m agent``,
or ``specbed agent`` on an edge device with ``--bind``): it connects to a
``controller.serve.Controller`` under the name ``drafter``, is CONFIGUREd,
sends one ``DRAFT_PAYLOAD`` per round and applies each ``VERDICT`` (rolling
its KV cache back), as it does for the distributed scheme.  What changes is
what verifies a staged payload: instead of a target pass,
``SpecFedController`` forwards the round's drafts to the workers as
``SCORE_REQUEST``s (``controller.specfed.WorkerPool``), aggregates their
``SCORE_PAYLOAD``s, verifies against p̃ (``federated_round``) and sends the
verdict back.  The agent sends q_i dense in float32, which is what the
in-process drafter hands the verifier, so both places verify against the
same q and measure the same quantities; its frames are recorded every round
(``drafter_bytes_up``, ``drafter_bytes_down``), apart from the workers'
bytes per scored position.

A drafting agent that exits, closes its connection or sends nothing for
``round_timeout_s`` (``controller.liveness``) ends the run with
``DrafterLost``: the point and the run are recorded as failed, and nothing
waits for the agent to come back.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import torch

from agent.models import LoadedModel
from agent.protocol import Verdict, zmtp_frame_bytes
from controller.experiment.agents import say_bye_and_wait, spawn_agent
from controller.experiment.forks import AgentProcess
from controller.liveness import Liveness
from controller.profiles import Generation
from controller.serve import Controller, Job
from controller.serve.batching import Batcher
from controller.serve.sessions import Session
from controller.specfed import RoundResult, Scored, WorkerPool, WorkersLost, federated_round
from controller.specfed_profile import DRAFTER_AGENT, SpecFedExperiment, SpecFedPoint

log = logging.getLogger(__name__)


class DrafterLost(RuntimeError):
    """The drafting agent is gone (or never became ready), or its rounds cannot go on: the point ends."""


def round_record(
    point: SpecFedPoint,
    prompt_id: str,
    rnd: int,
    result: RoundResult,
    answers: dict[str, Scored],
    emitted: int,
    phases: dict[str, list[int]],
    drafter: str,
    drafter_bytes: tuple[int, int] = (0, 0),
    drafter_uplink_s: float = 0.0,
) -> dict:
    """One line of ``rounds.jsonl``; ``drafter`` says where the round was drafted (``controller`` or ``agent``).

    The workers' traffic is scheme bytes only (``Scored``); ``drafter_bytes``
    (up, down) are the drafting agent's payload and verdict frames (0 when
    the controller drafts: nothing crosses a link).
    """
    g = point.generation
    n = result.n_accepted
    positions = g.draft_length + 1
    up = sum(a.bytes_up for a in answers.values())
    down = sum(a.bytes_down for a in answers.values())
    return {
        "point": point.id,
        "prompt_id": prompt_id,
        "round": rnd,
        "drafter": drafter,
        "draft_length": g.draft_length,
        "accepted": n,
        "emitted": emitted,
        "next_kind": "bonus" if n == g.draft_length else "recovered",
        "workers": sorted(answers),
        "weights": result.weights,
        "bytes_up": up,
        "bytes_down": down,
        "bytes_up_per_position": up / positions / len(answers),
        "bytes_down_per_position": down / positions / len(answers),
        "drafter_bytes_up": drafter_bytes[0],
        "drafter_bytes_down": drafter_bytes[1],
        "uplink_s": {k: float(a.payload.link.get("up_s") or 0.0) for k, a in answers.items()},
        "drafter_uplink_s": drafter_uplink_s,
        "phases": phases,
        "metrics": result.metrics,
    }


def drafter_generation(g: Generation, vocab_size: int) -> Generation:
    """What the drafting agent is CONFIGUREd with: q dense in float32, γ fixed, each payload verified on arrival."""
    return replace(
        g,
        top_k=vocab_size,
        index_dtype="none",
        prob_dtype="float32",
        sampling="full",
        draft_policy="fixed",
        gamma_max=max(g.gamma_max, g.draft_length),
        batching="off",
        bandwidth_policy="none",
    )


class _NoSlot:
    def reset(self) -> None:
        pass

    def release(self) -> None:
        pass


class NoTarget:
    """Stands in for ``controller.target.StaticTarget``: under SpecFed the controller holds no target, the workers score."""

    def slot(self) -> _NoSlot:
        return _NoSlot()

    def warmup(self, batches: list[int], t_new: int) -> None:
        pass


class SpecFedController(Controller):
    """The distributed scheme's controller whose rounds are scored by SpecFed workers instead of a target."""

    def __init__(self, pool: WorkerPool, x: SpecFedExperiment, on_record: Callable[[dict], None], **kwargs) -> None:
        super().__init__(**kwargs)
        self.pool, self.x, self.on_record = pool, x, on_record
        self.point: SpecFedPoint | None = None
        # raised by the serve loop's check: Controller.handle would only log an exception from a round
        self.failure: Exception | None = None
        self.batcher = Batcher(self, self.verify_federated)

    def make_core(self, target: LoadedModel, device: str) -> NoTarget:
        return NoTarget()

    def start_point(self, point: SpecFedPoint, jobs: list[Job]) -> None:
        self.point = point
        self.begin(drafter_generation(point.generation, self.vocab_size), jobs, agents=1)

    def verify_federated(self, batch: list[Session]) -> None:
        for session in batch:
            if self.failure is not None:
                return
            try:
                self._round(session)
            except Exception as exc:  # WorkersLost, or a bug: end the point, do not leave the agent waiting
                log.error("SpecFed round of agent %s failed: %s", session.name, exc)
                self.failure = exc

    def _round(self, session: Session) -> None:
        """Score the staged drafts on the workers, verify against p̃, send the verdict, record the round."""
        msg, frame_len, t_recv, _ = session.staged
        session.staged = None
        job, point, x = session.job, self.point, self.x
        g = point.generation
        drafts = torch.from_numpy(msg.token_ids.astype("int64"))
        sequence = job.prompt_token_ids + job.generated + drafts.tolist()
        t_score = time.monotonic_ns()
        answers = self.pool.score(
            session.request_id, msg.round, sequence, msg.draft_length, x.measure, x.round_timeout_s
        )
        t_scored = time.monotonic_ns()
        result = federated_round(
            answers,
            self.pool.weights,
            drafts,
            torch.from_numpy(msg.topk_probs.astype("float32")),  # [γ, V]: dense, in token order
            torch.from_numpy(msg.draft_probs.astype("float32")),
            self.vocab_size,
            g.reconstruction,
            g.temperature,
            session.generator,
            x.measure,
        )
        t_verified = time.monotonic_ns()
        n = result.n_accepted
        new, done = job.extend(drafts[:n].tolist() + [result.next_token], self.eos_ids)
        verdict = Verdict(msg.request_id, msg.round, n, result.next_token, done, g.draft_length, [t_recv, t_verified])
        bytes_down = self.router.send(session.identity, verdict)
        session.waiting_since_ns = 0 if done else time.monotonic_ns()
        session.round += 1
        session.rounds_done += 1
        to_ctrl, t = session.clock.to_controller, msg.times
        phases = {
            "drafting": [to_ctrl(t[0]), to_ctrl(t[1])],
            "uplink": [to_ctrl(t[2]), t_recv],
            "scoring": [t_score, t_scored],
            "verification": [t_scored, t_verified],
        }
        up_s = float((msg.link or {}).get("up_s") or 0.0)
        record = round_record(point, job.prompt_id, msg.round, result, answers, len(new), phases, "agent")
        record.update(
            drafter_bytes_up=zmtp_frame_bytes(frame_len), drafter_bytes_down=bytes_down, drafter_uplink_s=up_s
        )
        self.on_record(record)
        if done:
            self.admission.finish(session)


def drafter_endpoint(bind: str | None) -> str:
    """The drafting agent's endpoint: beside ``bind`` on the next port (remote agents), else any local port."""
    if not bind:
        return "tcp://127.0.0.1:*"
    host, _, port = bind.rpartition(":")
    return f"{host}:{int(port) + 1}" if port.isdigit() else f"{host}:*"


class AgentDrafting:
    """The drafting agent of a SpecFed run and the controller it drafts for; ``run_point`` per grid point."""

    def __init__(
        self,
        x: SpecFedExperiment,
        drafter: LoadedModel,
        pool: WorkerPool,
        enrolment,  # controller.keys.Enrolment, shared with the workers' socket
        out_dir: Path,
        on_record: Callable[[dict], None],
        on_output: Callable[[Job, SpecFedPoint], None],
        bind: str | None = None,
        threads: int | None = 1,
        wait_s: float = 600.0,
    ) -> None:
        gamma = max(p.generation.draft_length for p in x.grid())
        self.ctrl = SpecFedController(
            pool,
            x,
            on_record,
            target=drafter,
            drafter_spec=x.models.drafter,
            generation=drafter_generation(x.generation, drafter.vocab_size),
            jobs=[],
            on_round=lambda record: None,  # the SpecFed round records are written by on_record
            on_output=lambda job: on_output(job, self.ctrl.point),
            endpoint=drafter_endpoint(bind),
            links=x.links,
            enrolment=enrolment,
            liveness=Liveness(round_timeout_s=x.round_timeout_s),
            gamma_max=gamma,
        )
        self.endpoint = self.ctrl.endpoint
        self.wait_s = wait_s
        self.logs = out_dir / "logs"
        self.procs: dict[str, AgentProcess] = {}
        if not bind:
            args = enrolment.agent_args(DRAFTER_AGENT)
            log_path = self.logs / f"{DRAFTER_AGENT}.log"
            self.procs[DRAFTER_AGENT] = spawn_agent(self.endpoint, DRAFTER_AGENT, log_path, threads, args)

    def check(self, t0: float) -> None:
        """Between messages: a failed round, a drafting agent that exited, was lost or is not ready in time."""
        ctrl = self.ctrl
        if isinstance(ctrl.failure, WorkersLost):
            raise ctrl.failure
        if ctrl.failure is not None:
            raise DrafterLost(f"a round of the drafting agent failed: {ctrl.failure!r}") from ctrl.failure
        proc = self.procs.get(DRAFTER_AGENT)
        if proc is not None and proc.poll() is not None:
            where = self.logs / f"{DRAFTER_AGENT}.log"
            raise DrafterLost(f"the drafting agent exited with code {proc.returncode}; see {where}")
        if ctrl.started and not any(s.name == DRAFTER_AGENT for s in ctrl.sessions.values()):
            why = next((s.left for s in reversed(ctrl.departed) if s.name == DRAFTER_AGENT), "gone")
            raise DrafterLost(f"the drafting agent was lost: {why}")
        if not ctrl.started and time.monotonic() - t0 > self.wait_s:
            raise DrafterLost(f"the drafting agent was not ready after {self.wait_s:.0f} s (at {self.endpoint})")

    def run_point(self, point: SpecFedPoint, jobs: list[Job]) -> dict:
        """Generate every prompt of one point; what the manifest records of it."""
        failed_before = len(self.ctrl.failed_prompts)
        self.ctrl.start_point(point, jobs)
        t0 = time.monotonic()
        self.ctrl.serve(check=lambda: self.check(t0))
        failed = self.ctrl.failed_prompts[failed_before:]  # given up after the agent's ERRORs (controller.liveness)
        return {"failed_prompts": list(failed)} if failed else {}

    def close(self, manifest: dict) -> None:
        """Bye to the agent, its process waited for; its summary, errors and exit code into ``manifest``."""
        ctrl = self.ctrl
        live = {s.name for s in ctrl.sessions.values()}
        for name, proc in self.procs.items():
            if name not in live and proc.poll() is None:  # lost (a stalled process): nothing to say bye to
                proc.kill()
                proc.wait()
        say_bye_and_wait(ctrl, self.procs)
        manifest["drafter_endpoint"] = self.endpoint
        manifest["drafter_agent"] = ctrl.agent_summaries().get(DRAFTER_AGENT)
        manifest["drafter_errors"] = dict(ctrl.errors)
        manifest["drafter_exit_code"] = self.procs[DRAFTER_AGENT].returncode if self.procs else None
        ctrl.close()
