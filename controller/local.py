"""``specbed local``: the controller plus N agent subprocesses on loopback."""

from __future__ import annotations

import logging
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from agent.models import LoadedModel, load_model, prepare_model
from controller.collector import TelemetryCollector
from controller.energy import host_summary, read_series
from controller.keys import enrolment_for
from controller.liveness import Liveness
from controller.placement import agent_settings, controller_device, role_dtype
from controller.profiles import Experiment, Prompt, check_token_ids
from controller.records import append_jsonl, check_out_dir, die_with_parent, rewrite_jsonl, split_abandoned
from controller.results import RoundRecord, RunWriter, git_commit, host_facts, summarise, versions
from controller.server import Controller, Job, job_seed
from controller.settings import check_top_k
from controller.shared_energy import attribute_shared, run_energy

log = logging.getLogger(__name__)


def prompt_token_ids(prompt: Prompt, tokenizer: Any) -> list[int]:
    """Token ids of a prompt: given directly, or the chat template applied to its text."""
    if prompt.prompt_token_ids is not None:
        return list(prompt.prompt_token_ids)
    if tokenizer is None:
        raise ValueError(f"prompt {prompt.id!r} has text but the target model has no tokenizer; give prompt_token_ids")
    if getattr(tokenizer, "chat_template", None):
        encoded = tokenizer.apply_chat_template(
            [{"role": "user", "content": prompt.prompt}], add_generation_prompt=True, tokenize=True
        )
        ids = encoded["input_ids"] if hasattr(encoded, "keys") else encoded
        return [int(t) for t in ids]
    return list(tokenizer(prompt.prompt).input_ids)


def decode_text(tokenizer: Any, token_ids: list[int]) -> str:
    if tokenizer is None:
        return " ".join(map(str, token_ids))
    return tokenizer.decode(token_ids, skip_special_tokens=True)


@dataclass
class LocalRun:
    """What a finished local run hands back to the CLI and tests."""

    out_dir: Path
    summary: dict
    outputs: dict[str, list[int]]


def spawn_agent(
    endpoint: str, name: str, log_path: Path, threads: int | None, extra_args: list[str] | None = None
) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "agent", "--connect", endpoint, "--name", name, *(extra_args or [])]
    if threads:
        cmd += ["--threads", str(threads)]
    log_path.parent.mkdir(parents=True, exist_ok=True)
    fh = open(log_path, "ab")
    return subprocess.Popen(
        cmd, stdout=fh, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, preexec_fn=die_with_parent()
    )


class AgentsMissing(RuntimeError):
    """Too few agents connected and became ready in time."""


