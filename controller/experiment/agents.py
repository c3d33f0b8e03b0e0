"""Agents of a run on this machine or remote: start them, wait until they are ready, notice them die, say bye.

Also the controller host's own telemetry sampler, which runs beside them.
"""

from __future__ import annotations

import logging
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

from controller.collector import TelemetryCollector
from controller.experiment import forks
from controller.experiment.forks import AgentProcess
from controller.serve import Controller

log = logging.getLogger(__name__)


def spawn_agent(
    endpoint: str, name: str, log_path: Path, threads: int | None, extra_args: list[str] | None = None
) -> AgentProcess:
    """Start one local agent, ``python -m agent --connect endpoint --name name ...``, logging to ``log_path``.

    A fork of the pre-loaded fork server (``controller.experiment.forks``): it
    dies when this process does, even by SIGKILL.
    """
    argv = ["--connect", endpoint, "--name", name, *(extra_args or [])]
    if threads:
        argv += ["--threads", str(threads)]
    log_path.parent.mkdir(parents=True, exist_ok=True)
    return forks.spawn(argv, log_path)


class AgentsMissing(RuntimeError):
    """Too few agents connected and became ready in time."""


def say_bye_and_wait(controller: Controller, procs: dict[str, AgentProcess], timeout_s: float = 30.0) -> None:
    """Tell every agent the run is over; wait for the local ones to exit (flushing telemetry), kill stragglers.

    A local agent the controller has declared lost (stopped, hung, cut off) and that did not come back
    gets no bye, so it is killed at once instead of being waited for.
    """
    controller.say_bye("run over")
    lost = {s.name for s in controller.departed} - {s.name for s in controller.sessions.values()}
    for name, p in procs.items():
        if name in lost and p.poll() is None:
            log.info("agent %s was lost during the run; killing its process", name)
            p.kill()
    for p in procs.values():
        try:
            p.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            p.kill()


def reap_dead_agents(controller: Controller, procs: dict[str, AgentProcess], lost: set[str], logs: Path) -> None:
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


def agent_checker(
    controller: Controller,
    procs: dict[str, AgentProcess],
    logs: Path,
    wait_agents_s: float,
    on_status: Callable[[str], None],
    bind: str | None = None,
) -> Callable[[], None]:
    """Between messages: agents that died, and how long the run has waited for agents to be ready.

    ``on_status`` is told each new "waiting for agents: i/n ready"; after
    ``wait_agents_s`` seconds without enough ready agents, ``AgentsMissing``.
    """
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
                on_status(status)
            if time.monotonic() - t0 > wait_agents_s:
                where = (
                    f"check `specbed agents status`, the boards' controller_address and that {bind} is reachable "
                    "from them"
                    if bind
                    else f"see {logs}"
                )
                raise AgentsMissing(
                    f"only {len(ready)} of {controller.min_agents} agents ready after {wait_agents_s:.0f} s "
                    f"(ready: {', '.join(ready) or 'none'}); {where}"
                )
        reap_dead_agents(controller, procs, lost, logs)

    return check
