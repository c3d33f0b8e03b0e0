"""The plots of a run's report (report/*.png), from summary rows alone.

Every plot shows configurations as they are in summary.csv: one series or
bar per configuration, never an average of distinct ones; error bars come
from repetitions (the SE over seeds) and are absent where n = 1.
"""

from __future__ import annotations

import math
from collections import defaultdict
from pathlib import Path
from typing import Any

from controller.answers import rate_se as answers_rate_se

SCHEME_COLOURS = {
    "top-k": "#4C72B0",
    "full-distribution": "#C44E52",
    "colocated": "#55A868",
    "target-only": "#8C8C8C",
}


def _mean(values: list[float]) -> float | None:
    values = [v for v in values if v is not None]
    return sum(values) / len(values) if values else None


# --- plots -----------------------------------------------------------------------------------------


def _setting(row: dict, key: str) -> str:
    return f"uplink {format_rate(row.get(key))}" if key == "uplink_rate_bps" else f"{key}={row.get(key)}"


def _label(row: dict, varying: list[str]) -> str:
    return ", ".join(_setting(row, k) for k in varying) or row["scheme"]


def _varying(rows: list[dict], exclude: set[str]) -> list[str]:
    keys = (
        "reconstruction",
        "sampling",
        "prob_dtype",
        "index_dtype",
        "temperature",
        "draft_length",
        "top_k",
        "agents",
        "draft_policy",
        "uplink_rate_bps",
        "batching",
        "bandwidth_policy",
    )
    return [k for k in keys if k not in exclude and len({str(r.get(k)) for r in rows}) > 1]


def _adaptive(row: dict) -> bool:
    """γ chosen online (a draft policy or a Multi-SPIN band policy), not fixed by the profile."""
    return str(row.get("draft_policy") or "fixed") != "fixed" or str(row.get("bandwidth_policy") or "none").startswith(
        "multispin"
    )


def format_rate(bps: Any) -> str:
    """An uplink rate for people: 8 kbit/s, 1 Mbit/s; n/a when there is none."""
    try:
        v = float(bps)
    except (TypeError, ValueError):
        return "n/a"
    if math.isnan(v):
        return "n/a"
    for unit, scale in (("Gbit/s", 1e9), ("Mbit/s", 1e6), ("kbit/s", 1e3)):
        if v >= scale:
            return f"{v / scale:.4g} {unit}"
    return f"{v:.4g} bit/s"


def policy_columns(rows: list[dict]) -> list[tuple[str, str]]:
    """Summary-table columns for the link and policy settings, only where a run has them.

    ``policy`` and ``mean γ`` appear once some configuration chooses γ online or shares a band,
    ``uplink`` once some configuration emulates a rate, ``batching`` when it differs between
    configurations; ``table_cell`` renders them.
    """
    cols = []
    if any(_adaptive(r) or str(r.get("bandwidth_policy") or "none") != "none" for r in rows):
        cols += [("policy", "policy"), ("mean_draft_length", "mean γ")]
    if any(format_rate(r.get("uplink_rate_bps")) != "n/a" for r in rows):
        cols.append(("uplink_rate_bps", "uplink"))
    if len({str(r.get("batching")) for r in rows}) > 1:
        cols.append(("batching", "batching"))
    return cols


def table_cell(row: dict, key: str) -> Any:
    """A summary table's value for ``key``, with the derived columns of ``policy_columns``."""
    if key == "policy":
        return "-" if row["scheme"] == "target-only" else policy_key(row)  # the table has its own mean γ column
    if key == "uplink_rate_bps":
        return format_rate(row.get(key))
    return row.get(key)


def _baseline_lines(ax, rows: list[dict], metric: str) -> None:
    for scheme, style in (("full-distribution", "--"), ("colocated", "-."), ("target-only", ":")):
        values = [r[metric] for r in rows if r["scheme"] == scheme and r[metric] is not None]
        if values:
            v = max(values) if metric == "tokens_per_s" else values[0]
            ax.axhline(v, color=SCHEME_COLOURS[scheme], ls=style, lw=1.2, label=f"{scheme} ({v:.3g})")


def _save(plt, fig, path: Path, caption: str) -> tuple[Path, str]:
    """Lay out, write and close a figure; (path, caption) for the report."""
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path, caption


