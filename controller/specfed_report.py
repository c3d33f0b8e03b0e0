"""SpecFed summary and report: the paper's quantities against K, each beside its bound.

Reads a SpecFed run folder (``controller.specfed_run``) and writes
``summary.csv`` (one row per grid point: mean and standard error of every
quantity over the measured draft positions, its bound's mean, and how many
positions broke a bound), ``report.md`` and ``report/*.png`` (each quantity
against K, one line per strategy, its bound dashed; tokens/s, latency per
token and bytes per scored position against K, the dense aggregation as a
horizontal line).  Standard errors treat draft positions (prompts for the
speed columns) as independent samples.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

from controller.hostload import busy_warning, describe
from controller.stats import mean_se

#: A measured quantity may exceed its bound by this much (float64 sums of float32 values).
BOUND_TOLERANCE = 1e-6

QUANTITIES = (  # column, bound column, label
    ("local_error", "local_bound", "local reconstruction error ‖p_m − p̃_m‖₁ (mean over workers)"),
    ("aggregation_bias", "aggregation_bound", "aggregation bias ‖p − p̃‖₁"),
    ("acceptance_bias", "acceptance_bound", "acceptance-rate bias |α − α̃|"),
)


def _read_jsonl(path: Path) -> list[dict]:
    return [json.loads(ln) for ln in path.read_text().splitlines() if ln.strip()]


def bound_violations(rounds: list[dict]) -> list[str]:
    """Every (round, position, quantity) whose measured value exceeds its bound, as text."""
    bad = []
    for r in rounds:
        m = r.get("metrics")
        if not m:
            continue
        pairs = [("aggregation_bias", m["aggregation_bias"], m["aggregation_bound"])]
        pairs.append(("acceptance_bias", m["acceptance_bias"], m["acceptance_bound"]))
        pairs += [(f"local_error[{w}]", m["local_error"][w], m["local_bound"][w]) for w in m["local_error"]]
        for name, vals, bounds in pairs:
            for i, (v, b) in enumerate(zip(vals, bounds, strict=True)):
                if v > b + BOUND_TOLERANCE:
                    bad.append(f"{r['point']} {r['prompt_id']} round {r['round']} position {i}: {name} {v} > {b}")
    return bad


def summarise_point(point: dict, rounds: list[dict], outputs: list[dict]) -> dict:
    row: dict = {"point": point["id"], **{k: point.get(k) for k in ("scheme", "top_k", "reconstruction", "prob_dtype")}}
    row["draft_length"] = point.get("draft_length")
    row["rounds"] = len(rounds)
    row["tokens"] = sum(o["tokens"] for o in outputs)
    rates = [o["tokens"] / ((o["done_ns"] - o["started_ns"]) / 1e9) for o in outputs if o["done_ns"] > o["started_ns"]]
    lat = [(o["done_ns"] - o["started_ns"]) / 1e6 / o["tokens"] for o in outputs if o["tokens"]]
    row["tokens_per_s"], row["tokens_per_s_se"] = mean_se(rates)
    row["latency_per_token_ms"], row["latency_per_token_ms_se"] = mean_se(lat)
    acc = [r["accepted"] / r["draft_length"] for r in rounds]
    row["acceptance_rate"], row["acceptance_rate_se"] = mean_se(acc)
    for key in ("bytes_up_per_position", "bytes_down_per_position"):
        row[key], row[f"{key}_se"] = mean_se([r[key] for r in rounds])
    measured = [r["metrics"] for r in rounds if r.get("metrics")]
    row["measured_rounds"] = len(measured)
    series: dict[str, list[float]] = {}
    for m in measured:
        for name in ("aggregation_bias", "aggregation_bound", "acceptance_bias", "acceptance_bound", "alpha"):
            series.setdefault(name, []).extend(m[name])
        series.setdefault("alpha_tilde", []).extend(m["alpha_tilde"])
        for w in m["local_error"]:
            series.setdefault("local_error", []).extend(m["local_error"][w])
            series.setdefault("local_bound", []).extend(m["local_bound"][w])
            series.setdefault(f"local_error[{w}]", []).extend(m["local_error"][w])
            series.setdefault(f"local_bound[{w}]", []).extend(m["local_bound"][w])
            series.setdefault(f"tail_mass[{w}]", []).extend(m["tail_mass"][w])
    for name, values in sorted(series.items()):
        row[name], row[f"{name}_se"] = mean_se(values)
    for name, values in (("aggregation_bias", "aggregation_bias"), ("acceptance_bias", "acceptance_bias")):
        row[f"{name}_max"] = max(series[values]) if series.get(values) else None
    row["bound_violations"] = len(bound_violations(rounds))
    return row


def _plot(rows: list[dict], dense: dict | None, out: Path) -> list[str]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out.mkdir(exist_ok=True)
    written = []
    strategies = sorted({r["reconstruction"] for r in rows if r["reconstruction"]})
    panels = [(q, b, label) for q, b, label in QUANTITIES]
    panels += [("tokens_per_s", None, "tokens/s"), ("latency_per_token_ms", None, "latency per token (ms)")]
    panels += [("bytes_up_per_position", None, "uplink bytes per scored position (per worker)")]
    for key, bound, label in panels:
        fig, ax = plt.subplots(figsize=(5.5, 3.6))
        for j, s in enumerate(strategies):
            pts = sorted(
                (r for r in rows if r["reconstruction"] == s and r.get(key) is not None), key=lambda r: r["top_k"]
            )
            if not pts:
                continue
            ks = [r["top_k"] for r in pts]
            se = [r.get(f"{key}_se") or 0.0 for r in pts]
            ax.errorbar(ks, [r[key] for r in pts], yerr=se, marker="o", color=f"C{j}", label=s, capsize=3)
            if bound:
                ax.plot(ks, [r[bound] for r in pts], "--", color=f"C{j}", label=f"{s}: bound")
        if dense is not None and dense.get(key) is not None:
            ax.axhline(dense[key], color="k", lw=0.8, ls=":", label="dense aggregation")
        ax.set_xscale("log", base=2)
        if key.startswith("bytes") or bound:
            ax.set_yscale("symlog", linthresh=1e-6) if bound else ax.set_yscale("log")
        ax.set_xlabel("K (top-K entries per position)")
        ax.set_ylabel(label, fontsize=8)
        ax.legend(fontsize=7)
        fig.tight_layout()
        name = f"{key}.png"
        fig.savefig(out / name, dpi=110)
        plt.close(fig)
        written.append(name)
    return written


def _fmt(v, digits: int = 3) -> str:
    if v is None:
        return "–"
    if isinstance(v, float):
        return f"{v:.{digits}g}"
    return str(v)


def write_specfed_report(out_dir: Path) -> tuple[Path, Path]:
    """summary.csv and report.md (+ report/*.png) of a SpecFed run folder."""
    out_dir = Path(out_dir)
    manifest = json.loads((out_dir / "manifest.json").read_text())
    rounds, outputs = _read_jsonl(out_dir / "rounds.jsonl"), _read_jsonl(out_dir / "outputs.jsonl")
    rows = []
    for point in manifest["grid"]:
        pr = [r for r in rounds if r["point"] == point["id"]]
        po = [o for o in outputs if o["point"] == point["id"]]
        if pr:
            rows.append(summarise_point(point, pr, po))
    columns = list(dict.fromkeys(k for r in rows for k in r))
    summary = out_dir / "summary.csv"
    with open(summary, "w", newline="", encoding="utf-8") as fh:
        w = csv.DictWriter(fh, fieldnames=columns)
        w.writeheader()
        for r in rows:
            w.writerow({k: r.get(k) for k in columns})
    dense = next((r for r in rows if r["scheme"] == "specfed-dense"), None)
    topk = [r for r in rows if r["scheme"] == "specfed"]
    plots = _plot(topk, dense, out_dir / "report") if topk else []
    lines = [f"# SpecFed run: {manifest['experiment']}", ""]
    workers = manifest.get("workers", {})
    lines += ["Workers (w_m normalised; a lost worker's weight is shared among the others from then on):", ""]
    for name, wk in workers.items():
        lines.append(
            f"* {name}: w = {wk['weight']:.3f}, model {json.dumps(wk['settings']['drafter']) if wk.get('settings') else '?'}"
            + (f", LOST: {wk['lost']}" if wk.get("lost") else "")
        )
    drafted = [r["drafter_bytes_up"] for r in rounds if r.get("drafter") == "agent"]
    if drafted:
        lines += [
            "",
            f"Drafted by the drafting agent: {sum(drafted) / len(drafted):.0f} uplink bytes per round (q dense, float32).",
        ]
    lines += [
        "",
        "| K | strategy | α | agg. bias (bound) | acc. bias (bound) | local err. (bound) | B up/pos | tok/s | ms/token |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in ([dense] if dense else []) + topk:
        lines.append(
            f"| {r['top_k'] or 'V (dense)'} | {r['reconstruction'] or '–'} | {_fmt(r['acceptance_rate'])} | "
            f"{_fmt(r.get('aggregation_bias'))} ± {_fmt(r.get('aggregation_bias_se'), 2)} ({_fmt(r.get('aggregation_bound'))}) | "
            f"{_fmt(r.get('acceptance_bias'))} ± {_fmt(r.get('acceptance_bias_se'), 2)} ({_fmt(r.get('acceptance_bound'))}) | "
            f"{_fmt(r.get('local_error'))} ({_fmt(r.get('local_bound'))}) | {_fmt(r['bytes_up_per_position'], 5)} | "
            f"{_fmt(r['tokens_per_s'])} ± {_fmt(r['tokens_per_s_se'], 2)} | {_fmt(r['latency_per_token_ms'], 4)} |"
        )
    violations = sum(r["bound_violations"] for r in rows)
    lines += [
        "",
        f"Positions where a measured error or bias exceeded its bound (tolerance {BOUND_TOLERANCE:g}): {violations}.",
    ]
    if dense:
        lines += [
            "",
            f"Dense aggregation (K = V): aggregation bias max {_fmt(dense.get('aggregation_bias_max'))}, "
            f"acceptance bias max {_fmt(dense.get('acceptance_bias_max'))}.",
        ]
    for r in topk:
        if r["top_k"] == 8 and dense:
            saved = dense["bytes_up_per_position"] - r["bytes_up_per_position"]
            lines.append(
                f"At K = 8 ({r['reconstruction']}): acceptance-rate bias {_fmt(r.get('acceptance_bias'))} "
                f"(± {_fmt(r.get('acceptance_bias_se'), 2)}), {saved:.0f} uplink bytes saved per scored position per "
                f"worker against the dense aggregation ({saved / dense['bytes_up_per_position']:.2%})."
            )
    load = manifest.get("host_load")
    if described := describe(load):
        wall_s = manifest["finished_unix_s"] - manifest["started_unix_s"]
        lines += ["", f"Host load over the run: {described}; wall time {wall_s:.0f} s."]
        warning = busy_warning(load)
        if warning:
            lines += ["", f"> {warning}"]
    lines += ["", *[f"![{p}](report/{p})" for p in plots], ""]
    report = out_dir / "report.md"
    report.write_text("\n".join(lines))
    return summary, report
