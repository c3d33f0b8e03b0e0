"""``specbed report DIR``: rewrite a run's summary, report and plots."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from controller.cli.common import add_command, fail


def register(sub) -> None:
    report = add_command(
        sub,
        "report",
        help="rewrite a run's summary.csv, summary.json, report.md and plots",
    )
    report.add_argument("dir", help="a run folder written by specbed run, local or serve")
    report.set_defaults(func=cmd_report)


def cmd_report(args: argparse.Namespace) -> int:
    from controller.analysis import write_summary_and_report

    run_dir = Path(args.dir)
    manifest = run_dir / "manifest.json"
    if not manifest.is_file() or json.loads(manifest.read_text()).get("kind") != "experiment":
        return fail(f"{run_dir} holds no manifest.json of `specbed run`, `local` or `serve` (not a run folder)")
    for path in write_summary_and_report(run_dir):
        print(f"wrote {path}")
    return 0