def make_plots(rows: list[dict], out: Path) -> list[tuple[Path, str]]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out.mkdir(exist_ok=True)
    written: list[tuple[Path, str]] = []
    topk = [r for r in rows if r["scheme"] == "top-k" and r["tokens_per_s"] is not None]

    def series(rows_: list[dict], x: str) -> dict[str, list[dict]]:
        varying = _varying(rows_, {x})
        groups: dict[str, list[dict]] = defaultdict(list)
        for r in rows_:
            groups[_label(r, varying)].append(r)
        return {k: sorted(v, key=lambda r: r[x]) for k, v in groups.items()}

    if len({r["top_k"] for r in topk}) > 1:
        fig, (a1, a2) = plt.subplots(1, 2, figsize=(12, 4.4))
        for label, rs in series(topk, "top_k").items():
            ks = [r["top_k"] for r in rs]
            a1.plot(ks, [r["tokens_per_s"] for r in rs], "o-", label=label)
            a2.plot(ks, [r["bytes_up_per_draft_token"] for r in rs], "o-", label=label)
        _baseline_lines(a1, rows, "tokens_per_s")
        _baseline_lines(a2, rows, "bytes_up_per_draft_token")
        for ax in (a1, a2):
            ax.set_xscale("log", base=2)
            ax.set_xlabel("K (top-K entries sent per draft token)")
            ax.grid(alpha=0.3)
            ax.legend(fontsize=7)
        a2.set_yscale("log")
        a1.set_ylabel("tokens / s")
        a2.set_ylabel("uplink bytes per draft token")
        a1.set_title("throughput against K")
        a2.set_title("payload size against K")
        written.append(
            _save(
                plt,
                fig,
                out / "k_sweep.png",
                "Throughput and uplink bytes per draft token against K; baselines as lines.",
            )
        )

        sampled = [r for r in topk if r["mean_tv_distance"] is not None]
        if sampled:
            fig, (a1, a2) = plt.subplots(1, 2, figsize=(12, 4.4))
            for label, rs in series(sampled, "top_k").items():
                ks = [r["top_k"] for r in rs]
                a1.plot(ks, [r["mean_tv_distance"] for r in rs], "o-", label=f"TV, {label}")
                a2.errorbar(
                    ks,
                    [r["acceptance_rate"] for r in rs],
                    yerr=[r["acceptance_rate_se"] or 0 for r in rs],
                    fmt="o-",
                    capsize=3,
                    label=label,
                )
            tails = sorted({(r["top_k"], r["mean_tail_mass"]) for r in sampled if r["mean_tail_mass"] is not None})
            if tails:
                by_k: dict[int, list[float]] = defaultdict(list)
                for k, t in tails:
                    by_k[k].append(t)
                ks = sorted(by_k)
                a1.plot(ks, [sum(by_k[k]) / len(by_k[k]) for k in ks], "k--", lw=1, label="tail mass outside top K")
            _baseline_lines(a2, rows, "acceptance_rate")
            for ax in (a1, a2):
                ax.set_xscale("log", base=2)
                ax.set_xlabel("K")
                ax.grid(alpha=0.3)
                ax.legend(fontsize=7)
            a1.set_ylabel("mean per draft token")
            a1.set_title("reconstruction error (TV) and tail mass")
            a2.set_ylabel("acceptance rate")
            a2.set_title("acceptance against K")
            written.append(
                _save(
                    plt,
                    fig,
                    out / "fidelity.png",
                    "Fidelity against K: TV distance of the reconstruction, tail mass, acceptance.",
                )
            )

    # γ as fixed by the profile; configurations that choose γ online are in the policy plots
    spec = [r for r in rows if r["scheme"] != "target-only" and r["tokens_per_s"] is not None and not _adaptive(r)]
    if len({r["draft_length"] for r in spec}) > 1:
        fig, (a1, a2) = plt.subplots(1, 2, figsize=(12, 4.4))
        for label, rs in series(spec, "draft_length").items():
            gs = [r["draft_length"] for r in rs]
            a1.plot(gs, [r["acceptance_rate"] for r in rs], "o-", label=label)
            a2.plot(gs, [r["tokens_per_s"] for r in rs], "o-", label=label)
        _baseline_lines(a2, [r for r in rows if r["scheme"] == "target-only"], "tokens_per_s")
        for ax in (a1, a2):
            ax.set_xlabel("γ (draft length)")
            ax.grid(alpha=0.3)
            ax.legend(fontsize=7)
        a1.set_ylabel("acceptance rate")
        a2.set_ylabel("tokens / s")
        a1.set_title("acceptance against γ")
        a2.set_title("throughput against γ")
        written.append(
            _save(plt, fig, out / "gamma_sweep.png", "Acceptance and throughput against the draft length γ.")
        )

    written.extend(_policy_plots(rows, out, plt))

    shown = []
    for scheme in ("target-only", "colocated", "full-distribution", "top-k"):
        candidates = [r for r in rows if r["scheme"] == scheme and r["tokens_per_s"] is not None]
        if candidates:
            best = max(candidates, key=lambda r: r["tokens_per_s"])
            shown.append(best)
    if len(shown) > 1:  # one scheme alone is in the other plots
        fig, (a1, a2) = plt.subplots(1, 2, figsize=(12, 4.4))
        # the scheme, then the settings that vary among its configurations (the scheme has no space)
        names = [short_label(r, rows).replace(" ", "\n", 1) for r in shown]
        colours = [SCHEME_COLOURS[r["scheme"]] for r in shown]
        a1.bar(
            names, [r["tokens_per_s"] for r in shown], color=colours, yerr=[r["tokens_per_s_std"] or 0 for r in shown]
        )
        for i, r in enumerate(shown):
            a1.text(i, r["tokens_per_s"], f"{r['tokens_per_s']:.2f}", ha="center", va="bottom", fontsize=8)
        a1.set_ylabel("tokens / s")
        a1.set_title("schemes side by side (fastest setting of each)")
        ups = [r["bytes_up_per_draft_token"] for r in shown]
        wired = [u for u in ups if u]
        floor = min(wired) / 3 if wired else 1.0
        a2.bar(
            names,
            [u if u else floor for u in ups],
            color=[c if u else "white" for c, u in zip(colours, ups, strict=True)],
            edgecolor=colours,
        )
        a2.set_yscale("log")
        a2.set_ylim(floor, (max(wired) if wired else 10.0) * 3)
        for i, u in enumerate(ups):
            a2.text(
                i,
                u if u else floor,
                f"{u:.0f} B" if u else "in-process\n(no wire)",
                ha="center",
                va="bottom",
                fontsize=8,
            )
        a2.set_ylabel("uplink bytes per draft token (log)")
        a2.set_title("bytes on the wire")
        for ax in (a1, a2):
            ax.tick_params(axis="x", labelsize=7)
        written.append(
            _save(plt, fig, out / "baselines.png", "The fastest setting of each scheme, measured in this run.")
        )
    return written


