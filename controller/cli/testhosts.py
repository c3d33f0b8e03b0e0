"""``specbed testhosts up|down``: namespace hosts with sshd, no hardware needed (root)."""

from __future__ import annotations

import argparse

from agent.options import add_log_options
from controller.cli.common import add_command


def register(sub) -> None:
    from controller import testhosts

    th = add_command(sub, "testhosts", help="namespace test hosts with sshd (up/down); needs root")
    testhosts.add_arguments(th)
    for action in th._subparsers._group_actions:  # up and down take the log options too
        for parser in action.choices.values():
            add_log_options(parser, suppress=True)
    th.set_defaults(func=cmd_testhosts)


def cmd_testhosts(args: argparse.Namespace) -> int:
    from controller.testhosts import run

    return run(args)
