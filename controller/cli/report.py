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
        help="rewrite a run's report: summary.csv, report.md and plots (specbed run), or the plots of specbed local",
    )
    report.add_argument("dir", help="a run folder written by specbed run, local or serve")
    report.set_defaults(func=cmd_report)


def cmd_report(args: argparse.Namespace) -> int:
    from controller.report import make_report

    run_dir = Path(args.dir)
    manifest = run_dir / "manifest.json"
    if manifest.is_file() and json.loads(manifest.read_text()).get("kind") == "experiment":
        from controller.analysis import write_summary_and_report

        for path in write_summary_and_report(run_dir):
            print(f"wrote {path}")
        return 0
    if not (run_dir / "summary.json").is_file():
        return fail(f"{run_dir} holds no summary.json (not a finished run folder)")
    for path in make_report(run_dir):
        print(f"wrote {path}")
    return 0
