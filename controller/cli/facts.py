"""``specbed facts``: a per-host report (facts.yml)."""

from __future__ import annotations

import argparse
from pathlib import Path

from controller.cli.common import add_command, add_out_argument
from controller.cli.playbook import add_ansible_arguments, run_ansible


def register(sub) -> None:
    fa = add_command(sub, "facts", help="per-host report (board, JetPack or driver, GPU, memory, Python, torch)")
    add_ansible_arguments(fa)
    add_out_argument(fa, "folder for <host>.json (default results/facts)", default="results/facts")
    fa.set_defaults(func=cmd_facts)


def cmd_facts(args: argparse.Namespace) -> int:
    from controller.provision import facts_table

    facts_dir = Path(args.out).resolve()
    rc = run_ansible(args, "facts.yml", {"facts_dir": str(facts_dir)}, "specbed facts")
    if rc == 0:
        facts_table(facts_dir)
    return rc
