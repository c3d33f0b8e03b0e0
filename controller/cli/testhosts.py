"""``specbed testhosts up|down``: namespace hosts with sshd, no hardware needed (root)."""

from __future__ import annotations

import argparse

from controller.cli.common import add_command


def register(sub) -> None:
    from controller import testhosts

    th = add_command(sub, "testhosts", help="namespace test hosts with sshd (up/down); needs root")
    testhosts.add_arguments(th)
    th.set_defaults(func=cmd_testhosts)


def cmd_testhosts(args: argparse.Namespace) -> int:
    from controller.testhosts import run

    return run(args)
