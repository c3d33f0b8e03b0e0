"""``specbed collect RUN_DIR``: agent logs from the boards into a run folder (collect.yml)."""

from __future__ import annotations

import argparse
from pathlib import Path

from controller.cli.common import add_command, fail
from controller.cli.playbook import add_ansible_arguments, run_ansible


def register(sub) -> None:
    co = add_command(sub, "collect", help="fetch agent logs from the boards into a run folder: collect.yml")
    co.add_argument("run_dir", help="the run folder (written by specbed serve) to put hosts/<host>/ in")
    add_ansible_arguments(co)
    co.set_defaults(func=cmd_collect)


def cmd_collect(args: argparse.Namespace) -> int:
    run_dir = Path(args.run_dir).resolve()
    if not run_dir.is_dir():
        return fail(f"{run_dir} is not a run folder")
    rc = run_ansible(args, "collect.yml", {"collect_dir": str(run_dir)}, "specbed collect")
    if rc == 0:
        print(f"agent logs in {run_dir / 'hosts'}")
    return rc
