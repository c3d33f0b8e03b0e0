"""The WISV summary and plots of a ``specbed run`` folder: strict beside semantic, against channel quality.

One row per (verification, hidden upload, channel) configuration, seeds
pooled.  Per-prompt quantities (rounds, end-to-end latency, task accuracy,
bytes per generated token) are means over prompts with their standard
errors; accepted length per round is a mean over rounds with its standard
error.  End-to-end latency of a prompt runs from its first draft request to
its last verdict (controller clock).  Semantic rows are lossy by design and
labelled so in ``wisv_summary.csv`` (``lossy``), in ``report_wisv.md`` and
in every plot; ``section`` puts the same table, with the label, into the
run's report.md (``controller.report_text``).
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

from controller.results import read_jsonl
from controller.stats import mean_se
from controller.wisv import LOSSY_LABEL
from controller.wisv.tasks import load_answers, score

METRICS = (
    ("accepted_per_round", "accepted length per round (tokens)"),
    ("rounds_per_prompt", "rounds per prompt"),
    ("latency_s_per_prompt", "end-to-end latency per prompt (s)"),
    ("accuracy", "task accuracy (exact match)"),
    ("bytes_up_per_token", "bytes up per generated token"),
    ("bytes_down_per_token", "bytes down per generated token"),
)
COLUMNS = (
    "mode",
    "lossy",
    "uplink_rate_bps",
    "prompts",
    *(c for m, _ in METRICS for c in (m, f"{m}_se")),
    "hidden_bytes_up_per_token",
    "extra_round_trips_per_prompt",
    "semantic_accepted_per_prompt",
)


def mode_of(point: dict) -> str:
    if point.get("verification") == "semantic":
        return f"semantic/{point.get('hidden_upload')}"
    return "strict"


def has_semantic(manifest: dict) -> bool:
    """Whether a run measured semantic verification (then every WISV file is written)."""
    return any(p.get("verification") == "semantic" for p in manifest.get("grid", []))


def wisv_rows(run_dir: Path) -> list[dict]:
    run_dir = Path(run_dir)
    manifest = json.loads((run_dir / "manifest.json").read_text())
    answers = load_answers(manifest["profile"]["prompts_source"])
    outputs, _ = read_jsonl(run_dir / "outputs.jsonl")
    rounds, _ = read_jsonl(run_dir / "rounds.jsonl")
    by_point_prompt: dict[tuple, list[dict]] = {}
    for r in rounds:
        by_point_prompt.setdefault((r["point"], r["prompt_id"]), []).append(r)
    configs: dict[str, list[dict]] = {}
    for p in manifest["grid"]:
        if p["scheme"] == "top-k":
            configs.setdefault(p["config"], []).append(p)
    rows = []
    for points in configs.values():
        ids = {p["id"] for p in points}
        per: dict[str, list[float]] = {m: [] for m, _ in METRICS}
        per.update(hidden=[], extra=[], semantic=[])
        accepted = []
        for o in outputs:
            if o["point"] not in ids:
                continue
            rs = by_point_prompt.get((o["point"], o["prompt_id"]), [])
            tokens = max(1, o["tokens"])
            accepted += [r["accepted"] for r in rs]
            per["rounds_per_prompt"].append(len(rs))
            per["latency_s_per_prompt"].append((o["done_ns"] - o["started_ns"]) / 1e9)
            if o["prompt_id"] in answers:
                per["accuracy"].append(score(o["text"], answers[o["prompt_id"]]))
            per["bytes_up_per_token"].append(sum(r["bytes_up"] for r in rs) / tokens)
            per["bytes_down_per_token"].append(sum(r["bytes_down"] for r in rs) / tokens)
            w = [r.get("wisv") or {} for r in rs]
            per["hidden"].append(sum(x.get("hidden_bytes_up", 0) for x in w) / tokens)
            per["extra"].append(sum(x.get("round_trips", 1) - 1 for x in w))
            per["semantic"].append(sum(x.get("semantic_accepted", 0) for x in w))
        p0 = points[0]
        row = {
            "mode": mode_of(p0),
            "lossy": LOSSY_LABEL if p0.get("verification") == "semantic" else "no (strict, lossless)",
            "uplink_rate_bps": p0.get("uplink_rate_bps"),
            "prompts": len(per["rounds_per_prompt"]),
        }
        row["accepted_per_round"], row["accepted_per_round_se"] = mean_se(accepted)
        for m, _ in METRICS[1:]:
            row[m], row[f"{m}_se"] = mean_se(per[m])
        row["hidden_bytes_up_per_token"] = mean_se(per["hidden"])[0]
        row["extra_round_trips_per_prompt"] = mean_se(per["extra"])[0]
        row["semantic_accepted_per_prompt"] = mean_se(per["semantic"])[0]
        rows.append(row)
    return sorted(rows, key=lambda r: (r["mode"], r["uplink_rate_bps"] or 0))


def _fmt(v, se=None) -> str:
    if v is None:
        return "-"
    text = f"{v:.3g}"
    return f"{text} ± {se:.2g}" if se is not None else text


def _change(strict: dict, row: dict, key: str) -> str:
    a, b = strict.get(key), row.get(key)
    if a is None or b is None:
        return "-"
    if key == "accuracy":
        return f"{100 * (b - a):+.1f} pts"
    return f"{100 * (b - a) / a:+.1f}%" if a else "-"


def section(run) -> list[str]:
    """report.md's WISV section (``controller.report_text``): nothing for a run without semantic points.

    Writes the WISV files as a side effect (``write_wisv_report``), so
    ``specbed run`` and ``specbed report`` both leave them.
    """
    if not has_semantic(run.manifest):
        return []
    write_wisv_report(run.dir)
    body = _table(wisv_rows(run.dir))
    return ["## WISV: semantic verification is LOSSY", "", *body, "See report_wisv.md and wisv_summary.csv.", ""]


def write_wisv_report(run_dir: Path) -> list[Path]:
    """``wisv_summary.csv``, ``report/wisv_*.png`` and ``report_wisv.md`` of a run with WISV points."""
    run_dir = Path(run_dir)
    rows = wisv_rows(run_dir)
    csv_path = run_dir / "wisv_summary.csv"
    with csv_path.open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=COLUMNS)
        writer.writeheader()
        for row in rows:
            writer.writerow({k: ("" if row.get(k) is None else row.get(k)) for k in COLUMNS})
    plots = _plots(rows, run_dir / "report")
    lines = ["# WISV: strict against semantic verification", "", *_table(rows)]
    lines += ["", *(f"![{cap}](report/{p.name})" for p, cap in plots), ""]
    md = run_dir / "report_wisv.md"
    md.write_text("\n".join(lines))
    return [csv_path, md, *(p for p, _ in plots)]


def _table(rows: list[dict]) -> list[str]:
    """The lossy note, every row, and each semantic row's change against strict at the same channel."""
    lines = [
        f"**Semantic rows are {LOSSY_LABEL}**: the decision head keeps draft tokens that strict",
        "verification rejects, so their output may differ from the target's. Strict is lossless.",
        "",
        "| mode | lossy | uplink | accepted/round | rounds/prompt | latency/prompt (s) | accuracy |"
        " bytes up/token | bytes down/token | hidden B up/token | extra round trips/prompt |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        cells = [r["mode"], "LOSSY" if r["mode"] != "strict" else "no", _rate(r["uplink_rate_bps"])]
        cells += [_fmt(r[m], r[f"{m}_se"]) for m, _ in METRICS]
        cells += [_fmt(r["hidden_bytes_up_per_token"]), _fmt(r["extra_round_trips_per_prompt"])]
        lines.append("| " + " | ".join(cells) + " |")
    lines += ["", "Change against strict at the same channel (semantic rows, lossy):", ""]
    lines += [
        "| mode | uplink | accepted/round | rounds/prompt | latency/prompt | accuracy |",
        "|---|---|---|---|---|---|",
    ]
    strict = {r["uplink_rate_bps"]: r for r in rows if r["mode"] == "strict"}
    for r in rows:
        s = strict.get(r["uplink_rate_bps"])
        if r["mode"] == "strict" or s is None:
            continue
        keys = ("accepted_per_round", "rounds_per_prompt", "latency_s_per_prompt", "accuracy")
        lines.append(
            f"| {r['mode']} (lossy) | {_rate(r['uplink_rate_bps'])} | "
            + " | ".join(_change(s, r, k) for k in keys)
            + " |"
        )
    return [*lines, ""]


def _rate(bps) -> str:
    if not bps:
        return "unshaped"
    return f"{bps / 1e6:g} Mbit/s" if bps >= 1e6 else f"{bps / 1e3:g} kbit/s"


def _plots(rows: list[dict], out: Path) -> list[tuple[Path, str]]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out.mkdir(parents=True, exist_ok=True)
    made = []
    modes = sorted({r["mode"] for r in rows})
    for metric, label in METRICS:
        fig, ax = plt.subplots(figsize=(5.5, 3.6))
        for mode in modes:
            pts = sorted(
                (r for r in rows if r["mode"] == mode and r["uplink_rate_bps"]), key=lambda r: r["uplink_rate_bps"]
            )
            if not pts:
                continue
            xs = [r["uplink_rate_bps"] / 1e3 for r in pts]
            ys = [r[metric] if r[metric] is not None else float("nan") for r in pts]
            es = [r[f"{metric}_se"] or 0.0 for r in pts]
            name = "strict (lossless)" if mode == "strict" else f"{mode} (lossy)"
            ax.errorbar(xs, ys, yerr=es, marker="o", capsize=3, label=name, linestyle="-" if mode == "strict" else "--")
        ax.set_xscale("log")
        ax.set_xlabel("uplink rate (kbit/s): channel quality")
        ax.set_ylabel(label)
        ax.set_title(f"WISV: {label}\nsemantic verification is lossy by design", fontsize=9)
        if ax.get_legend_handles_labels()[0]:  # an unshaped run has no channel axis to plot against
            ax.legend(fontsize=7)
        fig.tight_layout()
        path = out / f"wisv_{metric}.png"
        fig.savefig(path, dpi=110)
        plt.close(fig)
        made.append((path, f"{label} against channel quality, strict beside semantic (lossy)"))
    return made
