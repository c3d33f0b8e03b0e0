"""``specbed run``: every grid point of an experiment, baselines included, durably and resumably.

A run folder holds:

``profile.yaml``   the experiment profile as it was when the run started
                   (``--resume`` reads this copy, not the file in profiles/)
``manifest.json``  the grid (every point in order), versions, hosts, and one
                   entry per segment (a start or a resume of the run)
``rounds.jsonl``   one object per round, with its ``point``; appended and
                   flushed as rounds happen
``outputs.jsonl``  one object per finished (point, prompt): tokens, text,
                   timing; a prompt counts as done once its line is here
``telemetry/segment-N/HOST.csv``  samples of every host, per segment
``summary.csv``, ``report.md``, ``report/*.png``  see ``controller.analysis``

Schemes (ALGORITHMS.md sections 1-2): ``top-k`` is distributed speculative
decoding with top-K payloads (the swept grid); the baselines are
``full-distribution`` (distributed, the dense draft distribution sent in
float32), ``colocated`` (drafter and target in the controller process, no
network) and ``target-only`` (autoregressive decoding on the server).

Resuming: a prompt whose line is in outputs.jsonl is never run again; the
rounds of prompts that were in flight when the run stopped are removed from
rounds.jsonl (counted in the segment's ``discarded_rounds``) and those
prompts run again from the start with the same seeds, so the finished run
has each round exactly once.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import torch

from agent.drafter import Drafter, DraftSettings
from agent.lm import CachedLM, probs_from_logits
from agent.models import LoadedModel, load_model, prepare_model
from controller import hostload
from controller.acceptance import round_expectations
from controller.keys import enrolment_for
from controller.liveness import Liveness
from controller.local import reap_dead_agents, say_bye_and_wait
from controller.placement import agent_settings, role_dtype
from controller.profiles import Experiment, Generation, check_token_ids, load_experiment
from controller.records import discard_abandoned
from controller.results import RoundRecord, git_commit, host_facts, read_jsonl, versions, write_json_atomic
from controller.server import Controller, Job, eos_token_ids, job_seed
from controller.settings import check_top_k
from controller.verify import greedy_verify, speculative_verify

log = logging.getLogger(__name__)

SCHEMES = ("top-k", "full-distribution", "colocated", "target-only")
DISTRIBUTED = ("top-k", "full-distribution")

#: The generation fields that matter to each scheme (the others are not part of its key).
SCHEME_FIELDS = {
    "top-k": ("top_k", "draft_length", "prob_dtype", "index_dtype", "reconstruction", "sampling", "temperature"),
    "full-distribution": ("draft_length", "temperature"),
    "colocated": ("draft_length", "temperature"),
    "target-only": ("temperature",),
}


class RunError(RuntimeError):
    """A run folder that cannot be started or resumed; the message says why."""


@dataclass(frozen=True)
class GridPoint:
    """One setting to measure: a scheme, its generation settings, the agents and a seed."""

    id: str
    config: str  # the id without the seed: repetitions of one configuration share it
    scheme: str
    generation: Generation
    agents: int  # agents drafting (0 for the in-process schemes)
    seed: int

    def params(self) -> dict[str, Any]:
        g = self.generation
        extra = {}
        if self.scheme in DISTRIBUTED:
            extra = {
                "draft_policy": g.draft_policy,
                "uplink_rate_bps": g.uplink_rate_bps,
                "batching": g.batching,
                "bandwidth_policy": g.bandwidth_policy,
            }
        return {
            "scheme": self.scheme,
            **{f: getattr(g, f) for f in SCHEME_FIELDS[self.scheme]},
            **extra,
            "agents": self.agents,
        }


def _point(scheme: str, generation: Generation, agents: int, seed: int) -> GridPoint:
    if scheme == "full-distribution":
        generation = replace(generation, index_dtype="none", prob_dtype="float32", sampling="full")
    if scheme == "colocated":
        # no wire: the verifier sees the drafter's own distribution
        generation = replace(generation, index_dtype="none", prob_dtype="float32")
    if scheme not in DISTRIBUTED:
        agents = 0
    generation = replace(generation, seed=seed)
    keys = [f"{f}={getattr(generation, f)}" for f in SCHEME_FIELDS[scheme]]
    if scheme in DISTRIBUTED:
        # named only when set, so that profiles without them keep short ids
        if generation.draft_policy != "fixed":
            keys.append(f"draft_policy={generation.draft_policy},gamma_max={generation.gamma_max}")
        if generation.uplink_rate_bps is not None:
            keys.append(f"uplink_rate_bps={generation.uplink_rate_bps:g}")
        if generation.bandwidth_policy != "none":
            keys.append(f"bandwidth_policy={generation.bandwidth_policy}")
        if generation.batching != "auto":
            keys.append(f"batching={generation.batching}")
        keys.append(f"agents={agents}")
    config = f"{scheme}:" + ",".join(keys)
    return GridPoint(f"{config},seed={seed}", config, scheme, generation, agents, seed)


def expand_grid(experiment: Experiment) -> list[GridPoint]:
    """Every point of the run, in the order it runs: per seed, the baselines, then the top-K grid.

    The sweep is the Cartesian product of its fields in profile order; a
    baseline is measured once for each distinct setting of the fields it
    depends on (e.g. the full-distribution baseline once per γ and
    temperature), so each top-K point has a baseline to be compared with.
    """
    names = [n for n in experiment.sweep if n != "variants"]
    combos = [dict(zip(names, values, strict=True)) for values in _product([experiment.sweep[n] for n in names])]
    variants = experiment.sweep.get("variants")
    if variants:
        combos = [{**combo, **variant} for combo in combos for variant in variants]
    points: list[GridPoint] = []
    seen: set[str] = set()

    def add(p: GridPoint) -> None:
        if p.id not in seen:
            seen.add(p.id)
            points.append(p)

    for seed in experiment.seeds:
        settings = []
        for combo in combos:
            agents = combo.get("agents", experiment.agents)
            gen = replace(experiment.generation, **{k: v for k, v in combo.items() if k != "agents"})
            settings.append((gen, agents))
        for baseline in ("target-only", "colocated", "full-distribution"):
            if baseline in experiment.baselines:
                for gen, agents in settings:
                    add(_point(baseline, gen, agents, seed))
        if experiment.distributed:
            for gen, agents in settings:
                add(_point("top-k", gen, agents, seed))
    return points


def _product(lists: list[list]) -> list[tuple]:
    import itertools

    return list(itertools.product(*lists)) if lists else [()]


# --- the run folder ----------------------------------------------------------------------------


def _rewrite_jsonl(path: Path, rows: list[dict]) -> None:
    tmp = path.with_suffix(".tmp")
    with open(tmp, "w", encoding="utf-8") as fh:
        for row in rows:
            fh.write(json.dumps(row, separators=(",", ":")) + "\n")
        fh.flush()
        os.fsync(fh.fileno())
    tmp.replace(path)


class Appender:
    """An append-only JSONL file, flushed per line."""

    def __init__(self, path: Path) -> None:
        self.fh = open(path, "a", encoding="utf-8")

    def write(self, obj: dict) -> None:
        self.fh.write(json.dumps(obj, separators=(",", ":")) + "\n")
        self.fh.flush()

    def close(self) -> None:
        self.fh.close()


@dataclass
class Progress:
    """What ``on_progress`` is told: grid point i of n, prompts of the point, tokens and rate."""

    point_index: int
    points: int
    point: GridPoint | None
    prompts_done: int
    prompts: int
    tokens: int
    tokens_per_s: float | None
    status: str = ""
    record: dict | None = None  # the round just recorded (None: a prompt finished or a status changed)
    output: bool = False  # a prompt just finished


# --- the runner ----------------------------------------------------------------------------------


def run_experiment(
    profile: str | None,
    out_dir: Path,
    resume: bool = False,
    bind: str | None = None,
    telemetry_port: int | None = None,
    wait_agents_s: float = 600.0,
    agent_threads: int | None = 1,
    on_progress: Callable[[Progress], None] | None = None,
    target: LoadedModel | None = None,
    stop_after_points: int | None = None,
    keys_dir: str | Path | None = None,
    insecure: bool = False,
) -> Path:
    """Run (or, with ``resume``, finish) an experiment in ``out_dir``; returns the folder.

    Local agents are started here unless ``bind`` is given, in which case
    the run waits for remote agents (``specbed agents start``) to connect to
    ``bind``.  ``stop_after_points`` stops after that many points of this
    segment (tests use it to leave a run unfinished).
    """
    out_dir = Path(out_dir)
    if resume:
        experiment, manifest = _open_for_resume(out_dir, profile)
    else:
        experiment, manifest = _create(out_dir, profile)
    grid = expand_grid(experiment)
    if [p.id for p in grid] != [g["id"] for g in manifest["grid"]]:
        raise RunError(f"{out_dir}: the grid of profile.yaml differs from the manifest's; was the copy edited?")

    outputs, bad_outputs = read_jsonl(out_dir / "outputs.jsonl")
    done = {(o["point"], o["prompt_id"]) for o in outputs}
    rounds, bad_rounds = read_jsonl(out_dir / "rounds.jsonl")
    kept = [r for r in rounds if (r.get("point"), r.get("prompt_id")) in done]
    kept, _ = discard_abandoned(out_dir, kept, outputs)  # a finished prompt's earlier, abandoned attempts
    if bad_outputs or bad_rounds or len(kept) != len(rounds):
        _rewrite_jsonl(out_dir / "rounds.jsonl", kept)
    if bad_outputs:
        _rewrite_jsonl(out_dir / "outputs.jsonl", outputs)
    segment = len(manifest["segments"])
    seg: dict[str, Any] = {
        "segment": segment,
        "started_unix_s": time.time(),
        "discarded_rounds": len(rounds) - len(kept),
        "discarded_partial_lines": bad_rounds + bad_outputs,
        "controller": host_facts(),
        "git": git_commit(),
        "kind": "remote" if bind else "local",
    }
    load_start = hostload.snapshot()
    manifest["segments"].append(seg)
    write_json_atomic(out_dir / "manifest.json", manifest)

    todo = [p for p in grid if any((p.id, q.id) not in done for q in experiment.prompts)]
    if stop_after_points is not None:
        todo = todo[:stop_after_points]
    try:
        if todo:
            _Segment(experiment, out_dir, grid, todo, done, seg, manifest, target, on_progress).run(
                bind, telemetry_port, wait_agents_s, agent_threads, keys_dir, insecure
            )
    finally:
        # prompts redone after their agent was lost: only the attempt that finished counts
        rounds, _ = read_jsonl(out_dir / "rounds.jsonl")
        kept, seg["abandoned_rounds"] = discard_abandoned(out_dir, rounds, read_jsonl(out_dir / "outputs.jsonl")[0])
        if seg["abandoned_rounds"]:
            _rewrite_jsonl(out_dir / "rounds.jsonl", kept)
            seg["discarded_rounds"] += seg["abandoned_rounds"]
        seg["finished_unix_s"] = time.time()
        seg["host_load"] = hostload.over_segment(load_start, hostload.snapshot())
        write_json_atomic(out_dir / "manifest.json", manifest)
    from controller.analysis import write_summary_and_report

    write_summary_and_report(out_dir)
    return out_dir


def _create(out_dir: Path, profile: str | None) -> tuple[Experiment, dict]:
    if profile is None:
        raise RunError("give a profile to run (or --resume DIR)")
    if out_dir.exists() and any(out_dir.iterdir()):
        raise RunError(f"{out_dir} exists and is not empty; use --resume {out_dir} to finish it, or another --out")
    experiment = load_experiment(profile)  # validated before anything is written
    out_dir.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(experiment.path, out_dir / "profile.yaml")
    grid = expand_grid(experiment)
    manifest = {
        "kind": "experiment",
        "experiment": experiment.name,
        "profile_source": experiment.path,
        "profile": experiment.to_dict(),
        "grid": [{"id": p.id, "config": p.config, "seed": p.seed, **p.params()} for p in grid],
        "versions": versions(),
        "started_unix_s": time.time(),
        "segments": [],
    }
    write_json_atomic(out_dir / "manifest.json", manifest)
    for name in ("rounds.jsonl", "outputs.jsonl"):
        (out_dir / name).touch()
    return experiment, manifest


def _open_for_resume(out_dir: Path, profile: str | None) -> tuple[Experiment, dict]:
    manifest_path = out_dir / "manifest.json"
    if not manifest_path.is_file() or not (out_dir / "profile.yaml").is_file():
        raise RunError(f"{out_dir}: no manifest.json and profile.yaml; not a `specbed run` folder")
    manifest = json.loads(manifest_path.read_text())
    if manifest.get("kind") != "experiment":
        raise RunError(f"{out_dir}: written by `specbed {manifest.get('kind')}`, not `specbed run`; cannot resume")
    experiment = load_experiment(str(out_dir / "profile.yaml"))
    if profile is not None and load_experiment(profile).name != experiment.name:
        raise RunError(f"{out_dir} holds experiment {experiment.name!r}, not {profile!r}")
    return experiment, manifest


def _kill_with_parent() -> None:
    """In a local agent: die with the controller, even if it is killed with SIGKILL."""
    try:
        import ctypes

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except OSError:
        pass


class _Segment:
    """One start or resume of a run: loads the models, runs the points left, writes as it goes."""

    def __init__(self, experiment, out_dir, grid, todo, done, seg, manifest, target, on_progress) -> None:
        self.x: Experiment = experiment
        self.dir: Path = out_dir
        self.grid: list[GridPoint] = grid
        self.todo: list[GridPoint] = todo
        self.done: set[tuple[str, str]] = done
        self.seg = seg
        self.manifest = manifest
        self.target = target
        self.on_progress = on_progress
        self.rounds = Appender(out_dir / "rounds.jsonl")
        self.outputs = Appender(out_dir / "outputs.jsonl")
        self.device = experiment.controller_device.torch_device if experiment.controller_device else "cpu"
        self.tokens = 0
        self.t_point = 0.0
        self.prompts_done = self.prompts_total = 0

    # progress
    def _tell(
        self, point: GridPoint | None, prompts_done: int, prompts: int, status: str = "", **event: object
    ) -> None:
        if self.on_progress:
            elapsed = time.monotonic() - self.t_point
            rate = self.tokens / elapsed if point is not None and elapsed > 0 and self.tokens else None
            index = self.grid.index(point) + 1 if point is not None else 0
            progress = Progress(index, len(self.grid), point, prompts_done, prompts, self.tokens, rate, status, **event)
            self.on_progress(progress)

    def run(self, bind, telemetry_port, wait_agents_s, agent_threads, keys_dir=None, insecure=False) -> None:
        from controller.collector import TelemetryCollector
        from controller.local import ControllerTelemetry, prompt_token_ids

        x = self.x
        self._tell(None, 0, 0, "loading models")
        prepare_model(x.models.drafter)
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
        check_token_ids(x.prompts, target.vocab_size)  # before any agent starts
        check_top_k(x, target.vocab_size)
        distributed = [p for p in self.todo if p.scheme in DISTRIBUTED]
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
        procs: dict[str, subprocess.Popen] = {}
        try:
            if distributed:
                first = distributed[0]
                controller = Controller(
                    target,
                    x.models.drafter,
                    first.generation,
                    [],
                    self._on_round,
                    self._on_output,
                    endpoint=bind or "tcp://127.0.0.1:*",
                    device=self.device,
                    links=x.links,
                    agent_model=agent_settings(x),
                    enrolment=enrolment,
                    liveness=x.liveness,
                    gamma_max=max(p.generation.gamma_max for p in distributed),
                    telemetry={
                        "port": int(collector.endpoint.rsplit(":", 1)[1]),
                        "rate_hz": rate,
                        "host_sampler": x.telemetry_host_sampler,
                    },
                )
                self.seg["controller_endpoint"] = controller.endpoint
                n_agents = max(p.agents for p in distributed)
                if not bind:
                    procs = self._spawn(controller.endpoint, n_agents, agent_threads)
                # Every agent loads its drafter before any point is timed: an agent
                # starting up would otherwise share the CPU with a measured point.
                self._tell(None, 0, 0, f"waiting for {n_agents} agents")
                controller.min_agents = n_agents
                check = self._checker(controller, procs, None, wait_agents_s)
                controller.serve(check=check, until=lambda: controller.ready_count() >= n_agents)
            for point in self.todo:
                self._run_point(point, controller, procs, wait_agents_s)
        finally:
            if controller is not None:
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
            collector.stop()
            self.seg["security"] = enrolment.describe()
            enrolment.close()
            self.seg["telemetry"].update({"rows": dict(collector.rows), "errors": dict(collector.errors)})
            self.rounds.close()
            self.outputs.close()

    def _spawn(self, endpoint: str, n: int, threads: int | None) -> dict[str, subprocess.Popen]:
        x = self.x
        device = x.agent_device.torch_device if x.agent_device else "cpu"
        threads = (x.agent_device.threads if x.agent_device and x.agent_device.threads else None) or threads
        procs = {}
        for i in range(n):
            name = f"agent-{i}"
            cmd = [sys.executable, "-m", "agent", "--connect", endpoint, "--name", name, "--device", device]
            cmd += self.enrolment.agent_args(name)
            if threads:
                cmd += ["--threads", str(threads)]
            log_path = self.dir / "logs" / f"segment-{self.seg['segment']}" / f"{name}.log"
            log_path.parent.mkdir(parents=True, exist_ok=True)
            with open(log_path, "ab") as fh:
                procs[name] = subprocess.Popen(
                    cmd, stdout=fh, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, preexec_fn=_kill_with_parent
                )
        return procs

    # --- writing ----------------------------------------------------------------------------
    def _on_round(self, record: RoundRecord | dict) -> None:
        row = asdict(record) if isinstance(record, RoundRecord) else record
        row["point"] = self.current.id
        self.job_agent[row["prompt_id"]] = row["agent"]  # the agent that finished a prompt ran all of it
        self.rounds.write(row)
        self.tokens += row["emitted"]
        self._tell(self.current, self.prompts_done, self.prompts_total, record=row)

    def _on_output(self, job: Job) -> None:
        from controller.local import decode_text

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
    def _run_point(self, point: GridPoint, controller, procs, wait_agents_s) -> None:
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
            self._distributed(point, jobs, controller, procs, wait_agents_s)
        elif point.scheme == "target-only":
            for job in jobs:
                self._target_only(point, job)
        else:
            drafter = Drafter(
                self._drafter_model(),
                DraftSettings(
                    temperature=float(point.generation.temperature),
                    top_k=self.target.vocab_size,
                    sampling="full",
                    prob_dtype="float32",
                    index_dtype="none",
                ),
                self.device,
            )
            for job in jobs:
                self._colocated(point, job, drafter)

    def _checker(self, controller: Controller, procs, point: GridPoint | None, wait_agents_s: float):
        """Between messages: agents that died, and how long the run has waited for agents."""
        lost: set[str] = set()
        t0 = time.monotonic()
        waiting = ""

        def check() -> None:
            nonlocal waiting
            if not controller.started:
                ready = sorted(s.name for s in controller.sessions.values() if s.ready)
                status = f"waiting for agents: {len(ready)}/{controller.min_agents} ready"
                if status != waiting:
                    waiting = status
                    self._tell(point, self.prompts_done if point else 0, self.prompts_total if point else 0, status)
                if time.monotonic() - t0 > wait_agents_s:
                    from controller.local import AgentsMissing

                    raise AgentsMissing(
                        f"only {len(ready)} of {controller.min_agents} agents ready after {wait_agents_s:.0f} s "
                        f"(ready: {', '.join(ready) or 'none'}); see {self.dir / 'logs'}"
                    )
            reap_dead_agents(controller, procs, lost, self.dir / "logs")

        return check

    def _distributed(self, point: GridPoint, jobs: list[Job], controller: Controller, procs, wait_agents_s) -> None:
        live = sum(1 for p in procs.values() if p.poll() is None) if procs else point.agents
        controller.begin(point.generation, jobs, min(point.agents, max(live, 1)))
        self.seg.setdefault("configured", {})[point.id] = controller.settings.to_wire()  # what CONFIGURE sends
        controller.serve(check=self._checker(controller, procs, point, wait_agents_s))

    def _drafter_model(self) -> torch.nn.Module:
        if getattr(self, "_drafter", None) is None:
            loaded = load_model(self.x.models.drafter, self.device, role_dtype(self.x, "drafter"))
            self.seg["colocated_drafter"] = {"name": loaded.name, "device": loaded.device, "dtype": loaded.dtype}
            self._drafter = loaded.model
        return self._drafter

    def _target_only(self, point: GridPoint, job: Job) -> None:
        """Autoregressive decoding with the target alone, one token per step."""
        temperature = point.generation.temperature
        lm = CachedLM(self.target.model, self.device)
        lm.reset()
        gen = torch.Generator().manual_seed(job.seed + 1)
        job.generated = []
        job.started_ns = time.monotonic_ns()
        step, finished = 0, False
        while not finished:
            t0 = time.monotonic_ns()
            seq = job.prompt_token_ids + job.generated
            logits = lm.logits(seq, len(seq) - 1)[-1].float().cpu()  # sampled with a CPU generator
            if temperature == 0:
                token = int(logits.argmax())
            else:
                token = int(torch.multinomial(probs_from_logits(logits, temperature).double(), 1, generator=gen))
            t1 = time.monotonic_ns()
            new, finished = job.extend([token], self.eos)
            self._on_round(
                {
                    "agent": "controller",
                    "prompt_id": job.prompt_id,
                    "round": step,
                    "draft_length": 0,
                    "accepted": 0,
                    "emitted": len(new),
                    "next_kind": "target",
                    "bytes_up": 0,
                    "bytes_down": 0,
                    "tail_mass": None,
                    "tv_distance": None,
                    "phases": {"target_forward": [t0, t1]},
                }
            )
            step += 1
        job.done_ns = time.monotonic_ns()
        self._on_output(job)

    def _colocated(self, point: GridPoint, job: Job, drafter: Drafter) -> None:
        """Drafter and target in this process: speculative decoding with no network and the exact q."""
        g = point.generation
        lm = CachedLM(self.target.model, self.device)
        lm.reset()
        gen = torch.Generator().manual_seed(job.seed + 1)
        drafter.start(job.prompt_token_ids, job.seed)
        job.generated = []
        job.started_ns = time.monotonic_ns()
        rnd, finished = 0, False
        while not finished:
            t0 = time.monotonic_ns()
            draft = drafter.draft(g.draft_length)
            t1 = time.monotonic_ns()
            drafts = torch.from_numpy(draft.token_ids)
            committed = job.prompt_token_ids + job.generated
            # on the CPU: the verifier's generator and the drafts' q live there (a CUDA target included)
            logits = lm.logits(committed + drafts.tolist(), len(committed) - 1).float().cpu()
            t2 = time.monotonic_ns()
            if g.temperature == 0:
                n, nxt = greedy_verify(drafts, logits)
            else:
                p = probs_from_logits(logits, g.temperature)
                q = torch.from_numpy(draft.topk_probs.astype("float32"))  # dense: [γ, V]
                n, nxt = speculative_verify(drafts, q, p, gen, draft_token_probs=torch.from_numpy(draft.draft_probs))
            t3 = time.monotonic_ns()
            expected = round_expectations(p, q, True, "full") if g.temperature > 0 else {}
            drafter.accept(drafts[:n].tolist(), nxt)
            new, finished = job.extend(drafts[:n].tolist() + [nxt], self.eos)
            self._on_round(
                {
                    "agent": "controller",
                    "prompt_id": job.prompt_id,
                    "round": rnd,
                    "draft_length": g.draft_length,
                    "accepted": n,
                    "emitted": len(new),
                    "next_kind": "bonus" if n == g.draft_length else "recovered",
                    "bytes_up": 0,
                    "bytes_down": 0,
                    "tail_mass": 0.0,
                    "tv_distance": None,
                    "phases": {"drafting": [t0, t1], "target_forward": [t1, t2], "verification": [t2, t3]},
                    **expected,
                }
            )
            rnd += 1
        job.done_ns = time.monotonic_ns()
        self._on_output(job)
