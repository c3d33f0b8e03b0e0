"""One start or resume of a run: loads the models, starts the agents, runs the points left, writes as it goes."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

from agent.models import LoadedModel, declared_vocab_size, load_model, prepare_model
from controller.collector import TelemetryCollector
from controller.experiment import forks
from controller.experiment.agents import (
    ControllerTelemetry,
    agent_checker,
    say_bye_and_wait,
    spawn_agent,
)
from controller.experiment.baselines import run_baseline
from controller.experiment.folder import Appender, Progress
from controller.experiment.forks import AgentProcess
from controller.experiment.grid import DISTRIBUTED, GridPoint
from controller.experiment.prompts import decode_text, prompt_token_ids
from controller.experiment.summary import point_summary
from controller.keys import enrolment_for
from controller.liveness import Liveness
from controller.placement import agent_device, agent_settings, controller_device, role_dtype
from controller.profiles import Experiment, check_token_ids
from controller.records import split_abandoned
from controller.results import RoundRecord
from controller.serve import Controller, Job, eos_token_ids, job_seed
from controller.settings import check_top_k

log = logging.getLogger(__name__)


@dataclass
class RunHooks:
    """What a caller of the runner may add: arguments per local agent, a listening callback, a time limit.

    ``agent_args`` adds command-line arguments per agent name (``agent-0``,
    ...); ``on_listening`` is called with the controller's endpoint once it
    is bound (before any agent starts); ``timeout_s`` bounds each
    distributed point's serving (``TimeoutError`` past it).
    """

    agent_args: dict[str, list[str]] = field(default_factory=dict)
    on_listening: Callable[[str], None] | None = None
    timeout_s: float | None = None


class Segment:
    """One start or resume of a run (``seg``, its manifest entry, is filled in as it goes)."""

    def __init__(self, experiment, out_dir, grid, todo, done, seg, target, on_progress, hooks=None) -> None:
        self.x: Experiment = experiment
        self.dir: Path = out_dir
        self.grid: list[GridPoint] = grid
        self.todo: list[GridPoint] = todo
        self.done: set[tuple[str, str]] = done
        self.seg = seg
        self.target: LoadedModel | None = target
        self.on_progress = on_progress
        self.hooks: RunHooks = hooks or RunHooks()
        self.rounds = Appender(out_dir / "rounds.jsonl")
        self.outputs = Appender(out_dir / "outputs.jsonl")
        self.device = controller_device(experiment)
        self.colocated_drafter = None  # loaded by the first colocated point (controller.experiment.baselines)
        self.tokens = 0
        self.t_point = 0.0
        self.prompts_done = self.prompts_total = 0
        # per distributed point: its round records, jobs and generation window, for its live summary
        self.point_rounds: dict[str, list[RoundRecord]] = {}
        self.point_jobs: dict[str, list[Job]] = {}
        self.point_window: dict[str, tuple[int, int, float]] = {}
        self.requested: dict[str, int] = {}  # prompts each distributed point of this segment has to run

    # progress
    def _tell(
        self, point: GridPoint | None, prompts_done: int, prompts: int, status: str = "", **event: object
    ) -> None:
        if self.on_progress:
            elapsed = time.monotonic() - self.t_point
            rate = self.tokens / elapsed if point is not None and elapsed > 0 and self.tokens else None
            index = self.grid.index(point) + 1 if point is not None else 0
            progress = Progress(index, len(self.grid), point, prompts_done, prompts, self.tokens, rate, status, **event)
            try:
                self.on_progress(progress)
            except Exception:  # a failing progress display must not end, or hang, the rounds that call it
                failed = self.seg["progress_observer_errors"] = self.seg.get("progress_observer_errors", 0) + 1
                if failed == 1:
                    log.exception("the progress observer failed; the run goes on, and further failures are counted")

    def run(self, bind, telemetry_port, wait_agents_s, agent_threads, keys_dir=None, insecure=False) -> None:
        x = self.x
        t0 = time.monotonic()
        declared = self.target.vocab_size if self.target else declared_vocab_size(x.models.target)
        if declared:  # refused before the target's loading, where its config says the vocabulary
            check_token_ids(x.prompts, declared)
            check_top_k(x, declared)
        self._tell(None, 0, 0, "loading models")
        if not bind and any(p.scheme in DISTRIBUTED for p in self.todo):
            forks.start()  # the local agents' imports, once, beside the models' loading
        prepare_model(x.models.drafter)  # convert once here, not in N agents at once
        target = self.target or load_model(x.models.target, self.device, role_dtype(x, "target"))
        self.target = target
        self.ids = {p.id: prompt_token_ids(p, target.tokenizer) for p in x.prompts}
        self.eos = eos_token_ids(target)
        self.seg["target"] = {
            "name": target.name,
            "vocab_size": target.vocab_size,
            "device": target.device,
            "dtype": target.dtype,
        }
        if target.vocab_size != declared:  # not checked above, or the loaded vocabulary differs; before any agent
            check_token_ids(x.prompts, target.vocab_size)
            check_top_k(x, target.vocab_size)
        distributed = [p for p in self.todo if p.scheme in DISTRIBUTED]
        self.requested = {p.id: sum((p.id, q.id) not in self.done for q in x.prompts) for p in distributed}
        n_local = max((p.agents for p in distributed), default=0)
        self.enrolment = enrolment = enrolment_for(
            keys_dir, insecure, bool(bind), [f"agent-{i}" for i in range(n_local)]
        )
        self.seg["security"] = enrolment.describe()
        self.seg["liveness"] = (x.liveness or Liveness()).to_dict()
        rate = x.telemetry_rate_hz
        host = bind.rsplit(":", 1)[0] if bind else "tcp://127.0.0.1"
        seg_dir = Path("telemetry") / f"segment-{self.seg['segment']}"
        collector = TelemetryCollector(
            self.dir, endpoint=f"{host}:{telemetry_port or '*'}", subdir=str(seg_dir), enrolment=enrolment
        )
        self.seg["telemetry_dir"] = str(seg_dir)
        collector.start()
        own = ControllerTelemetry(collector, rate, x.telemetry_host_sampler)
        own.start()
        self.seg["telemetry"] = {"rate_hz": rate, "controller": own.describe()}
        controller = None
        procs: dict[str, AgentProcess] = {}
        publishers: set[str] = set()  # agents told bye whose telemetry stream is to end
        try:
            if distributed:
                first = distributed[0]
                controller = Controller(
                    target,
                    x.models.drafter,
                    first.generation,
                    [],
                    self.on_round,
                    self.on_output,
                    endpoint=bind or "tcp://127.0.0.1:*",
                    device=self.device,
                    links=x.links,
                    agent_model=agent_settings(x),
                    enrolment=enrolment,
                    liveness=x.liveness,
                    gamma_max=max(p.generation.gamma_max for p in distributed),
                    telemetry={
                        # agents connect to this port on the host they reach the controller at
                        "port": int(collector.endpoint.rsplit(":", 1)[1]),
                        "rate_hz": rate,
                        "host_sampler": x.telemetry_host_sampler,
                    },
                )
                self.seg["controller_endpoint"] = controller.endpoint
                if self.hooks.on_listening:
                    self.hooks.on_listening(controller.endpoint)
                n_agents = max(p.agents for p in distributed)
                if not bind:
                    procs = self._spawn(controller.endpoint, n_agents, agent_threads)
                # Every agent loads its drafter before any point is timed: an agent
                # starting up would otherwise share the CPU with a measured point.
                self._tell(None, 0, 0, f"waiting for {n_agents} agents")
                controller.min_agents = n_agents
                check = self._checker(controller, procs, None, wait_agents_s, bind)
                controller.serve(check=check, until=lambda: controller.ready_count() >= n_agents)
            for point in self.todo:
                self._run_point(point, controller, procs, wait_agents_s, bind)
        finally:
            if controller is not None:
                publishers = {s.name for s in controller.sessions.values() if s.info.get("telemetry")}
                say_bye_and_wait(controller, procs)
                self.seg["agents"] = {
                    name: {k: s[k] for k in ("facts", "drafter", "rounds", "prompts", "clock", "left")}
                    for name, s in controller.agent_summaries().items()
                }
                self.seg["clock_offsets"] = {name: s["clock"] for name, s in self.seg["agents"].items()}
                self.seg["errors"] = dict(controller.errors)
                self.seg["agent_exit_codes"] = {name: p.returncode for name, p in procs.items()}
                controller.close()
            own.stop()
            collector.stop(expect=publishers)
            self.seg["security"] = enrolment.describe()
            enrolment.close()
            self.seg["telemetry"].update({"rows": dict(collector.rows), "errors": dict(collector.errors)})
            for name, s in (self.seg.get("agents") or {}).items():
                self.seg["telemetry"][name] = s["drafter"].get("telemetry")
            self.rounds.close()
            self.outputs.close()
            self.seg["wall_s"] = time.monotonic() - t0
            if controller is not None:
                self._summarise(controller)

    def _summarise(self, controller: Controller) -> None:
        """The live summary of every distributed point this segment ran (``controller.experiment.summary``)."""
        summaries = self.seg["summaries"] = {}
        for pid, requested in self.requested.items():  # a point never reached too: nothing done of what it asked
            records, jobs = self.point_rounds.get(pid, []), self.point_jobs.get(pid, [])
            # a lost agent's prompt ran again from the start: its first attempt's rounds are not the point's
            kept, _ = split_abandoned(records, {j.prompt_id: j.request_id for j in jobs}, lambda r: r.prompt_id)
            first_ns, last_ns, wall_s = self.point_window.get(pid, (0, 0, 0.0))
            finished = sum(1 for j in jobs if (pid, j.prompt_id) in self.done)
            telemetry_dir = self.dir / self.seg["telemetry_dir"]
            summaries[pid] = point_summary(
                kept, controller, telemetry_dir, (first_ns, last_ns), wall_s, self.seg, (finished, requested)
            )
            summaries[pid]["discarded_rounds"] = len(records) - len(kept)
        power_missing = {h: v["power_missing"] for s in summaries.values() for h, v in s["hosts"].items()}
        self.seg["telemetry"]["power_missing"] = {h: why for h, why in power_missing.items() if why}

    def _spawn(self, endpoint: str, n: int, threads: int | None) -> dict[str, AgentProcess]:
        x = self.x
        device = agent_device(x) or "cpu"
        threads = (x.agent_device.threads if x.agent_device and x.agent_device.threads else None) or threads
        procs = {}
        for i in range(n):
            name = f"agent-{i}"
            args = ["--device", device, *self.enrolment.agent_args(name), *self.hooks.agent_args.get(name, [])]
            log_path = self.dir / "logs" / f"segment-{self.seg['segment']}" / f"{name}.log"
            procs[name] = spawn_agent(endpoint, name, log_path, threads, args)
        return procs

    # --- writing ----------------------------------------------------------------------------
    def on_round(self, record: RoundRecord | dict) -> None:
        if isinstance(record, RoundRecord):
            self.point_rounds.setdefault(self.current.id, []).append(record)
        row = asdict(record) if isinstance(record, RoundRecord) else record
        row["point"] = self.current.id
        self.job_agent[row["prompt_id"]] = row["agent"]  # the agent that finished a prompt ran all of it
        self.rounds.write(row)
        self.tokens += row["emitted"]
        self._tell(self.current, self.prompts_done, self.prompts_total, record=row)

    def on_output(self, job: Job) -> None:
        prompt = self.prompt_by_id[job.prompt_id]
        self.outputs.write(
            {
                "point": self.current.id,
                "prompt_id": job.prompt_id,
                "task": prompt.task,
                "seed": job.seed,
                "request_id": job.request_id if job.request_id >= 0 else None,
                "segment": self.seg["segment"],
                "agent": self.job_agent.get(job.prompt_id),
                "prompt_token_ids": job.prompt_token_ids,
                "token_ids": job.generated,
                "tokens": len(job.generated),
                "text": decode_text(self.target.tokenizer, job.generated),
                "started_ns": job.started_ns,
                "done_ns": job.done_ns,
                "point_started_ns": self.point_started_ns,
            }
        )
        self.done.add((self.current.id, job.prompt_id))
        self.prompts_done += 1
        self._tell(self.current, self.prompts_done, self.prompts_total, output=True)

    # --- points ------------------------------------------------------------------------------
    def _run_point(self, point: GridPoint, controller, procs, wait_agents_s, bind=None) -> None:
        x = self.x
        self.prompt_by_id = {p.id: p for p in x.prompts}
        left = [p for p in x.prompts if (point.id, p.id) not in self.done]
        jobs = [Job(p.id, self.ids[p.id], point.generation.max_new_tokens, job_seed(point.seed, p.id)) for p in left]
        self.current = point
        self.prompts_total = len(x.prompts)
        self.prompts_done = len(x.prompts) - len(left)
        self.tokens = 0
        self.t_point = time.monotonic()
        self.point_started_ns = time.monotonic_ns()
        self.job_agent: dict[str, str] = {}
        self._tell(point, self.prompts_done, self.prompts_total)
        if point.scheme in DISTRIBUTED:
            self._distributed(point, jobs, controller, procs, wait_agents_s, bind)
        else:
            run_baseline(self, point, jobs)

    def _checker(self, controller: Controller, procs, point: GridPoint | None, wait_agents_s: float, bind=None):
        def status(text: str) -> None:
            self._tell(point, self.prompts_done if point else 0, self.prompts_total if point else 0, text)

        return agent_checker(controller, procs, self.dir / "logs", wait_agents_s, status, bind)

    def _distributed(self, point: GridPoint, jobs: list[Job], controller: Controller, procs, wait_agents_s, bind):
        live = sum(1 for p in procs.values() if p.poll() is None) if procs else point.agents
        self.point_rounds[point.id], self.point_jobs[point.id] = [], jobs
        controller.begin(point.generation, jobs, min(point.agents, max(live, 1)))
        self.seg.setdefault("configured", {})[point.id] = controller.settings.to_wire()  # what CONFIGURE sends
        try:
            controller.serve(
                timeout_s=self.hooks.timeout_s, check=self._checker(controller, procs, point, wait_agents_s, bind)
            )
        finally:
            first, last = controller.first_request_ns or 0, controller.last_output_ns or 0
            self.point_window[point.id] = (first, last, controller.generation_wall_s())
