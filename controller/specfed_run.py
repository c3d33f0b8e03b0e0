"""``specbed run`` for ``scheme: specfed`` profiles: one run folder, every grid point, the bounds checked.

The run folder has the layout of ``controller.experiment``'s (profile.yaml,
manifest.json, rounds.jsonl, outputs.jsonl, logs/, summary.csv, report.md,
report/*.png).  The drafter runs in this process (``drafter: controller``)
or in a drafting agent (``drafter: agent``, ``controller.specfed_drafting``);
the workers are local agent processes (``python -m agent --role worker``, forked: ``agent.forked``) or,
with ``bind``, remote ones connecting to it under the profile's worker names.
Each round record carries the weights used, the bytes each way (scheme
traffic only) and, when measured, the paper's quantities per draft position
(``controller.federated``).
"""

from __future__ import annotations

import json
import logging
import shutil
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import torch

from agent.drafter import Drafter, DraftSettings
from agent.limits import controller_frame_bytes
from agent.models import load_model, prepare_model
from agent.protocol import index_dtype_for
from agent.settings import Settings
from controller import hostload
from controller.experiment import Appender, RunError, forks
from controller.experiment.agents import spawn_agent
from controller.experiment.forks import AgentProcess
from controller.experiment.prompts import decode_text, prompt_token_ids
from controller.keys import enrolment_for
from controller.results import git_commit, host_facts, versions, write_json_atomic
from controller.serve import Job, eos_token_ids, job_seed
from controller.specfed import WorkerPool, WorkersLost, federated_round
from controller.specfed_drafting import AgentDrafting, DrafterLost, round_record
from controller.specfed_profile import DRAFTER_AGENT, SpecFedExperiment, SpecFedPoint, load_specfed

log = logging.getLogger(__name__)


def worker_settings(x: SpecFedExperiment, point: SpecFedPoint, name: str, vocab_size: int) -> Settings:
    """CONFIGURE settings of one worker at one grid point."""
    g = point.generation
    spec = next(w.model for w in x.workers if w.name == name)
    links = x.links
    own = links.get("agents", {}).get(name, {})
    up = {**links.get("up", {}), **own.get("up", {})}
    if g.uplink_rate_bps:
        up["rate_bps"] = float(g.uplink_rate_bps)
    down = {**links.get("down", {}), **own.get("down", {})}
    return Settings(
        drafter=spec,  # for a worker: the model it scores with
        vocab_size=vocab_size,
        temperature=float(g.temperature),
        top_k=vocab_size if point.dense else int(g.top_k),
        sampling="full",
        prob_dtype=g.prob_dtype,
        index_dtype="none"
        if point.dense
        else (index_dtype_for(vocab_size) if g.index_dtype == "auto" else g.index_dtype),
        reconstruction=g.reconstruction,
        link={"up": up, "down": down, "seed": int(links.get("seed", 0))} if up or down else None,
    )