def policy_key(row: dict) -> str:
    """The policy as configured (groups one policy's points across uplink rates)."""
    if row.get("bandwidth_policy") not in (None, "none"):
        label = str(row["bandwidth_policy"])
        return f"{label}, γ={row['draft_length']}" if label == "equal-split" else label
    if row.get("draft_policy") in (None, "fixed"):
        return f"fixed γ={row['draft_length']}"
    return str(row["draft_policy"])


def policy_label(row: dict) -> str:
    """How a configuration chose γ and shared the band, in a few words."""
    if row.get("bandwidth_policy") not in (None, "none"):
        label = str(row["bandwidth_policy"])
        if label == "equal-split":
            return f"{label}, γ={row['draft_length']}"
        mean = row.get("mean_draft_length")
        return f"{label} (mean γ={float(mean):.2f})" if mean not in (None, "") else label
    if row.get("draft_policy") in (None, "fixed"):
        return f"fixed γ={row['draft_length']}"
    mean = row.get("mean_draft_length")
    # labelled by what it did, not by the γ it started from
    return f"{row['draft_policy']} (mean γ={float(mean):.2f})" if mean not in (None, "") else str(row["draft_policy"])


def _policy_plots(rows: list[dict], out: Path, plt) -> list[tuple[Path, str]]:
    """Measured goodput beside the policies' predictions: against the uplink rate, or side by side."""
    modelled = [
        r
        for r in rows
        if r["scheme"] == "top-k"
        and r["tokens_per_s"] is not None
        and (r.get("predicted_tokens_per_s_calibrated") is not None or r["predicted_tokens_per_s"] is not None)
    ]
    if not modelled:
        return []
    rates = sorted({r["uplink_rate_bps"] for r in modelled if r["uplink_rate_bps"] is not None})
    groups: dict[str, list[dict]] = defaultdict(list)
    for r in modelled:
        groups[policy_key(r)].append(r)
    if len(rates) > 1:
        fig, (a1, a2) = plt.subplots(1, 2, figsize=(12, 4.6))
        for i, (label, rs) in enumerate(sorted(groups.items())):
            rs = sorted((r for r in rs if r["uplink_rate_bps"] is not None), key=lambda r: r["uplink_rate_bps"])
            xs = [r["uplink_rate_bps"] for r in rs]
            colour = f"C{i}"
            adaptive = not label.startswith("fixed")
            if adaptive:
                label += " (mean γ " + ", ".join(f"{float(r['mean_draft_length']):.2f}" for r in rs) + ")"
            a1.errorbar(
                xs,
                [r["tokens_per_s"] for r in rs],
                yerr=[answers_rate_se(r) or 0 for r in rs],
                fmt="o-",
                color=colour,
                lw=2.2 if adaptive else 1.2,
                capsize=3,
                label=f"{label} measured",
            )
            a1.plot(
                xs,
                [r.get("predicted_tokens_per_s_calibrated") for r in rs],
                "x--",
                color=colour,
                lw=1,
                label=f"{label} predicted from calibration",
            )
            a2.plot(xs, [r["mean_draft_length"] for r in rs], "o-", color=colour, label=label)
        for ax in (a1, a2):
            ax.set_xscale("log")
            ax.set_xlabel("uplink rate (bit/s)")
            ax.grid(alpha=0.3)
        a1.legend(fontsize=6, ncol=2)
        a2.legend(fontsize=7)
        a1.set_ylabel("goodput (tokens / s)")
        a1.set_title("measured (solid, ± SE over seeds) and predicted from calibration (dashed)")
        a2.set_ylabel("mean γ per round")
        a2.set_title("draft length chosen")
        return [
            _save(
                plt,
                fig,
                out / "policies_vs_rate.png",
                "Goodput against the uplink rate for every draft policy, measured beside predicted.",
            )
        ]
    # one bar per configuration: distinct configurations are never averaged together
    varying = _varying(modelled, {"draft_policy", "bandwidth_policy", "draft_length"})
    configs = sorted(modelled, key=policy_key)
    labels = [
        policy_label(r) + "".join(f"\n{_setting(r, k)}" for k in varying) + f"\nn = {r.get('repetitions') or 1}"
        for r in configs
    ]
    measured = [r["tokens_per_s"] for r in configs]
    # error bars only from repetitions: the SE over seeds; none with one repetition
    spread = [answers_rate_se(r) or 0 for r in configs]
    fig, ax = plt.subplots(figsize=(max(6, 2.8 * len(labels)), 4.6))
    xs = range(len(labels))
    bars = (
        (measured, "#4C72B0", "measured, whole point (± SE over seeds)", spread),
        (
            [r.get("measured_tokens_per_s_calibrated") for r in configs],
            "#55A868",
            "measured, rounds after calibration (± SE)",
            [r.get("measured_tokens_per_s_calibrated_se") or 0 for r in configs],
        ),
        (
            [r.get("predicted_tokens_per_s_calibrated") for r in configs],
            "#DD8452",
            "predicted from the calibration rounds (± SE)",
            [r.get("predicted_tokens_per_s_calibrated_se") or 0 for r in configs],
        ),
        ([r["predicted_tokens_per_s"] for r in configs], "#BBBBBB", "hindsight diagnostic (not a prediction)", None),
    )
    for j, (values, colour, name, err) in enumerate(bars):
        at = [x + (j - 1.5) * 0.2 for x in xs]
        ax.bar(at, [v or 0 for v in values], 0.2, yerr=err, capsize=3, color=colour, label=name)
        for x, v in zip(at, values, strict=True):
            if v is not None:
                ax.text(x, v, f"{v:.2f}", ha="center", va="bottom", fontsize=6)
    ax.set_xticks(list(xs), labels, fontsize=8)
    ax.set_ylabel("goodput (tokens / s)")
    ax.set_title("measured and predicted goodput per policy")
    ax.legend(fontsize=7)
    ax.grid(alpha=0.3, axis="y")
    return [
        _save(
            plt,
            fig,
            out / "policies.png",
            "Measured goodput beside each configuration's predicted goodput (one bar per configuration; "
            "error bars: SE over seeds, none where n = 1).",
        )
    ]


def short_label(row: dict, rows: list[dict]) -> str:
    """The scheme and only the settings that vary among that scheme's rows."""
    same = [r for r in rows if r["scheme"] == row["scheme"]]
    varying = _varying(same, set())
    return row["scheme"] + (" " + ", ".join(_setting(row, k) for k in varying) if varying else "")
