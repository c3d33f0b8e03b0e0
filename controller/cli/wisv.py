"""specbed wisv collect|train: samples for WISV's decision head from strict runs, and its training (lossy mode)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from controller.cli.common import add_command, fail

HEAD_FILE = "head.pt"  # what ``wisv train --out DIR`` writes into DIR (``--out`` is always a folder)


def register(sub) -> None:
    wisv = add_command(sub, "wisv", help="WISV semantic verification (lossy): collect samples, train the head")
    wisv_sub = wisv.add_subparsers(dest="wisv_command", required=True)
    co = add_command(wisv_sub, "collect", help="samples (hidden states, CSI, label) from strict greedy run folders")
    co.add_argument("runs", nargs="+", metavar="RUN", help="run folders of specbed run or specbed local")
    co.add_argument("--per-round", type=int, default=2, help="at most this many mismatches per round (default 2)")
    co.add_argument("--max-prompts", type=int, default=None, help="collect from the first N prompts only")
    co.set_defaults(func=cmd_collect)
    tr = add_command(wisv_sub, "train", help="train the decision head on the samples of RUN folders")
    tr.add_argument("runs", nargs="+", metavar="RUN", help="run folders holding wisv_samples.pt")
    tr.add_argument("--out", required=True, metavar="DIR", help="folder to write head.pt into (name it in the profile)")
    tr.add_argument("--epochs", type=int, default=300, help="full-batch epochs (default 300)")
    tr.add_argument("--seed", type=int, default=0, help="initialisation seed (default 0)")
    tr.set_defaults(func=cmd_train)


def cmd_collect(args: argparse.Namespace) -> int:
    from controller.wisv.collect import collect

    if args.per_round < 1:
        return fail(f"specbed wisv collect: --per-round: expected a positive integer, got {args.per_round}")
    if args.max_prompts is not None and args.max_prompts < 1:
        return fail(f"specbed wisv collect: --max-prompts: expected a positive integer, got {args.max_prompts}")
    for run in args.runs:
        try:
            path = collect(Path(run), per_round=args.per_round, max_prompts=args.max_prompts)
        except (OSError, ValueError, KeyError) as exc:
            return fail(f"specbed wisv collect: {run}: {exc}")
        print(f"wrote {path}")
    return 0


def cmd_train(args: argparse.Namespace) -> int:
    from controller.wisv.train import train

    if args.epochs < 1:
        return fail(f"specbed wisv train: --epochs: expected a positive integer, got {args.epochs}")
    out = Path(args.out) / HEAD_FILE
    try:
        meta = train([Path(r) for r in args.runs], out, epochs=args.epochs, seed=args.seed)
    except (OSError, ValueError, KeyError) as exc:
        return fail(f"specbed wisv train: {exc}")
    print(json.dumps(meta, indent=1))
    print(f"wrote {out}")
    return 0