class SpecFedRun:
    """One run of a SpecFed profile: workers, the drafter, the grid, the files."""

    def __init__(
        self,
        x: SpecFedExperiment,
        out_dir: Path,
        on_progress: Callable[[str], None] | None,
        keys_dir: str | Path | None = None,  # enrolled workers' keys (``specbed keys``); None: throwaway keys
        insecure: bool = False,
    ) -> None:
        self.x, self.dir = x, out_dir
        self.keys_dir, self.insecure = keys_dir, insecure
        self.on_progress = on_progress or (lambda s: None)
        self.rounds = Appender(out_dir / "rounds.jsonl")
        self.outputs = Appender(out_dir / "outputs.jsonl")
        self.procs: dict[str, AgentProcess] = {}
        self.request_id = 0
        self.drafting: AgentDrafting | None = None  # drafter: agent

    def spawn(self, endpoint: str, threads: int | None) -> None:
        for w in self.x.workers:
            args = ["--role", "worker", *self.enrolment.agent_args(w.name)]
            self.procs[w.name] = spawn_agent(endpoint, w.name, self.dir / "logs" / f"{w.name}.log", threads, args)

    def check(self) -> None:
        for name, proc in self.procs.items():
            if proc.poll() is not None:
                self.pool.lose(name, f"process exited with {proc.returncode}")

    def run(self, bind: str | None, threads: int | None, wait_s: float, manifest: dict) -> None:
        x = self.x
        self.on_progress("loading the drafter")
        if not bind:
            forks.start()  # the local agents' imports, once, beside the drafter's loading
        for w in x.workers:
            prepare_model(w.model)  # converted once here, not by three workers at once
        drafter = load_model(x.models.drafter)
        self.tokenizer = drafter.tokenizer
        self.eos = eos_token_ids(drafter)
        self.vocab = drafter.vocab_size

        self.ids = {p.id: prompt_token_ids(p, drafter.tokenizer) for p in x.prompts}
        peers = [w.name for w in x.workers] + ([DRAFTER_AGENT] if x.drafter == "agent" else [])
        self.enrolment = enrolment_for(self.keys_dir, self.insecure, bind is not None, peers)
        manifest["security"] = self.enrolment.describe()
        gamma = max(p.generation.draft_length for p in x.grid()) + 1  # γ + 1 scored rows
        self.pool = WorkerPool(
            {w.name: w.weight for w in x.workers},
            bind or "tcp://127.0.0.1:*",
            self.enrolment,
            2 * controller_frame_bytes(self.vocab, gamma),  # top-K rows and the dense measurement rows
        )
        self.pool.check = self.check
        manifest["controller_endpoint"] = self.pool.endpoint
        if not bind:
            self.spawn(self.pool.endpoint, threads)
        self.drafter_model = drafter.model
        try:
            if x.drafter == "agent":
                self.drafting = AgentDrafting(
                    x,
                    drafter,
                    self.pool,
                    self.enrolment,
                    self.dir,
                    self.write_round,
                    self.write_output,
                    bind=bind,
                    threads=threads,
                    wait_s=wait_s,
                )
            grid = x.grid()
            for i, point in enumerate(grid):
                expect = sum(1 for w in x.workers if (s := self.pool.sessions.get(w.name)) is None or s.lost is None)
                self.on_progress(f"point {i + 1}/{len(grid)} {point.id}: configuring {expect} workers")
                self.pool.configure(lambda n, p=point: worker_settings(x, p, n, self.vocab), expect, wait_s)
                t0 = time.monotonic()
                try:
                    info = self.run_point(point)
                except (WorkersLost, DrafterLost) as exc:
                    manifest["points"][point.id] = {"wall_s": time.monotonic() - t0, "failed": str(exc)}
                    raise
                manifest["points"][point.id] = {"wall_s": time.monotonic() - t0, **info}
        finally:
            if self.drafting is not None:
                self.drafting.close(manifest)
            self.pool.bye()
            for proc in self.procs.values():
                try:
                    proc.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    proc.kill()
            manifest["workers"] = {
                name: {"weight": s.weight, "lost": s.lost, "settings": s.settings and s.settings.to_wire()}
                for name, s in self.pool.sessions.items()
            }
            manifest["errors"] = dict(self.pool.errors)
            manifest["worker_exit_codes"] = {n: p.returncode for n, p in self.procs.items()}
            self.pool.close()
            manifest["security"] = self.enrolment.describe()  # with the refused peers, if any
            self.enrolment.close()  # the ZAP handler and throwaway keys go with the run
            self.rounds.close()
            self.outputs.close()

    def run_point(self, point: SpecFedPoint) -> dict:
        """Every prompt of one point, drafted here or by the drafting agent; the manifest's extra fields."""
        if self.drafting is None:
            for prompt in self.x.prompts:
                self.run_prompt(point, prompt.id)
            return {}
        g = point.generation
        jobs = [Job(p.id, self.ids[p.id], g.max_new_tokens, job_seed(point.seed, p.id)) for p in self.x.prompts]
        return self.drafting.run_point(point, jobs)

    def write_round(self, record: dict) -> None:
        self.rounds.write(record)
        self.on_progress(
            f"{record['point']} {record['prompt_id']}: round {record['round']}, {record['drafter']} drafted"
        )

    def write_output(self, job: Job, point: SpecFedPoint) -> None:
        """One line of ``outputs.jsonl``: a finished prompt."""
        text = decode_text(self.tokenizer, job.generated) if self.tokenizer is not None else None
        self.outputs.write(
            {
                "point": point.id,
                "prompt_id": job.prompt_id,
                "seed": job.seed,
                "prompt_token_ids": job.prompt_token_ids,
                "token_ids": job.generated,
                "tokens": len(job.generated),
                "text": text,
                "started_ns": job.started_ns,
                "done_ns": job.done_ns,
            }
        )

    def run_prompt(self, point: SpecFedPoint, prompt_id: str) -> None:
        g, x = point.generation, self.x
        self.request_id += 1
        job = Job(prompt_id, self.ids[prompt_id], g.max_new_tokens, job_seed(point.seed, prompt_id))
        settings = DraftSettings(float(g.temperature), self.vocab, "full", "float32", "none")
        drafter = Drafter(self.drafter_model, settings)
        drafter.start(job.prompt_token_ids, job.seed)
        gen = torch.Generator().manual_seed(job.seed + 1)
        measure = x.measure
        job.started_ns = time.monotonic_ns()
        rnd, finished = 0, False
        while not finished:
            t0 = time.monotonic_ns()
            draft = drafter.draft(g.draft_length)
            t1 = time.monotonic_ns()
            committed = job.prompt_token_ids + job.generated
            sequence = committed + draft.token_ids.tolist()
            answers = self.pool.score(self.request_id, rnd, sequence, g.draft_length, measure, x.round_timeout_s)
            t2 = time.monotonic_ns()
            drafts = torch.from_numpy(draft.token_ids)
            result = federated_round(
                answers,
                self.pool.weights,
                drafts,
                torch.from_numpy(draft.topk_probs.astype("float32")),
                torch.from_numpy(draft.draft_probs),
                self.vocab,
                g.reconstruction,
                g.temperature,
                gen,
                measure,
            )
            t3 = time.monotonic_ns()
            n = result.n_accepted
            drafter.accept(drafts[:n].tolist(), result.next_token)
            new, finished = job.extend(drafts[:n].tolist() + [result.next_token], self.eos)
            phases = {"drafting": [t0, t1], "scoring": [t1, t2], "verification": [t2, t3]}
            self.write_round(round_record(point, prompt_id, rnd, result, answers, len(new), phases, "controller"))
            rnd += 1
        job.done_ns = time.monotonic_ns()
        self.write_output(job, point)


