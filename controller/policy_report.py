"""report.md sections for draft and bandwidth policies: predictions made before the measurement,
Multi-SPIN's gain over equal split with its SE, and the allocation each policy chose.

Predictions come from ``controller.prediction`` (calibration rounds, then a
prediction of the later rounds); the policies' own hindsight figure is shown
only as a labelled diagnostic.  Gains over equal split are paired by seed:
each seed's goodput ratio, then the mean and its SE over seeds; a gain is
stated only when it exceeds twice its SE.
"""

from __future__ import annotations

import math
import statistics
from collections import defaultdict
from pathlib import Path

from controller.prediction import CALIBRATION_ROUNDS
from controller.stats import distinguishable


def _f(v, spec=".3g") -> str:
    return "n/a" if v is None else format(v, spec)


def predictions_section(rows: list[dict], label) -> list[str]:
    """Predicted (from calibration) beside measured, for every configuration with a policy model."""
    shown = [r for r in rows if r.get("predicted_tokens_per_s_calibrated") is not None]
    if not shown:
        return []
    lines = [
        "## Predictions made before the measurement",
        "",
        f"Calibration: for each agent and grid point, its first {CALIBRATION_ROUNDS} rounds give the model's "
        "parameters (acceptance, drafting time per token, uplink bits and time, server time, residual cycle "
        "time); the model then predicts the goodput of that agent's later rounds from their γ and link rate "
        "alone (`controller.prediction`).  Measured: those later rounds' tokens over their wall time.  The "
        "hindsight column is the policies' online model, fed by the rounds it describes: a diagnostic.",
        "",
        "| configuration | n | measured, later rounds (SE) | predicted from calibration (SE) | "
        "predicted / measured | hindsight diagnostic |",
        "|---|---|---|---|---|---|",
    ]
    for r in shown:
        m, p = r.get("measured_tokens_per_s_calibrated"), r["predicted_tokens_per_s_calibrated"]
        lines.append(
            f"| `{label(r)}` | {r.get('repetitions')} | {_f(m)} ({_f(r.get('measured_tokens_per_s_calibrated_se'))}) "
            f"| {_f(p)} ({_f(r.get('predicted_tokens_per_s_calibrated_se'))}) | "
            f"{_f(p / m if m else None)} | {_f(r.get('predicted_tokens_per_s'))} |"
        )
    return [*lines, ""]


def point_goodput(run, point_id: str) -> float | None:
    """Tokens over wall time of one grid point (one seed)."""
    wall = sum((b - a) / 1e9 for a, b in run.windows(point_id).values())
    tokens = sum(o["tokens"] for o in run.outputs.get(point_id, []))
    return tokens / wall if wall > 0 and tokens else None


def multispin_gains(run) -> list[dict]:
    """Per bandwidth policy: the mean over seeds of its goodput / equal split's at the same seed, minus 1."""
    by_policy: dict[str, dict[int, str]] = defaultdict(dict)
    for p in run.grid:
        if p.get("bandwidth_policy") not in (None, "none"):
            by_policy[p["bandwidth_policy"]][p["seed"]] = p["id"]
    base = by_policy.get("equal-split")
    if not base:
        return []
    out = []
    for policy, seeds in by_policy.items():
        if policy == "equal-split":
            continue
        ratios = []
        for seed, pid in seeds.items():
            g, b = point_goodput(run, pid), point_goodput(run, base.get(seed, ""))
            if g and b:
                ratios.append(g / b - 1)
        if not ratios:
            continue
        se = statistics.stdev(ratios) / math.sqrt(len(ratios)) if len(ratios) >= 2 else None
        out.append({"policy": policy, "gain": statistics.mean(ratios), "gain_se": se, "seeds": len(ratios)})
    return out


def allocation(run, policy: str) -> dict[str, dict]:
    """Per agent: mean band share (Hz), mean γ and its channel (SNR dB, mean emulated rate) under one policy."""
    ids = {p["id"] for p in run.grid if p.get("bandwidth_policy") == policy}
    acc: dict[str, dict[str, list]] = defaultdict(lambda: defaultdict(list))
    for pid in ids:
        for r in run.rounds.get(pid, []):
            a = acc[r["agent"]]
            a["gamma"].append(r["draft_length"])
            if r.get("band_hz") is not None:
                a["band_hz"].append(r["band_hz"])
            ch = r.get("channel") or {}
            if ch.get("snr_db") is not None:
                a["snr_db"].append(ch["snr_db"])
            if ch.get("rate_bps") is not None:
                a["rate_bps"].append(ch["rate_bps"])
    return {
        agent: {k: (statistics.mean(v) if v else None) for k, v in a.items()} | {"rounds": len(a["gamma"])}
        for agent, a in sorted(acc.items())
    }


