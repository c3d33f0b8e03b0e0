"""report.md of a run folder: what was run, on what host, the answers the table supports, the table.

Written from the summary rows and the run's files by ``write_summary_and_report``.
"""

from __future__ import annotations

import math
from collections import defaultdict
from pathlib import Path
from typing import Any

from controller import policy_report, tkslt_report
from controller.answers import answers
from controller.hostload import busy_warning, describe
from controller.plots import make_plots, policy_columns, short_label, table_cell
from controller.wisv import report as wisv_report

# --- report.md -----------------------------------------------------------------------------------


def _fmt(v: Any, spec: str = ".3g") -> str:
    if v is None or v == "":
        return "n/a"
    if isinstance(v, float):
        if math.isnan(v):
            return "n/a"
        return format(v, spec)
    return str(v)


def make_report(run, rows: list[dict]) -> Path:
    plots = make_plots(rows, run.dir / "report")
    m = run.manifest
    prof = m["profile"]
    segs = m["segments"]
    lines = [f"# {m['experiment']}", ""]
    if prof.get("description"):
        lines += [prof["description"].strip(), ""]
    expected = len(run.grid) * len(run.prompts)
    got = sum(len(v) for v in run.outputs.values())
    pair = prof["models"]
    lines += [
        f"- model pair: **{pair['name']}**; {len(run.prompts)} prompts from `{Path(prof['prompts_source']).name}`; "
        f"seeds {prof['seeds']}",
        f"- grid: {len(run.grid)} points ({len(rows)} configurations x {len(prof['seeds'])} seeds); "
        f"prompts finished {got} of {expected}",
        f"- segments: {len(segs)} (a start and {len(segs) - 1} resumes); rounds discarded at resume "
        f"(prompts in flight when stopped, redone): {sum(s.get('discarded_rounds', 0) for s in segs)}",
    ]
    errors: dict[str, int] = defaultdict(int)
    for s in segs:
        for k, v in (s.get("errors") or {}).items():
            errors[k] += v
    lines.append(f"- protocol errors: {dict(errors) or 'none'}")
    if segs and segs[-1].get("controller"):
        c = segs[-1]["controller"]
        lines.append(
            f"- controller host: {c.get('machine')}, {c.get('cpu_count')} CPUs, torch {c.get('torch')}, "
            f"accelerator {c.get('accelerator') or 'none'}"
        )
    lines.append("")

    load = (segs[-1].get("host_load") if segs else None) or None
    if described := describe(load):
        lines.insert(-1, f"- host load over the last segment: {described}")
    warning = busy_warning(load)
    if warning:
        lines += [f"> {warning}", ""]
    lines += answers(rows, lambda r: short_label(r, rows))
    lines += policy_report.predictions_section(rows, lambda r: short_label(r, rows))
    lines += policy_report.multispin_section(run, run.dir / "report")
    lines += tkslt_report.section(tkslt_report.acceptance_rows(run.grid, run.rounds, rows), run.dir / "report")
    lines += wisv_report.section(run)  # WISV: semantic rows, labelled lossy (none without semantic points)

    lines += ["## Summary", ""]
    cols = [
        ("scheme", "scheme"),
        ("top_k", "K"),
        ("draft_length", "γ"),
        ("reconstruction", "reconstruction"),
        ("sampling", "sampling"),
        ("temperature", "T"),
        ("agents", "agents"),
        *policy_columns(rows),
        ("tokens_per_s", "tok/s"),
        ("mean_tokens_per_round", "tok/round"),
        ("acceptance_rate", "α"),
        ("mean_acceptance_length", "acc. len"),
        ("acceptance_rate_per_position", "α per position"),
        ("bytes_up_per_draft_token", "B/draft tok"),
        ("latency_per_token_ms", "ms/tok"),
        ("energy_j_per_token", "J/tok"),
        ("mean_tail_mass", "tail"),
        ("mean_tv_distance", "TV"),
        ("acceptance_gap_vs_full", "Δα vs full"),
        ("greedy_agreement", "greedy agr."),
    ]
    lines.append("| " + " | ".join(h for _, h in cols) + " |")
    lines.append("|" + "---|" * len(cols))
    for r in rows:
        cells = []
        for key, _ in cols:
            v = table_cell(r, key)
            if r["scheme"] != "top-k" and key in ("top_k", "reconstruction", "prob_dtype"):
                v = "-"
            if r["scheme"] == "target-only" and key in ("draft_length", "sampling", "agents"):
                v = "-"
            cells.append(_fmt(v))
        lines.append("| " + " | ".join(cells) + " |")
    lines += [
        "",
        "Every column is defined in `summary.csv`'s documentation (`controller/analysis.py`); n/a means",
        "not measured or not applicable (e.g. bytes for the in-process schemes, TV for greedy runs).",
        "",
    ]
    if plots:
        lines += ["## Plots", ""]
        for path, caption in plots:
            lines += [f"![{caption}](report/{path.name})", "", caption, ""]
    lines += [
        "## Notes",
        "",
        "- top-k and full-distribution are distributed: agents draft in their own processes and talk to the",
        "  controller over ZeroMQ; colocated and target-only run in the controller process.",
        "- Energy counts the controller and the agents that drafted for a point, over the point's windows;",
        "  idle agents are not counted.",
        "- Rounds of prompts in flight when a run stopped are dropped at resume and the prompts redone with",
        "  the same seeds; no round appears twice in rounds.jsonl.",
        "",
    ]
    path = run.dir / "report.md"
    path.write_text("\n".join(lines), encoding="utf-8")
    return path