def run_specfed(
    profile: str,
    out_dir: Path,
    bind: str | None = None,
    wait_workers_s: float = 600.0,
    worker_threads: int | None = 1,
    on_progress: Callable[[str], None] | None = None,
    keys_dir: str | Path | None = None,
    insecure: bool = False,
) -> Path:
    """Run a SpecFed profile into ``out_dir`` (new or empty) and write its summary and report."""
    out_dir = Path(out_dir)
    if out_dir.exists() and any(out_dir.iterdir()):
        raise RunError(f"{out_dir} exists and is not empty; give another --out (SpecFed runs do not resume)")
    x = load_specfed(profile)
    out_dir.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(x.path, out_dir / "profile.yaml")
    for name in ("rounds.jsonl", "outputs.jsonl"):
        (out_dir / name).touch()
    manifest = {
        "kind": "experiment",
        "scheme": "specfed",
        "experiment": x.name,
        "profile_source": x.path,
        "grid": [{"id": p.id, **p.params()} for p in x.grid()],
        "prompts": [p.id for p in x.prompts],
        "versions": versions(),
        "controller": host_facts(),
        "git": git_commit(),
        "drafter": x.drafter,
        "started_unix_s": time.time(),
        "points": {},
    }
    write_json_atomic(out_dir / "manifest.json", manifest)
    load_start = hostload.snapshot()
    try:
        SpecFedRun(x, out_dir, on_progress, keys_dir, insecure).run(bind, worker_threads, wait_workers_s, manifest)
    except (WorkersLost, DrafterLost) as exc:
        manifest["failed"] = str(exc)
        raise RuntimeError(f"SpecFed run stopped: {exc}") from None
    finally:
        manifest["finished_unix_s"] = time.time()
        manifest["host_load"] = hostload.over_segment(load_start, hostload.snapshot())
        write_json_atomic(out_dir / "manifest.json", manifest)
    from controller.specfed_report import write_specfed_report

    write_specfed_report(out_dir)
    return out_dir


def read_manifest(out_dir: Path) -> dict:
    return json.loads((Path(out_dir) / "manifest.json").read_text())