def run_local(
    experiment: Experiment,
    out_dir: Path,
    agents: int | None = None,
    target: LoadedModel | None = None,
    agent_threads: int | None = 1,
    timeout_s: float = 3600.0,
    on_progress: Callable[[int, int, RoundRecord | None], None] | None = None,
    on_listening: Callable[[str], None] | None = None,
    agent_args: dict[str, list[str]] | None = None,
    bind: str | None = None,
    telemetry_port: int | None = None,
    wait_agents_s: float = 600.0,
    on_status: Callable[[str], None] | None = None,
    keys_dir: str | Path | None = None,
    insecure: bool = False,
) -> LocalRun:
    """Generate for every prompt of ``experiment`` with agent subprocesses.

    ``target`` may be passed to reuse a loaded model (tests do);
    ``on_listening`` is called with the controller's endpoint once it is
    bound; ``agent_args`` adds command-line arguments per agent name
    (``agent-0``, ...).  With ``bind`` (e.g. ``tcp://0.0.0.0:5555``) no
    agent is started: the run waits for ``agents`` remote agents (started by
    ``specbed agents start``) to connect there, at most ``wait_agents_s``
    seconds, and their telemetry comes to ``telemetry_port`` on the same
    address (default: a free port, which agents learn from CONFIGURE).
    ``on_status`` is told what the run waits for.  Writes the run folder and
    returns its summary.  ``out_dir`` must be new or empty (``OutDirNotEmpty``).

    Security (SECURITY.md): the controller accepts only the agents enrolled
    under ``keys_dir`` (``specbed keys``); local agents get throwaway keys
    when none are given; a remote run needs ``keys_dir`` or ``insecure``.
    """
    check_out_dir(out_dir)
    n_agents = agents or experiment.agents
    if experiment.agent_device and experiment.agent_device.threads:
        agent_threads = experiment.agent_device.threads
    gen = experiment.generation
    pair = experiment.models
    prepare_model(pair.drafter)  # convert once here, not in N agents at once
    device = controller_device(experiment)
    target = target or load_model(pair.target, device, role_dtype(experiment, "target"))
    check_token_ids(experiment.prompts, target.vocab_size)  # before anything starts
    check_top_k(experiment, target.vocab_size)
    remote = bind is not None
    names = [f"agent-{i}" for i in range(n_agents)]
    enrolment = enrolment_for(keys_dir, insecure, remote, names)
    writer = RunWriter(out_dir)
    manifest: dict[str, Any] = {
        "kind": "remote" if remote else "local",
        "profile": experiment.to_dict(),
        "agents_requested": n_agents,
        "versions": versions(),
        "git": git_commit(),
        "controller": host_facts(),
        "target": {
            "name": target.name,
            "vocab_size": target.vocab_size,
            "device": target.device,
            "dtype": target.dtype,
        },
        "started_unix_s": time.time(),
        "security": enrolment.describe(),
        "liveness": (experiment.liveness or Liveness()).to_dict(),
    }
    writer.write_json("manifest.json", manifest)

    jobs = [
        Job(p.id, prompt_token_ids(p, target.tokenizer), gen.max_new_tokens, job_seed(gen.seed, p.id))
        for p in experiment.prompts
    ]
    rounds: list[RoundRecord] = []
    outputs: dict[str, list[int]] = {}
    done_count = 0

    def on_round(record: RoundRecord) -> None:
        rounds.append(record)
        writer.round(record)
        if on_progress:
            on_progress(done_count, len(jobs), record)

    def on_output(job: Job) -> None:
        nonlocal done_count
        outputs[job.prompt_id] = list(job.generated)
        writer.output(job.prompt_id, job.prompt_token_ids, job.generated, decode_text(target.tokenizer, job.generated))
        done_count += 1
        if on_progress:
            on_progress(done_count, len(jobs), None)

    rate = experiment.telemetry_rate_hz
    host = bind.rsplit(":", 1)[0] if remote else "tcp://127.0.0.1"
    collector = TelemetryCollector(out_dir, endpoint=f"{host}:{telemetry_port or '*'}", enrolment=enrolment)
    collector.start()
    controller = Controller(
        target,
        pair.drafter,
        gen,
        jobs,
        on_round,
        on_output,
        telemetry={
            # agents connect to this port on the host they reach the controller at
            "port": int(collector.endpoint.rsplit(":", 1)[1]),
            "rate_hz": rate,
            "host_sampler": experiment.telemetry_host_sampler,
        },
        endpoint=bind or "tcp://127.0.0.1:*",
        device=target.device,
        min_agents=n_agents,
        agent_model=agent_settings(experiment),
        links=experiment.links,
        enrolment=enrolment,
        liveness=experiment.liveness,
    )
    own = ControllerTelemetry(collector, rate, experiment.telemetry_host_sampler)
    own.start()
    if on_listening:
        on_listening(controller.endpoint)
    procs = (
        {}
        if remote
        else {
            name: spawn_agent(
                controller.endpoint,
                name,
                out_dir / "logs" / f"{name}.log",
                agent_threads,
                enrolment.agent_args(name) + (agent_args or {}).get(name, []),
            )
            for name in names
        }
    )

    lost: set[str] = set()

    waiting = ""

    def check() -> None:
        nonlocal waiting
        if remote and not controller.started:
            ready = sorted(s.name for s in controller.sessions.values() if s.ready)
            status = f"waiting for agents: {len(ready)}/{controller.min_agents} ready"
            if status != waiting:
                waiting = status
                if on_status:
                    on_status(status)
            if time.monotonic() - t0 > wait_agents_s:
                raise AgentsMissing(
                    f"only {len(ready)} of {controller.min_agents} agents ready after {wait_agents_s:.0f} s "
                    f"(ready: {', '.join(ready) or 'none'}); check `specbed agents status`, the boards' "
                    f"controller_address and that {bind} is reachable from them"
                )
        reap_dead_agents(controller, procs, lost, out_dir / "logs")

    t0 = time.monotonic()
    try:
        controller.serve(timeout_s=timeout_s, check=check)
    finally:
        total_s = time.monotonic() - t0
        say_bye_and_wait(controller, procs)
        controller.close()
        own.stop()
        collector.stop()
        manifest["security"] = enrolment.describe()
        enrolment.close()
        writer.close(prompt_order=[j.prompt_id for j in jobs])
        # a lost agent's prompt ran again from the start: its first attempt's rounds are not this run's
        rounds, discarded = split_abandoned(rounds, {j.prompt_id: j.request_id for j in jobs}, lambda r: r.prompt_id)
        if discarded:
            rewrite_jsonl(out_dir / "rounds.jsonl", [asdict(r) for r in rounds])
            append_jsonl(out_dir / "discarded_rounds.jsonl", [asdict(r) for r in discarded])
        summary = summarise(
            rounds, target.vocab_size, controller.generation_wall_s(), controller.errors, controller.agent_summaries()
        )
        summary["discarded_rounds"] = len(discarded)
        summary["total_wall_s"] = total_s  # including agent start-up and drafter loading
        summary["prompts"] = len(outputs)
        summary["prompts_requested"] = len(jobs)
        summary["prompts_failed"] = list(controller.failed_prompts)
        summary["agent_exit_codes"] = {name: p.returncode for name, p in procs.items()}
        window = (controller.first_request_ns or 0, controller.last_output_ns or 0)
        describes = {"controller": own.describe()}
        describes |= {name: s["drafter"].get("telemetry") for name, s in summary["agents"].items()}
        tokens = summary["tokens_generated"]
        summary["hosts"] = host_summaries(out_dir, rounds, controller, window, tokens, rate, describes)
        summary["energy"] = run_energy(summary["hosts"], tokens)  # every physical device once
        summary["telemetry"] = {"rate_hz": rate, "rows": dict(collector.rows), "errors": dict(collector.errors)}
        writer.write_json("summary.json", summary)
        manifest["agents"] = {name: s["facts"] for name, s in summary["agents"].items()}
        manifest["clock_offsets"] = {name: s["clock"] for name, s in summary["agents"].items()}
        manifest["telemetry"] = {
            "rate_hz": rate,
            "controller": own.describe(),
            **{name: s["drafter"].get("telemetry") for name, s in summary["agents"].items()},
            "power_missing": {h: v["power_missing"] for h, v in summary["hosts"].items() if v["power_missing"]},
        }
        manifest["finished_unix_s"] = time.time()
        writer.write_json("manifest.json", manifest)
    return LocalRun(out_dir, summary, outputs)


