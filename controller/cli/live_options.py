"""``--no-live`` and ``--metrics-port`` of ``local``, ``serve`` and ``run``, and the observers they start."""

from __future__ import annotations

import argparse
import contextlib
import sys
from collections.abc import Iterator
from typing import Any


def add_live_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--no-live", action="store_true", help="no live per-agent panel (it is off anyway when stdout is no terminal)"
    )
    parser.add_argument(
        "--metrics-port",
        type=int,
        default=None,
        metavar="PORT",
        help="serve Prometheus metrics at http://ADDR:PORT/metrics during the run (0: a free port, logged)",
    )
    parser.add_argument(
        "--metrics-bind",
        default="127.0.0.1",
        metavar="ADDR",
        help="address the metrics endpoint listens on (default 127.0.0.1: this host only; 0.0.0.0 for a scraper elsewhere)",
    )


@contextlib.contextmanager
def observing(args: argparse.Namespace, extra: Any = None) -> Iterator[Any]:
    """The live panel (when stdout is a terminal and not ``--no-live``) and the metrics endpoint.

    Yields ``Observers`` (``on_round``, ``on_output``) and the panel's
    console to print through while it is drawn.
    """
    from rich.console import Console

    from controller.live import LivePanel, Observers, RoundStats

    metrics = None
    if args.metrics_port is not None:
        from controller.metrics import MetricsServer

        addr = getattr(args, "metrics_bind", "127.0.0.1")
        metrics = MetricsServer(args.metrics_port, addr)
        print(f"Prometheus metrics at http://{addr}:{metrics.port}/metrics", file=sys.stderr, flush=True)
    stats = RoundStats()
    console = Console()
    live = console.is_terminal and not args.no_live and not getattr(args, "json", False)
    try:
        with LivePanel(stats, enabled=live, console=console, extra=extra) as panel:
            yield Observers(stats, metrics), panel
    finally:
        if metrics is not None:
            metrics.close()
