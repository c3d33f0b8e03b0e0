"""``specbed run PROFILE`` when the profile says ``scheme: specfed`` (``controller.specfed_run``)."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path


def cmd_run_specfed(args: argparse.Namespace) -> int:
    from rich.console import Console

    from controller.experiment import RunError
    from controller.keys import KeysError
    from controller.profiles import ProfileError
    from controller.specfed_profile import load_specfed
    from controller.specfed_report import QUANTITIES
    from controller.specfed_run import run_specfed

    console = Console()
    try:
        x = load_specfed(args.profile)
    except ProfileError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    stamp = time.strftime("%Y%m%d-%H%M%S")
    out_dir = Path(args.out or Path("results") / f"{stamp}-{x.name}")
    grid = x.grid()
    console.print(
        f"experiment {x.name} (SpecFed): {len(grid)} grid points x {len(x.prompts)} prompts, "
        f"{len(x.workers)} workers; results in {out_dir}"
    )
    t0 = time.monotonic()
    with console.status("starting") as status:
        try:
            run_specfed(
                args.profile,
                out_dir,
                bind=args.bind,
                wait_workers_s=args.wait_agents,
                keys_dir=getattr(args, "keys", None),
                insecure=getattr(args, "insecure", False),
                on_progress=lambda s: status.update(f"[{time.monotonic() - t0:.0f} s] {s}"),
            )
        except (RunError, ProfileError, KeysError) as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
        except (RuntimeError, TimeoutError) as exc:
            print(f"error: {exc}; what was recorded is in {out_dir}", file=sys.stderr)
            return 1
    console.print(f"done in {time.monotonic() - t0:.0f} s: {out_dir / 'summary.csv'}, {out_dir / 'report.md'}")
    console.print(", ".join(q for q, _, _ in QUANTITIES) + " beside their bounds in report/*.png")
    return 0
