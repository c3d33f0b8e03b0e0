"""``specbed run`` (and ``local``, ``serve``): every grid point of an experiment, durably and resumably.

Resuming: a prompt whose line is in outputs.jsonl is never run again; the
rounds of prompts that were in flight when the run stopped are removed from
rounds.jsonl (counted in the segment's ``discarded_rounds``) and those
prompts run again from the start with the same seeds, so the finished run
has each round exactly once.  The folder's files: ``controller.experiment.folder``.
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from agent.models import LoadedModel
from controller import hostload
from controller.experiment.folder import Progress, create, open_for_resume
from controller.experiment.grid import GridPoint, RunError, expand_grid
from controller.experiment.segment import RunHooks, Segment
from controller.profiles import Experiment, ProfileError, load_experiment
from controller.records import discard_abandoned, rewrite_jsonl
from controller.results import git_commit, host_facts, read_jsonl, write_json_atomic


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
    *,
    experiment: Experiment | None = None,
    grid: list[GridPoint] | None = None,
    hooks: RunHooks | None = None,
    command: str = "run",
) -> Path:
    """Run (or, with ``resume``, finish) an experiment in ``out_dir``; returns the folder.

    Local agents are started here unless ``bind`` is given, in which case
    the run waits for remote agents (``specbed agents start``) to connect to
    ``bind``.  ``stop_after_points`` stops after that many points of this
    segment (tests use it to leave a run unfinished).

    ``specbed local`` and ``serve`` pass the ``experiment`` (with the command
    line's overrides) and its one-point ``grid`` (``grid.single_point``)
    instead of a profile, ``hooks`` (``segment.RunHooks``) and their
    ``command`` name; the folder they get is the one ``specbed run`` writes.
    """
    out_dir = Path(out_dir)
    existed = out_dir.exists()
    if resume:
        experiment, manifest = open_for_resume(out_dir, profile)
        grid = expand_grid(experiment)
    else:
        if experiment is None and profile is None:
            raise RunError("give a profile to run (or --resume DIR)")
        experiment = experiment or load_experiment(profile)  # validated before anything is written
        grid = grid or expand_grid(experiment)
        manifest = create(out_dir, experiment, grid, command)
    if [p.id for p in grid] != [g["id"] for g in manifest["grid"]]:
        raise RunError(f"{out_dir}: the grid of profile.yaml differs from the manifest's; was the copy edited?")

    outputs, bad_outputs = read_jsonl(out_dir / "outputs.jsonl")
    done = {(o["point"], o["prompt_id"]) for o in outputs}
    rounds, bad_rounds = read_jsonl(out_dir / "rounds.jsonl")
    kept = [r for r in rounds if (r.get("point"), r.get("prompt_id")) in done]
    kept, _ = discard_abandoned(out_dir, kept, outputs)  # a finished prompt's earlier, abandoned attempts
    if bad_outputs or bad_rounds or len(kept) != len(rounds):
        rewrite_jsonl(out_dir / "rounds.jsonl", kept)
    if bad_outputs:
        rewrite_jsonl(out_dir / "outputs.jsonl", outputs)
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
            Segment(experiment, out_dir, grid, todo, done, seg, target, on_progress, hooks).run(
                bind, telemetry_port, wait_agents_s, agent_threads, keys_dir, insecure
            )
    except ProfileError:
        # refused before anything ran (a prompt id or K the target cannot take): a new folder is removed
        if not resume and not (read_jsonl(out_dir / "rounds.jsonl")[0] or read_jsonl(out_dir / "outputs.jsonl")[0]):
            _remove_new_folder(out_dir, existed)
        raise
    finally:
        # prompts redone after their agent was lost: only the attempt that finished counts
        rounds, _ = read_jsonl(out_dir / "rounds.jsonl")
        kept, seg["abandoned_rounds"] = discard_abandoned(out_dir, rounds, read_jsonl(out_dir / "outputs.jsonl")[0])
        if seg["abandoned_rounds"]:
            rewrite_jsonl(out_dir / "rounds.jsonl", kept)
            seg["discarded_rounds"] += seg["abandoned_rounds"]
        if out_dir.exists():
            seg["finished_unix_s"] = time.time()
            seg["host_load"] = hostload.over_segment(load_start, hostload.snapshot())
            write_json_atomic(out_dir / "manifest.json", manifest)
    from controller.analysis import write_summary_and_report

    write_summary_and_report(out_dir)
    return out_dir


def _remove_new_folder(out_dir: Path, existed: bool) -> None:
    """Remove what this run wrote into ``out_dir`` (and the folder itself, unless it was there, empty, before)."""
    if existed:
        for child in out_dir.iterdir():
            shutil.rmtree(child) if child.is_dir() and not child.is_symlink() else child.unlink()
    else:
        shutil.rmtree(out_dir, ignore_errors=True)
