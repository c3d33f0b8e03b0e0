"""``specbed agent --connect tcp://HOST:PORT --name NAME``: an edge agent (same as ``python -m agent``)."""

from __future__ import annotations

import argparse

from agent.options import add_agent_arguments
from controller.cli.common import add_command


def register(sub) -> None:
    agent = add_command(
        sub,
        "agent",
        help="run an edge agent (same as python -m agent)",
        description="specbed edge agent: drafts tokens for a specbed controller over ZeroMQ.",
    )
    add_agent_arguments(agent)
    agent.set_defaults(func=cmd_agent)


def cmd_agent(args: argparse.Namespace) -> int:
    from agent.entry import run

    return run(args)
