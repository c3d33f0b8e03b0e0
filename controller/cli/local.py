"""``specbed local`` (agent processes on this machine) and ``specbed serve`` (remote agents)."""

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
    local = add_command(
        sub,
        "local",
        help="run an experiment with N agent processes on this machine",
        description="Start the controller and N agents on loopback, generate for every prompt, "
        "write the run folder of `specbed run` (a one-point grid), print a summary.",
    )
    _common(local)
    local.add_argument("--agents", type=int, default=None, help="number of agents (default: the profile's)")
    local.set_defaults(func=cmd_local)

    serve = add_command(
        sub,
        "serve",
        help="run an experiment against remote agents (started with `specbed agents start`)",
        description="Bind the controller at --bind, wait for --agents agents to connect and become ready, "
        "generate for every prompt and write the run folder, as `specbed local` does.",
    )
    _common(serve)
    serve.add_argument("--bind", required=True, help="controller endpoint, e.g. tcp://10.0.0.1:5555 (no default)")
    serve.add_argument("--keys", default=None, help="keys folder from `specbed keys`: only its agents may connect")
    serve.add_argument("--agents", type=int, default=None, help="agents to wait for (default: the profile's)")
    serve.add_argument(
        "--telemetry-port",
        type=int,
        default=5556,
        help="port on the --bind address where agents send telemetry (default 5556; open it as well as --bind's)",
    )
    serve.add_argument(
        "--wait-agents", type=float, default=600.0, help="seconds to wait for the agents to be ready (default 600)"
    )
    serve.set_defaults(func=cmd_local)


def _common(p: argparse.ArgumentParser) -> None:
    add_profile_argument(p, "quickstart", " (default: quickstart)")
    p.add_argument("--prompts", default=None, help="JSONL file with a 'prompt' field per line (default: the profile's)")
    p.add_argument("--max-new-tokens", type=int, default=None, help="tokens to generate per prompt")
    add_out_argument(p, "results folder (default: results/<timestamp>-<profile>)")
    add_json_argument(p)
    add_live_arguments(p)
    p.add_argument(
        "--insecure", action="store_true", help="no CURVE keys: anyone may connect, in the clear (debugging only)"
    )


def cmd_local(args: argparse.Namespace) -> int:
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from agent.models import ModelError
    from controller.cli.common import profile_of
    from controller.cli.tables import summary_table
    from controller.keys import KeysError
    from controller.profiles import ProfileError, load_experiment
    from controller.records import OutDirNotEmpty, check_out_dir

    if args.insecure:
        print("warning: --insecure: agents are not authenticated and traffic is in the clear", file=sys.stderr)
    try:
        experiment = load_experiment(profile_of(args), prompts=args.prompts, max_new_tokens=args.max_new_tokens)
    except (ProfileError, ValueError) as exc:
        return fail(str(exc))
    stamp = time.strftime("%Y%m%d-%H%M%S")
    out_dir = Path(args.out) if args.out else Path("results") / f"{stamp}-{experiment.name}"
    try:
        check_out_dir(out_dir)  # one run per folder: a summary never describes half of its rounds
    except OutDirNotEmpty as exc:
        return fail(str(exc))
    from controller.local import run_local  # torch and transformers: after the checks that need neither

    n_agents = args.agents or experiment.agents
    say = (lambda *a: print(*a, file=sys.stderr)) if args.json else print
    say(
        f"profile {experiment.name}: {len(experiment.prompts)} prompts, {n_agents} agents, "
        f"models {experiment.models.name}, results in {out_dir}"
    )
    tokens = 0
    t0 = time.monotonic()
    progress = Progress(
        TextColumn("[bold]prompts"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[rate]}"),
        TimeElapsedColumn(),
        transient=False,
        disable=args.json,
    )
    with observing(args, extra=progress) as (observers, panel):
        with contextlib.nullcontext() if panel.enabled else progress:
            task = progress.add_task("prompts", total=len(experiment.prompts), rate="loading models")

            def on_progress(done: int, total: int, record: object) -> None:
                nonlocal tokens
                if record is not None:
                    tokens += record.emitted
                    observers.on_round(record)
                else:
                    observers.on_output()
                rate = f"{tokens} tokens, {tokens / (time.monotonic() - t0):.1f} tok/s"
                progress.update(task, completed=done, rate=rate)

            try:
                run = run_local(
                    experiment,
                    out_dir,
                    agents=n_agents,
                    on_progress=on_progress,
                    bind=getattr(args, "bind", None),
                    telemetry_port=getattr(args, "telemetry_port", None),
                    wait_agents_s=getattr(args, "wait_agents", 600.0),
                    on_status=lambda status: progress.update(task, rate=status),
                    keys_dir=getattr(args, "keys", None),
                    insecure=args.insecure,
                )
            except (KeysError, ProfileError) as exc:
                progress.stop()
                return fail(str(exc))
            except (RuntimeError, TimeoutError, ModelError) as exc:
                progress.stop()
                print(f"error: {exc}", file=sys.stderr)
                print(f"what was recorded is in {out_dir}", file=sys.stderr)
                return 1
    if args.json:
        print(json.dumps(run.summary, indent=2, default=str))
    else:
        summary_table(run.summary, out_dir)
        print(f"wrote {out_dir}/manifest.json, rounds.jsonl, outputs.jsonl, summary.csv, summary.json, report.md")
    if run.summary["prompts"] != run.summary["prompts_requested"]:
        return 1
    return 0
