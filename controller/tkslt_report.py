"""The TK-SLT acceptance section of a report: acceptance against K and bytes, both drafting modes.

Three measurements of acceptance, each with a cluster-robust SE over the
(seed, prompt) pairs (``controller.stats``):

- *realized*: accepted / drafted on the wire, per configuration (a coin
  flip per draft, the noisiest);
- *expected on the round*: the mean of the exact Σ_x min(p, q) the verifier
  recorded per draft position (dense rounds and ``sampling: top-k`` rounds,
  where it holds the sampled q exactly);
- *paired*: on the dense baseline's own positions, Σ_x min(p, q^K) for
  every K against Σ_x min(p, q), the difference taken position by position
  (no trajectory noise between the two).

With ``sampling: full`` the payload carries the exact q(x), so its expected
acceptance equals the dense one at every K; its realized acceptance shows
that on the wire.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from controller.stats import cluster_mean, ratio_of_sums

WITHIN_POINTS = 1.0  # "within 1 point of the dense baseline"


def _cluster(point: dict, r: dict) -> tuple:
    return (point["seed"], r["prompt_id"])


def acceptance_rows(grid: list[dict], rounds: dict[str, list[dict]], rows: list[dict]) -> list[dict[str, Any]]:
    """One row per (mode, K) plus the dense baseline; empty when the run has no sampled dense rounds."""
    by_config: dict[str, list[dict]] = {}
    for p in grid:
        by_config.setdefault(p["config"], []).append(p)
    summary = {r["config"]: r for r in rows}
    dense_configs = [c for c, ps in by_config.items() if ps[0]["scheme"] == "full-distribution"]
    dense_rounds = [
        (p, r)
        for c in dense_configs
        for p in by_config[c]
        for r in rounds.get(p["id"], [])
        if r.get("expected_acceptance_topk")
    ]
    if not dense_rounds:
        return []
    out = []
    dense_bytes = summary[dense_configs[0]].get("bytes_up_per_draft_token")
    base, base_se, n, k = cluster_mean((_cluster(p, r), a) for p, r in dense_rounds for a in r["expected_acceptance"])
    realized = _realized([(p, r) for c in dense_configs for p in by_config[c] for r in rounds.get(p["id"], [])])
    out.append(
        {
            "mode": "dense",
            "top_k": None,
            "bytes_per_draft_token": dense_bytes,
            "realized": realized[0],
            "realized_se": realized[1],
            "expected": base,
            "expected_se": base_se,
            "paired_diff": 0.0,
            "paired_diff_se": 0.0,
            "positions": n,
            "clusters": k,
        }
    )
    wire = {}
    for c, ps in by_config.items():
        if ps[0]["scheme"] != "top-k" or not ps[0].get("temperature"):
            continue
        pr = [(p, r) for p in ps for r in rounds.get(p["id"], [])]
        exp = cluster_mean((_cluster(p, r), a) for p, r in pr for a in (r.get("expected_acceptance") or []))
        wire[(ps[0]["sampling"], int(ps[0]["top_k"]))] = {
            "bytes": summary[c].get("bytes_up_per_draft_token"),
            "realized": _realized(pr),
            "expected": exp,
        }
    ks = sorted({int(k) for _, r in dense_rounds for k in r["expected_acceptance_topk"]})
    for mode in ("top-k", "full"):
        fit = _bytes_fit({k: w["bytes"] for (m, k), w in wire.items() if m == mode and w["bytes"]})
        for kk in ks:
            key = str(kk)
            if mode == "top-k":
                pairs = [
                    (_cluster(p, r), ak - ad)
                    for p, r in dense_rounds
                    for ak, ad in zip(r["expected_acceptance_topk"][key], r["expected_acceptance"], strict=True)
                ]
                diff, diff_se, _, _ = cluster_mean(pairs)
                paired = cluster_mean(
                    (_cluster(p, r), a) for p, r in dense_rounds for a in r["expected_acceptance_topk"][key]
                )[0]
            else:  # the exact q(x) travels: the dense expectation at every K
                diff, diff_se, paired = 0.0, 0.0, base
            w = wire.get((mode, kk))
            measured_bytes = w["bytes"] if w else None
            out.append(
                {
                    "mode": mode,
                    "top_k": kk,
                    "bytes_per_draft_token": measured_bytes if measured_bytes else (fit(kk) if fit else None),
                    "bytes_measured": measured_bytes is not None,
                    "realized": w["realized"][0] if w else None,
                    "realized_se": w["realized"][1] if w else None,
                    "expected": (w["expected"][0] if w and w["expected"][0] is not None else paired),
                    "expected_se": w["expected"][1] if w and w["expected"][0] is not None else None,
                    "paired": paired,
                    "paired_diff": diff,
                    "paired_diff_se": diff_se,
                    "positions": n,
                    "clusters": k,
                }
            )
    return out


def _realized(pr: list[tuple[dict, dict]]) -> tuple[float | None, float | None]:
    """Per-trial acceptance, accepted / (accepted + rejections), with its cluster-robust SE.

    Drafts after a rejection are never tested, so accepted / drafted is not the per-token acceptance
    probability; accepted over tested drafts is (its i.i.d. maximum-likelihood estimate).
    """
    return ratio_of_sums(
        (_cluster(p, r), r["accepted"], r["accepted"] + (1 if r["accepted"] < r["draft_length"] else 0)) for p, r in pr
    )


def _bytes_fit(points: dict[int, float]):
    """Bytes per draft token as a + b·K, least squares over the measured K (for K not run on the wire)."""
    if len(points) < 2:
        return None
    xs, ys = list(points), list(points.values())
    mx, my = sum(xs) / len(xs), sum(ys) / len(ys)
    b = sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True)) / sum((x - mx) ** 2 for x in xs)
    return lambda k: my + b * (k - mx)


def smallest_k_within(rows: list[dict]) -> dict | None:
    """The smallest K whose paired top-K acceptance is within 1 point of the dense baseline."""
    topk = sorted((r for r in rows if r["mode"] == "top-k" and r["paired_diff"] is not None), key=lambda r: r["top_k"])
    for r in topk:
        if abs(r["paired_diff"]) * 100 <= WITHIN_POINTS:
            return r
    return None


def section(rows: list[dict], out: Path) -> list[str]:
    """Markdown lines and report/tkslt_acceptance.png; [] when there is nothing to show."""
    if not rows:
        return []
    dense = rows[0]
    plot = _plot(rows, out / "tkslt_acceptance.png")
    pct = lambda v: "n/a" if v is None else f"{100 * v:.2f}"  # noqa: E731
    lines = ["## TK-SLT acceptance", ""]
    lines.append(
        f"Dense baseline (full distribution, float32): expected acceptance {pct(dense['expected'])} "
        f"± {pct(dense['expected_se'])} % over {dense['positions']} draft positions in {dense['clusters']} "
        f"(seed, prompt) pairs; realized {pct(dense['realized'])} ± {pct(dense['realized_se'])} %; "
        f"{dense['bytes_per_draft_token']:.0f} B per draft token on the wire."
    )
    lines.append("")
    best = smallest_k_within(rows)
    if best is not None and dense["bytes_per_draft_token"] and best["bytes_per_draft_token"]:
        cut = dense["bytes_per_draft_token"] / best["bytes_per_draft_token"]
        how = "measured on the wire" if best.get("bytes_measured") else "interpolated from the measured K"
        lines.append(
            f"- **smallest K within {WITHIN_POINTS:g} point of the dense baseline** (sampling top-k, paired on the "
            f"dense positions): K = {best['top_k']}, Δα = {100 * best['paired_diff']:+.2f} ± "
            f"{100 * best['paired_diff_se']:.2f} points; {best['bytes_per_draft_token']:.1f} B per draft token "
            f"({how}), {cut:,.0f}x fewer bytes than dense."
        )
    else:
        lines.append(f"- no K of the sweep is within {WITHIN_POINTS:g} point of the dense baseline")
    lines.append(
        "- sampling full: the payload carries the exact q(x), so expected acceptance equals the dense one at every "
        "K; the realized column tests that on the wire."
    )
    lines += [
        "",
        "| mode | K | B/draft tok | realized α % (SE) | expected α % (SE) | paired Δα vs dense, points (SE) |",
        "|---|---|---|---|---|---|",
    ]
    for r in rows[1:]:
        b = r["bytes_per_draft_token"]
        bytes_cell = "n/a" if b is None else (f"{b:.1f}" if r.get("bytes_measured") else f"~{b:.1f}")
        real = "-" if r["realized"] is None else f"{pct(r['realized'])} ({pct(r['realized_se'])})"
        exp = f"{pct(r['expected'])}" + (f" ({pct(r['expected_se'])})" if r["expected_se"] is not None else "")
        diff = f"{100 * r['paired_diff']:+.2f} ({100 * r['paired_diff_se']:.2f})"
        lines.append(f"| {r['mode']} | {r['top_k']} | {bytes_cell} | {real} | {exp} | {diff} |")
    lines += [
        "",
        "Realized: accepted / tested drafts (a rejection ends a round) on the wire.  Expected: mean exact Σ min(p, q)",
        "per draft position recorded by the verifier on those rounds, over every drafted position (tested or not,",
        "so realized and expected describe different sets of positions and are not compared with each other; for K not run on the wire and for sampling",
        "full: the paired value on the dense positions).  Paired Δα: Σ min(p, q^K) − Σ min(p, q) on the dense",
        "baseline's positions.  SEs are cluster-robust over (seed, prompt); ~B: bytes interpolated linearly in K.",
        "",
    ]
    if plot:
        lines += [f"![acceptance against bytes per draft token](report/{plot.name})", ""]
    return lines


def _plot(rows: list[dict], path: Path) -> Path | None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    path.parent.mkdir(exist_ok=True)
    dense = rows[0]
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for mode, colour in (("top-k", "#4C72B0"), ("full", "#DD8452")):
        rs = [r for r in rows if r["mode"] == mode and r["bytes_per_draft_token"]]
        xs = [r["bytes_per_draft_token"] for r in rs]
        ys = [100 * (dense["expected"] + r["paired_diff"]) for r in rs]
        es = [200 * (r["paired_diff_se"] or 0) for r in rs]
        ax.errorbar(
            xs, ys, yerr=es, fmt="-o", ms=3, color=colour, capsize=2, label=f"sampling {mode}: expected, paired"
        )
        for r, x, y in zip(rs, xs, ys, strict=True):
            ax.annotate(f"K={r['top_k']}", (x, y), fontsize=6, textcoords="offset points", xytext=(2, 3))
        wr = [r for r in rs if r["realized"] is not None]
        ax.errorbar(
            [r["bytes_per_draft_token"] for r in wr],
            [100 * r["realized"] for r in wr],
            yerr=[200 * (r["realized_se"] or 0) for r in wr],
            fmt="s",
            mfc="none",
            color=colour,
            capsize=2,
            label=f"sampling {mode}: realized on the wire",
        )
    ax.errorbar(
        [dense["bytes_per_draft_token"]],
        [100 * dense["expected"]],
        yerr=[200 * dense["expected_se"]],
        fmt="D",
        color="#C44E52",
        capsize=3,
        label="dense (full distribution)",
    )
    ax.axhspan(
        100 * dense["expected"] - WITHIN_POINTS, 100 * dense["expected"] + WITHIN_POINTS, color="#C44E52", alpha=0.1
    )
    ax.set_xscale("log")
    ax.set_xlabel("uplink bytes per draft token (log)")
    ax.set_ylabel("acceptance rate (%)")
    ax.set_title("Acceptance against payload size (error bars: 2 SE; band: dense ± 1 point)", fontsize=9)
    ax.legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