def say_bye_and_wait(controller: Controller, procs: dict[str, subprocess.Popen], timeout_s: float = 30.0) -> None:
    """Tell every agent the run is over; wait for the local ones to exit (flushing telemetry), kill stragglers."""
    controller.say_bye("run over")
    for p in procs.values():
        try:
            p.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            p.kill()


def reap_dead_agents(controller: Controller, procs: dict[str, subprocess.Popen], lost: set[str], logs: Path) -> None:
    """Between messages: forget agents whose process exited (their prompts go back to the queue).

    ``lost`` carries the names already reported; raises RuntimeError once every agent is gone.
    """
    dead = {name: p.returncode for name, p in procs.items() if p.poll() is not None}
    for name in sorted(set(dead) - lost):
        lost.add(name)
        log.warning("agent %s exited with code %s; see %s", name, dead[name], logs)
        if not controller.started:
            controller.lower_min_agents()
    for session in list(controller.sessions.values()):
        if session.name in dead:
            controller.agent_lost(session.identity, f"process exited with code {dead[session.name]}")
    if procs and len(dead) == len(procs):
        raise RuntimeError(f"every agent exited ({dead}); see {logs}")


class ControllerTelemetry:
    """The controller host's own sampler, writing straight into the collector."""

    def __init__(self, collector: TelemetryCollector, rate_hz: float, host_sampler: str = "psutil") -> None:
        import os

        from agent.runtime import rows_to_columns
        from agent.telemetry import TelemetryThread, auto_samplers

        self.samplers = auto_samplers(os.getpid(), host_sampler=host_sampler)

        def on_batch(rows: list[dict]) -> None:
            if rows:
                collector.write("controller", *rows_to_columns(rows))

        self.thread = TelemetryThread(self.samplers, "controller", rate_hz=rate_hz, on_batch=on_batch)

    def describe(self) -> list[dict]:
        return self.samplers.describe()  # the missing families too, with reasons

    def start(self) -> None:
        self.thread.start()

    def stop(self) -> None:
        self.thread.stop()


def host_summaries(
    out_dir: Path,
    rounds: list[RoundRecord],
    controller: Controller,
    window: tuple[int, int],
    tokens: int,
    rate: float,
    describes: dict[str, list[dict] | None] | None = None,
) -> dict[str, dict]:
    """Per-host energy, power, memory and phase latency (see controller.energy).

    ``describes`` (host -> its samplers' ``describe()``) names the physical
    device each stream reads; a device read by several hosts is counted once
    and its energy split among them (controller.shared_energy).
    """
    from dataclasses import asdict

    records = [asdict(r) for r in rounds]
    clocks = controller.clocks()
    out, series = {}, {}
    hosts = {"controller": None, **{name: clocks[name] for name in clocks}}
    for host, clock in hosts.items():
        path = out_dir / "telemetry" / f"{host}.csv"
        to_ctrl = clock.to_controller if clock is not None and clock.samples else None
        cols = series[host] = read_series(path, to_ctrl) if path.is_file() else None
        out[host] = host_summary(cols, records, host, host == "controller", window, tokens)
        if cols:
            # The generation window (controller clock) as far as this host
            # was sampling: an agent that joined late is not short of samples.
            a, b = max(window[0], cols["t_ns"][0]), min(window[1], cols["t_ns"][-1])
            out[host]["samples_in_window"] = sum(1 for t in cols["t_ns"] if a <= t <= b)
            out[host]["samples_expected_in_window"] = int(rate * max(b - a, 0) / 1e9) + 1
    attribute_shared(out, series, describes or {}, window, tokens)
    return out
