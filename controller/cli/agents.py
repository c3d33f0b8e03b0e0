"""``specbed agents start|stop|restart|status``: the agents' service on the boards (agents.yml)."""

from __future__ import annotations

import argparse

from controller.cli.common import add_command
from controller.cli.playbook import add_ansible_arguments, run_ansible


def register(sub) -> None:
    ag = add_command(sub, "agents", help="start, stop, restart or report the agents: agents.yml")
    ag.add_argument("action", choices=("start", "stop", "restart", "status"))
    add_ansible_arguments(ag)
    ag.set_defaults(func=cmd_agents)


def cmd_agents(args: argparse.Namespace) -> int:
    state = {"start": "started", "stop": "stopped", "restart": "restarted", "status": "status"}[args.action]
    return run_ansible(args, "agents.yml", {"agent_state": state}, f"specbed agents {args.action}")
