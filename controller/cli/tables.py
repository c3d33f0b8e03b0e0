"""Rich tables printed at the end of ``specbed local``, ``serve`` and ``run``."""

from __future__ import annotations

from pathlib import Path


def summary_table(summary: dict, out_dir: Path) -> None:
    from rich.console import Console
    from rich.table import Table

    def fmt(value: object, spec: str = ".3f") -> str:
        if value is None:
            return "n/a"
        return format(value, spec) if isinstance(value, float) else str(value)

    table = Table(title=f"specbed run: {out_dir}", show_header=True)
    table.add_column("metric")
    table.add_column("value", justify="right")
    rows = [
        ("prompts done", f"{summary['prompts']} / {summary['prompts_requested']}"),
        ("tokens generated", fmt(summary["tokens_generated"])),
        ("rounds", fmt(summary["rounds"])),
        ("mean tokens per round", fmt(summary["mean_tokens_per_round"], ".2f")),
        ("acceptance rate", fmt(summary["acceptance_rate"], ".3f")),
        ("mean acceptance length", fmt(summary.get("mean_acceptance_length"), ".2f")),
        (
            "acceptance rate per position",
            " ".join(f"{a:.2f}" for a in summary.get("acceptance_rate_per_position") or []) or "n/a",
        ),
        ("uplink bytes per draft token", fmt(summary["bytes_up_per_draft_token"], ".1f")),
        ("full distribution bytes per draft token", fmt(summary["full_distribution_bytes_per_draft_token"])),
        ("tokens per second", fmt(summary["tokens_per_second"], ".2f")),
        ("generation wall time (s)", fmt(summary["wall_s"], ".1f")),
        ("protocol errors", fmt(summary["errors_total"])),
    ]
    for name, value in rows:
        table.add_row(name, value)
    per_agent = Table(show_header=True, title="per agent")
    for col in ("agent", "prompts", "rounds", "drafter"):
        per_agent.add_column(col)
    for name, a in sorted(summary["agents"].items()):
        per_agent.add_row(name, str(a["prompts"]), str(a["rounds"]), str(a["drafter"].get("drafter", "?")))
    console = Console()
    console.print(table)
    console.print(per_agent)


def print_run_summary(out_dir: Path) -> int:
    from rich.console import Console
    from rich.table import Table

    from controller.analysis import policy_columns, read_summary_csv, table_cell

    rows = read_summary_csv(out_dir / "summary.csv")
    policy = policy_columns(rows)  # when present, "policy" names the fixed γ
    settings = [
        ("top_k", "K"),
        *([] if policy else [("draft_length", "γ")]),
        ("reconstruction", "recon."),
        ("agents", "agents"),
        *policy,
    ]
    # settings shared by every configuration go under the table, once
    shared = [(k, h) for k, h in settings if len(rows) > 1 and len({_short(table_cell(r, k)) for r in rows}) == 1]
    cols = [
        ("scheme", "scheme"),
        *[c for c in settings if c not in shared],
        ("tokens_per_s", "tok/s"),
        ("acceptance_rate", "α"),
        ("bytes_up_per_draft_token", "B/draft tok"),
        ("mean_tv_distance", "TV"),
        ("greedy_agreement", "greedy agr."),
    ]
    caption = ", ".join(f"{h} {_short(table_cell(rows[0], k))}" for k, h in shared) if shared else None
    table = Table(title=f"specbed run: {out_dir}", caption=f"every configuration: {caption}" if caption else None)
    for key, head in cols:
        # a configuration's name stays on one line; the numbers' headers wrap instead
        table.add_column(head, justify="right", no_wrap=key in ("scheme", "policy", "uplink_rate_bps"))
    incomplete = 0
    for r in rows:
        if r["prompts"] != r["prompts_expected"]:
            incomplete += 1
        table.add_row(*[_short(table_cell(r, k)) for k, _ in cols])
    console = Console()
    if not console.is_terminal:  # a log file: no terminal width to fit, so do not squeeze the table to 80
        console = Console(width=120)
    console.print(table)
    print(f"wrote {out_dir}/summary.csv, report.md, report/*.png (manifest.json, rounds.jsonl, outputs.jsonl)")
    if incomplete:
        print(f"{incomplete} configuration(s) unfinished; finish with: specbed run --resume {out_dir}")
        return 1
    return 0


def _short(value: str) -> str:
    try:
        return f"{float(value):.3g}" if value not in ("", None) and not value.isdigit() else (value or "n/a")
    except ValueError:
        return value
