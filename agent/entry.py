"""The agent's process entry (``python -m agent``, ``specbed agent``): options, keys, then an ``Agent`` or a ``Worker``."""

from __future__ import annotations

import logging
import sys

from agent.runtime import Agent
from agent.security import KeyError_, load_client_keys
from agent.worker import Worker

log = logging.getLogger(__name__)


def main(argv: list[str] | None = None) -> int:
    import argparse

    from agent.options import add_agent_arguments, add_log_options

    parser = argparse.ArgumentParser(
        prog="python -m agent",
        description="specbed edge agent: drafts tokens for a specbed controller over ZeroMQ.",
    )
    add_agent_arguments(parser)
    add_log_options(parser)
    return run(parser.parse_args(argv))


def run(args) -> int:
    """Run an agent with parsed options (``agent.options``); the exit status."""
    from agent.options import log_level

    logging.basicConfig(
        level=log_level(args, logging.INFO), format=f"%(asctime)s {args.name} %(levelname)s %(message)s"
    )
    keys = None
    if args.insecure:
        print("warning: --insecure: this agent talks to the controller unauthenticated, in the clear", file=sys.stderr)
    elif not (args.key and args.server_key):
        print(
            "error: give --key and --server-key (made by `specbed keys`; see SECURITY.md), or --insecure",
            file=sys.stderr,
        )
        return 2
    else:
        try:
            keys = load_client_keys(args.key, args.server_key)
        except KeyError_ as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
    log.debug("options: %s", {k: v for k, v in vars(args).items() if k != "func"})
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    cls = Worker if args.role == "worker" else Agent
    agent = cls(args.connect, args.name, args.device, args.idle_timeout, args.clock_shift_ns, keys)
    try:
        return agent.run()
    finally:
        agent.close()
