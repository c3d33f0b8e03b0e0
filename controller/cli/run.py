"""``specbed run PROFILE``: every grid point and baseline of an experiment, resumable."""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
import time
from pathlib import Path

from controller.cli.common import add_command, add_json_argument, add_out_argument, add_profile_argument, fail
from controller.cli.live_options import add_live_arguments, observing


def register(sub) -> None:
    run = add_command(
        sub,
        "run",
        help="run an experiment profile: every grid point and baseline, resumable",
        description="Run every grid point of an experiment profile (its sweep, repetitions and baselines) with "
        "local agents (started for you) or the agents of a testbed (--testbed / --bind), writing rounds and "
        "outputs as they happen. An interrupted run is finished with --resume DIR: finished prompts are kept, "
        "prompts in flight are redone. Writes manifest.json, rounds.jsonl, outputs.jsonl, summary.csv, "
        "report.md and report/*.png.",
        epilog="examples:\n  specbed run k-sweep\n  specbed run profiles/experiments/k-sweep.yaml --out results/k1\n"
        "  specbed run --resume results/k1\n  specbed run k-sweep --testbed lab",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_profile_argument(run, None, "")
    add_out_argument(run, "results folder (default: results/<timestamp>-<experiment>)")
    run.add_argument(
        "--resume", default=None, metavar="DIR", help="finish the run in DIR (its own profile copy is used)"
    )
    run.add_argument(
        "--testbed", default=None, help="use the agents of this testbed profile (binds their controller_address)"
    )
    run.add_argument("--keys", default=None, help="keys folder from `specbed keys` (needed with remote agents)")
    run.add_argument("--insecure", action="store_true", help="no CURVE: anyone may connect (debugging only)")
    run.add_argument(
        "--bind", default=None, help="wait for remote agents at this endpoint instead of starting local ones"
    )
    run.add_argument("--telemetry-port", type=int, default=5556, help="telemetry port for remote agents (default 5556)")
    run.add_argument("--wait-agents", type=float, default=600.0, help="seconds to wait for agents per grid point")
    add_json_argument(run)
    add_live_arguments(run)
    run.set_defaults(func=cmd_run)


def cmd_run(args: argparse.Namespace) -> int:
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from agent.models import ModelError
    from controller.cli.common import profile_of
    from controller.cli.tables import print_run_summary
    from controller.experiment import RunError, expand_grid, run_experiment
    from controller.experiment.agents import AgentsMissing
    from controller.keys import KeysError
    from controller.profiles import ProfileError, load_experiment, load_testbed

    try:
        profile = profile_of(args)
    except ValueError as exc:
        return fail(str(exc))
    if profile is None and args.resume is None:
        return fail("give a PROFILE to run, or --resume DIR to finish a run")
    if args.resume and args.out:
        return fail("--out and --resume both name the run folder; give one")
    bind = args.bind
    from controller.specfed_profile import is_specfed

    if args.resume and is_specfed(str(Path(args.resume) / "profile.yaml")):
        return fail(f"{args.resume} is a SpecFed run; SpecFed runs do not resume, start a new one")
    if not args.resume and is_specfed(profile):
        from controller.specfed_cli import cmd_run_specfed

        args.profile = profile  # the SpecFed runner reads args.profile
        return cmd_run_specfed(args)
    try:
        experiment = load_experiment(str(Path(args.resume) / "profile.yaml") if args.resume else profile)
        grid = expand_grid(experiment)
        if args.testbed:
            testbed = load_testbed(args.testbed)
            bind = bind or _testbed_bind(testbed)
            need = max((p.agents for p in grid), default=0)
            if need > len(testbed.agents):
                return fail(f"the experiment needs {need} agents, testbed {testbed.name} has {len(testbed.agents)}")
    except ProfileError as exc:
        return fail(str(exc))
    if args.insecure:
        print("warning: --insecure: agents are not authenticated and traffic is in the clear", file=sys.stderr)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    out_dir = Path(args.resume or args.out or Path("results") / f"{stamp}-{experiment.name}")
    prompts = len(experiment.prompts)
    print(
        f"experiment {experiment.name}: {len(grid)} grid points x {prompts} prompts, models "
        f"{experiment.models.name}, {'remote agents at ' + bind if bind else 'local agents'}; results in {out_dir}",
        file=sys.stderr if args.json else sys.stdout,
    )
    progress = Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[info]}"),
        TimeElapsedColumn(),
        disable=args.json,
    )
    with observing(args, extra=progress) as (observers, panel), contextlib.nullcontext() if panel.enabled else progress:
        points = progress.add_task("grid points", total=len(grid), info="loading models")
        current = progress.add_task("prompts", total=prompts, info="")

        def on_progress(p) -> None:
            if p.record is not None:
                observers.on_round(p.record)
            elif p.output:
                observers.on_output()
            if p.point is None:
                progress.update(points, info=p.status)
                return
            progress.update(points, completed=p.point_index - 1, info=p.point.config)
            rate = f"{p.tokens} tokens, {p.tokens_per_s:.1f} tok/s" if p.tokens_per_s else p.status
            progress.update(current, completed=p.prompts_done, total=p.prompts, info=rate)

        try:
            run_experiment(
                None if args.resume else profile,
                out_dir,
                resume=bool(args.resume),
                bind=bind,
                telemetry_port=args.telemetry_port if bind else None,
                wait_agents_s=args.wait_agents,
                on_progress=on_progress,
                keys_dir=args.keys,
                insecure=args.insecure,
            )
        except (RunError, ProfileError, ModelError, KeysError) as exc:
            progress.stop()
            return fail(str(exc))
        except (RuntimeError, TimeoutError, AgentsMissing) as exc:
            progress.stop()
            print(f"error: {exc}", file=sys.stderr)
            print(f"what was recorded is in {out_dir}; finish with: specbed run --resume {out_dir}", file=sys.stderr)
            return 1
        except KeyboardInterrupt:
            progress.stop()
            print(f"interrupted; finish with: specbed run --resume {out_dir}", file=sys.stderr)
            return 130
        progress.update(points, completed=len(grid), info="done")
    if args.json:
        from controller.analysis import read_summary_csv

        rows = read_summary_csv(out_dir / "summary.csv")
        print(json.dumps(rows, indent=2))
        return 1 if any(r["prompts"] != r["prompts_expected"] for r in rows) else 0
    return print_run_summary(out_dir)


def _testbed_bind(testbed) -> str:
    """Where `specbed run --testbed` binds: the controller_address its agents are given, port 5555."""
    from controller.profiles import ProfileError
    from controller.provision import ProvisionError, inventory_hosts

    try:
        hostvars = inventory_hosts(testbed.inventory).get("_meta", {}).get("hostvars", {})
    except ProvisionError as exc:
        raise ProfileError(str(exc)) from None
    found = {hostvars.get(a, {}).get("controller_address") for a in testbed.agents} - {None, ""}
    if len(found) != 1:
        raise ProfileError(f"testbed {testbed.name}: agents' controller_address {sorted(found)}; give --bind")
    return f"tcp://{found.pop()}:5555"
