"""Command-line options shared by ``python -m agent``, ``specbed agent`` and every ``specbed`` command.

Kept free of heavy imports (torch, zmq) so that building a parser for
``--help`` is instant on a board.
"""

from __future__ import annotations

import argparse
import logging
import socket

LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")
LOG_FORMAT = "%(asctime)s %(name)s %(levelname)s %(message)s"


def add_log_options(parser: argparse.ArgumentParser, suppress: bool = False) -> None:
    """``-v/--verbose`` and ``--log-level``; ``suppress`` leaves an unset option out of the namespace.

    A subcommand's parser suppresses its defaults so that ``specbed -v run``
    and ``specbed run -v`` both work (argparse lets a subparser's default
    overwrite what the main parser parsed).
    """
    parser.add_argument(
        "-v",
        "--verbose",
        action="store_true",
        default=argparse.SUPPRESS if suppress else False,
        help="log at DEBUG level (same as --log-level DEBUG)",
    )
    parser.add_argument(
        "--log-level",
        type=str.upper,
        choices=LOG_LEVELS,
        default=argparse.SUPPRESS if suppress else None,
        help="log level: DEBUG, INFO, WARNING or ERROR",
    )


def log_level(args: argparse.Namespace, default: int) -> int:
    """The level asked for: ``-v`` wins, then ``--log-level``, else ``default``."""
    if getattr(args, "verbose", False):
        return logging.DEBUG
    name = getattr(args, "log_level", None)
    return getattr(logging, name) if name else default


def add_agent_arguments(parser: argparse.ArgumentParser) -> None:
    """The agent's own options (``python -m agent`` and ``specbed agent``)."""
    parser.add_argument("--connect", required=True, help="controller endpoint, e.g. tcp://10.0.0.1:5555")
    parser.add_argument("--name", default=socket.gethostname(), help="agent name in results (default: hostname)")
    parser.add_argument("--device", default="cpu", help="torch device for the drafter (cpu, cuda)")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    parser.add_argument(
        "--idle-timeout", type=float, default=600.0, help="exit after this many seconds without a message"
    )
    parser.add_argument(
        "--clock-shift-ns", type=int, default=0, help="add this to every reported timestamp (clock-sync tests)"
    )
    parser.add_argument("--key", default=None, help="this agent's secret certificate (KEYS/agents/NAME.key_secret)")
    parser.add_argument("--server-key", default=None, help="the controller's public certificate (KEYS/controller.key)")
    parser.add_argument(
        "--insecure", action="store_true", help="no CURVE: talk to the controller in the clear (debugging only)"
    )
    parser.add_argument(
        "--role", choices=("drafter", "worker"), default="drafter", help="draft tokens, or score them (SpecFed)"
    )