def multispin_section(run, out: Path) -> list[str]:
    """Gains over equal split (paired by seed, SE over seeds) and each policy's allocation."""
    gains = multispin_gains(run)
    if not gains:
        return []
    lines = ["## Multi-SPIN against equal split", ""]
    for g in gains:
        pct = f"{100 * g['gain']:+.1f}%" + (f" ± {100 * g['gain_se']:.1f}%" if g["gain_se"] is not None else "")
        if g["gain_se"] is None:
            verdict = "n = 1 seed: no SE, not distinguishable"
        elif distinguishable(g["gain"], g["gain_se"]):
            verdict = "beats equal split" if g["gain"] > 0 else "loses to equal split"
        else:
            verdict = "not distinguishable from equal split"
        lines.append(f"- **{g['policy']}**: goodput {pct} over equal split ({g['seeds']} seeds, paired): {verdict}")
    lines += ["", "Allocation (mean over the policy's rounds):", ""]
    lines += ["| policy | agent | SNR dB | band kHz | uplink kbit/s | mean γ |", "|---|---|---|---|---|---|"]
    policies = ["equal-split", *[g["policy"] for g in gains]]
    allocs = {p: allocation(run, p) for p in policies}
    for p in policies:
        for agent, a in allocs[p].items():
            lines.append(
                f"| {p} | {agent} | {_f(a.get('snr_db'))} | {_f(a['band_hz'] / 1e3 if a.get('band_hz') else None)} "
                f"| {_f(a['rate_bps'] / 1e3 if a.get('rate_bps') else None)} | {_f(a.get('gamma'))} |"
            )
    plot = _allocation_plot(allocs, gains, run, out / "allocation.png")
    if plot:
        lines += ["", f"![band per agent and goodput per policy](report/{plot.name})"]
    return [*lines, ""]


def _allocation_plot(allocs: dict, gains: list[dict], run, path: Path) -> Path | None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    path.parent.mkdir(exist_ok=True)
    agents = sorted({a for alloc in allocs.values() for a in alloc})
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(12, 4.4))
    width = 0.8 / max(len(allocs), 1)
    for j, (policy, alloc) in enumerate(allocs.items()):
        xs = [i + (j - (len(allocs) - 1) / 2) * width for i in range(len(agents))]
        a1.bar(xs, [(alloc.get(a, {}).get("band_hz") or 0) / 1e3 for a in agents], width, label=policy)
    snr = [
        next((al[a].get("snr_db") for al in allocs.values() if a in al and al[a].get("snr_db") is not None), None)
        for a in agents
    ]
    a1.set_xticks(
        range(len(agents)), [f"{a}\nSNR {_f(s, '.1f')} dB" for a, s in zip(agents, snr, strict=True)], fontsize=8
    )
    a1.set_ylabel("band share (kHz)")
    a1.set_title("allocation: band per agent against its channel")
    a1.legend(fontsize=7)
    seeds = sorted({p["seed"] for p in run.grid})
    for j, policy in enumerate(allocs):
        ids = {p["seed"]: p["id"] for p in run.grid if p.get("bandwidth_policy") == policy}
        values = [point_goodput(run, ids[s]) for s in seeds if s in ids]
        values = [v for v in values if v]
        if not values:
            continue
        se = statistics.stdev(values) / math.sqrt(len(values)) if len(values) >= 2 else 0
        a2.bar(j, statistics.mean(values), yerr=se, capsize=3, label=f"{policy} (n = {len(values)})")
        a2.scatter([j] * len(values), values, color="k", s=8, zorder=3)
    a2.set_xticks(range(len(allocs)), list(allocs), fontsize=8)
    a2.set_ylabel("goodput (tokens / s)")
    a2.set_title("goodput per seed (dots), mean ± SE over seeds")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
