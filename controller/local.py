"""``specbed local`` and ``serve``: a one-point experiment, run by ``specbed run``'s runner.

The point is the profile's generation settings with top-K payloads and N
agents (``controller.experiment.grid.single_point``); the folder is the one
``specbed run`` writes (``controller.experiment.folder``), and the figures
returned are the point's live summary (``controller.experiment.summary``).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from dataclasses import dataclass, fields
from pathlib import Path

from agent.models import LoadedModel
from controller.experiment.folder import Progress
from controller.experiment.grid import single_point
from controller.experiment.runner import run_experiment
from controller.experiment.segment import RunHooks
from controller.profiles import Experiment
from controller.records import check_out_dir
from controller.results import RoundRecord, read_jsonl

log = logging.getLogger(__name__)

_ROUND_FIELDS = {f.name for f in fields(RoundRecord)}


@dataclass
class LocalRun:
    """What a finished local run hands back to the CLI and tests."""

    out_dir: Path
    summary: dict
    outputs: dict[str, list[int]]


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
    """Generate for every prompt of ``experiment`` with local agent processes (forks, ``controller.experiment.forks``).

    ``target`` may be passed to reuse a loaded model (tests do);
    ``on_listening`` is called with the controller's endpoint once it is
    bound; ``agent_args`` adds command-line arguments per agent name
    (``agent-0``, ...).  With ``bind`` (e.g. ``tcp://0.0.0.0:5555``) no
    agent is started: the run waits for ``agents`` remote agents (started by
    ``specbed agents start``) to connect there, at most ``wait_agents_s``
    seconds, and their telemetry comes to ``telemetry_port`` on the same
    address (default: a free port, which agents learn from CONFIGURE).
    ``on_progress`` is told (prompts done, prompts, the round just recorded
    or None); ``on_status`` what the run waits for.  Writes the run folder
    and returns its point's summary.  ``out_dir`` must be new or empty
    (``OutDirNotEmpty``).

    Security (SECURITY.md): the controller accepts only the agents enrolled
    under ``keys_dir`` (``specbed keys``); local agents get throwaway keys
    when none are given; a remote run needs ``keys_dir`` or ``insecure``.
    """
    check_out_dir(out_dir)
    out_dir = Path(out_dir)
    grid = single_point(experiment, agents or experiment.agents)

    told = [""]

    def progress(p: Progress) -> None:
        # on_status hears what the run waits for: agents (the runner also says when it loads models)
        if on_status and p.status.startswith("waiting for agents:") and p.status != told[0]:
            told[0] = p.status
            on_status(p.status)
        if on_progress and p.point is not None and (p.record is not None or p.output):
            record = RoundRecord(**{k: v for k, v in p.record.items() if k in _ROUND_FIELDS}) if p.record else None
            on_progress(p.prompts_done, p.prompts, record)

    hooks = RunHooks(agent_args=dict(agent_args or {}), on_listening=on_listening, timeout_s=timeout_s)
    try:
        run_experiment(
            None,
            out_dir,
            bind=bind,
            telemetry_port=telemetry_port,
            wait_agents_s=wait_agents_s,
            agent_threads=agent_threads,
            on_progress=progress,
            target=target,
            keys_dir=keys_dir,
            insecure=insecure,
            experiment=experiment,
            grid=grid,
            hooks=hooks,
            command="serve" if bind else "local",
        )
    finally:
        if (out_dir / "manifest.json").is_file() and not (out_dir / "summary.json").is_file():
            _write_partial_summary(out_dir)
    outputs = {o["prompt_id"]: o["token_ids"] for o in read_jsonl(out_dir / "outputs.jsonl")[0]}
    return LocalRun(out_dir, local_summary(out_dir), outputs)


def local_summary(run_dir: Path) -> dict:
    """The live summary of a one-point run folder's point (summary.json's only ``points`` entry)."""
    points = json.loads((Path(run_dir) / "summary.json").read_text())["points"]
    if len(points) != 1:
        raise ValueError(f"{run_dir}: {len(points)} points in summary.json, not one")
    return next(iter(points.values()))


def _write_partial_summary(out_dir: Path) -> None:
    """A run that stopped on an error still gets summary.json and report, as far as it got."""
    from controller.analysis import write_summary_and_report

    try:
        write_summary_and_report(out_dir)
    except Exception:  # the run's own error is the one to report
        log.exception("could not write the summary of %s", out_dir)
