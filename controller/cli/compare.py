"""``specbed compare A B``: two ``specbed run`` folders side by side, joined on configuration."""

from __future__ import annotations

import argparse
import csv
import io
import json
from pathlib import Path

from controller.cli.common import add_command, add_json_argument, add_out_argument, fail, write_out


def register(sub) -> None:
    compare = add_command(sub, "compare", help="two `specbed run` folders side by side, joined on configuration")
    compare.add_argument("a", help="run folder A")
    compare.add_argument("b", help="run folder B")
    add_out_argument(compare, "also write the joined rows to DIR/compare.csv")
    add_json_argument(compare)
    compare.set_defaults(func=cmd_compare)


def cmd_compare(args: argparse.Namespace) -> int:
    from rich.console import Console
    from rich.table import Table

    from controller.analysis import compare_runs

    try:
        rows = compare_runs(Path(args.a), Path(args.b))
    except (FileNotFoundError, ValueError) as exc:
        return fail(str(exc))
    if args.json:
        print(json.dumps(rows, indent=2))
    else:
        table = Table(title=f"A = {args.a}\nB = {args.b}")
        table.add_column("configuration")
        heads = [("tokens_per_s", "tok/s"), ("acceptance_rate", "α"), ("bytes_up_per_draft_token", "B/draft tok")]
        for _, h in heads:
            table.add_column(f"{h} A", justify="right")
            table.add_column(f"{h} B", justify="right")
        table.add_column("tok/s B/A", justify="right")
        for r in rows:
            cells = [r["config"]]
            for k, _ in heads:
                cells += [_num(r[f"{k}_a"]), _num(r[f"{k}_b"])]
            cells.append(_num(r["tokens_per_s_ratio"]))
            table.add_row(*cells)
        Console(width=200).print(table)
    if args.out:
        buf = io.StringIO()
        writer = csv.DictWriter(buf, fieldnames=list(rows[0]) if rows else ["config"])
        writer.writeheader()
        writer.writerows(rows)
        path = write_out(args.out, "compare.csv", buf.getvalue())
        if not args.json:
            print(f"wrote {path}")
    return 0


def _num(v: object) -> str:
    return "-" if v is None else f"{v:.3g}" if isinstance(v, float) else str(v)
