"""summary.csv, report.md and plots of a ``specbed run`` folder, from its files alone.

``specbed report DIR`` rewrites them; ``specbed compare A B`` joins two runs.

One row of summary.csv per configuration (a grid point without its seed;
repetitions are pooled and ``tokens_per_s_std`` is their spread):

``tokens_per_s``          generated tokens / generation wall time, where a
                          point's wall time is, per segment, from its first
                          draft request to its last finished prompt
``mean_accepted_per_round``  accepted drafts per verification round
``mean_tokens_per_round``  tokens emitted per round (accepted + recovered/bonus)
``acceptance_rate``       accepted drafts / drafted tokens
``acceptance_rate_se``    its binomial standard error, sqrt(α(1 − α)/drafted): the
                          drafts of a round are not independent, so read it as a
                          lower bound on the noise
``bytes_up_per_draft_token``  uplink ZMTP frame bytes per drafted token (empty
                          for the in-process schemes: nothing crosses a wire)
``latency_per_token_ms``  per prompt, (last token - first request) / tokens, averaged
``energy_j_per_token``    joules of the hosts with a readable power source
                          (listed in ``energy_hosts``) over the point's windows
                          / tokens; empty where no host had one
``mean_tail_mass``        mean probability mass outside the top K (drafter's q)
``mean_tv_distance``      mean total-variation distance between the
                          distribution drafted from and the server's
                          reconstruction, measured by the drafter
``acceptance_gap_vs_full``  acceptance_rate minus that of the full-distribution
                          baseline with the same γ, temperature and agents
``greedy_agreement``      temperature 0: mean over prompts of the common prefix
                          with the target-only output / its length
``greedy_identical``      temperature 0: share of prompts identical to target-only
``mean_draft_length``     drafted tokens per round (γ chosen by the draft policy)
``predicted_tokens_per_s``  the draft or bandwidth policy's model: the sum over
                          agents of the mean over that agent's rounds of its
                          predicted goodput at the γ (and band share) chosen
``tokens_per_s_steady``   tokens per second while every agent of the point was
                          drafting (no start-up, no tail of agents without
                          prompts): the regime the predictions describe
``batching``              verification batching mode (auto, off, homogeneous,
                          heterogeneous); ``bandwidth_policy`` the band's policy
``mean_batch_size``       payloads per target forward pass, over rounds
``mean_uplink_rate_bps``  the emulated uplink's rate as the rounds saw it
"""

from __future__ import annotations

import csv
import json
import math
import statistics
from collections import defaultdict
from pathlib import Path
from typing import Any

from controller.acceptance import acceptance_columns
from controller.energy import host_summary, read_series
from controller.report import clock_to_controller
from controller.results import read_jsonl

COLUMNS = (
    "config",
    "scheme",
    "top_k",
    "draft_length",
    "reconstruction",
    "sampling",
    "temperature",
    "prob_dtype",
    "index_dtype",
    "draft_policy",
    "uplink_rate_bps",
    "batching",
    "bandwidth_policy",
    "agents",
    "repetitions",
    "prompts",
    "prompts_expected",
    "tokens",
    "rounds",
    "wall_s",
    "tokens_per_s",
    "tokens_per_s_std",
    "mean_draft_length",
    "mean_accepted_per_round",
    "mean_tokens_per_round",
    "acceptance_rate",
    "acceptance_rate_se",
    "mean_acceptance_length",
    "acceptance_rate_per_position",
    "bytes_up_per_draft_token",
    "bytes_down_per_round",
    "latency_per_token_ms",
    "energy_j_per_token",
    "energy_hosts",
    "mean_tail_mass",
    "mean_tv_distance",
    "acceptance_gap_vs_full",
    "greedy_agreement",
    "greedy_identical",
    "predicted_tokens_per_s",
    "tokens_per_s_steady",
    "mean_uplink_rate_bps",
    "mean_batch_size",
)

SCHEME_COLOURS = {
    "top-k": "#4C72B0",
    "full-distribution": "#C44E52",
    "colocated": "#55A868",
    "target-only": "#8C8C8C",
}


def _mean(values: list[float]) -> float | None:
    values = [v for v in values if v is not None]
    return sum(values) / len(values) if values else None


class RunData:
    """A run folder read back: manifest, grid, rounds and outputs grouped by point."""

    def __init__(self, run_dir: Path) -> None:
        self.dir = Path(run_dir)
        path = self.dir / "manifest.json"
        if not path.is_file():
            raise FileNotFoundError(f"{self.dir}: no manifest.json (not a run folder)")
        self.manifest = json.loads(path.read_text())
        if self.manifest.get("kind") != "experiment":
            raise ValueError(f"{self.dir}: not a `specbed run` folder (kind {self.manifest.get('kind')!r})")
        self.grid: list[dict] = self.manifest["grid"]
        self.prompts = [p["id"] for p in self.manifest["profile"]["prompts"]]
        self.rounds: dict[str, list[dict]] = defaultdict(list)
        for r in read_jsonl(self.dir / "rounds.jsonl")[0]:
            self.rounds[r.get("point")].append(r)
        self.outputs: dict[str, list[dict]] = defaultdict(list)
        for o in read_jsonl(self.dir / "outputs.jsonl")[0]:
            self.outputs[o["point"]].append(o)
        self._series: dict[tuple[int, str], dict | None] = {}

    def series(self, segment: int, host: str) -> dict | None:
        key = (segment, host)
        if key not in self._series:
            seg = self.manifest["segments"][segment] if segment < len(self.manifest["segments"]) else {}
            folder = self.dir / seg.get("telemetry_dir", f"telemetry/segment-{segment}")
            path = folder / f"{host}.csv"
            clock = (seg.get("clock_offsets") or {}).get(host)
            self._series[key] = read_series(path, clock_to_controller(clock)) if path.is_file() else None
        return self._series[key]

    def windows(self, point: str) -> dict[int, tuple[int, int]]:
        """Per segment, [first request, last finished prompt] of a point (controller clock, ns)."""
        by_seg: dict[int, list[dict]] = defaultdict(list)
        for o in self.outputs.get(point, []):
            by_seg[o.get("segment", 0)].append(o)
        return {s: (min(o["started_ns"] for o in os_), max(o["done_ns"] for o in os_)) for s, os_ in by_seg.items()}

    def energy(self, point: str, tokens: int) -> tuple[float | None, list[str]]:
        """Joules over the point's windows on every host that took part and could measure power."""
        total, hosts = 0.0, set()
        rounds = self.rounds.get(point, [])
        outputs = self.outputs.get(point, [])
        for segment, window in self.windows(point).items():
            seg_prompts = {o["prompt_id"] for o in outputs if o.get("segment", 0) == segment}
            seg_rounds = [r for r in rounds if r["prompt_id"] in seg_prompts]
            agents = {r["agent"] for r in seg_rounds} - {"controller"}
            for host in ["controller", *sorted(agents)]:
                cols = self.series(segment, host)
                summary = host_summary(cols, seg_rounds, host, host == "controller", window, tokens)
                if summary["energy_j"] is not None:
                    total += summary["energy_j"]
                    hosts.add(host)
        return (total if hosts else None), sorted(hosts)


def steady_window(rounds: list[dict]) -> tuple[float, int]:
    """(seconds, tokens) of the span in which every agent of a point was drafting.

    Each agent's span runs from its first round's drafting start to its last
    verdict (controller clock); the steady window is their intersection, and
    its tokens are those of rounds verified inside it.  The policies' models
    predict this regime: every device busy, no start-up or tail.
    """
    spans: dict[str, list[int]] = {}
    for r in rounds:
        start = (r.get("phases") or {}).get("drafting", [r["ctrl_recv_ns"]])[0]
        span = spans.setdefault(r["agent"], [start, r["ctrl_verified_ns"]])
        span[0], span[1] = min(span[0], start), max(span[1], r["ctrl_verified_ns"])
    if not spans:
        return 0.0, 0
    lo, hi = max(a for a, _ in spans.values()), min(b for _, b in spans.values())
    if hi <= lo:
        return 0.0, 0
    return (hi - lo) / 1e9, sum(r["emitted"] for r in rounds if lo < r["ctrl_verified_ns"] <= hi)


def summary_rows(run: RunData) -> list[dict[str, Any]]:
    configs: dict[str, list[dict]] = {}
    for point in run.grid:
        configs.setdefault(point["config"], []).append(point)
    rows = []
    target_only: dict[tuple, dict[str, list[int]]] = {}
    for points in configs.values():
        p0 = points[0]
        if p0["scheme"] == "target-only" and p0["temperature"] == 0:
            for p in points:
                target_only[(p["seed"],)] = {o["prompt_id"]: o["token_ids"] for o in run.outputs.get(p["id"], [])}
    for config, points in configs.items():
        p0 = points[0]
        outputs = [o for p in points for o in run.outputs.get(p["id"], [])]
        rounds = [
            r
            for p in points
            for r in run.rounds.get(p["id"], [])
            if r["prompt_id"] in {o["prompt_id"] for o in run.outputs.get(p["id"], [])}
        ]
        tokens = sum(o["tokens"] for o in outputs)
        walls, rates = [], []
        energy_total, energy_hosts = 0.0, set()
        energy_measured = False
        for p in points:
            w = sum((b - a) / 1e9 for a, b in run.windows(p["id"]).values())
            t = sum(o["tokens"] for o in run.outputs.get(p["id"], []))
            walls.append(w)
            if w > 0 and t:
                rates.append(t / w)
            e, hosts = run.energy(p["id"], t)
            if e is not None:
                energy_measured = True
                energy_total += e
                energy_hosts.update(hosts)
        wall = sum(walls)
        drafted = sum(r["draft_length"] for r in rounds)
        accepted = sum(r["accepted"] for r in rounds)
        emitted = sum(r["emitted"] for r in rounds)
        n_rounds = len(rounds)
        distributed = p0["scheme"] in ("top-k", "full-distribution")
        speculative = p0["scheme"] != "target-only"
        row: dict[str, Any] = {c: None for c in COLUMNS}
        row.update({k: p0.get(k) for k in ("scheme", "top_k", "draft_length", "reconstruction", "sampling")})
        row.update(
            {
                k: p0.get(k)
                for k in (
                    "temperature",
                    "prob_dtype",
                    "index_dtype",
                    "agents",
                    "draft_policy",
                    "uplink_rate_bps",
                    "batching",
                    "bandwidth_policy",
                )
            }
        )
        row.update(
            {
                "config": config,
                "repetitions": len(points),
                "prompts": len(outputs),
                "prompts_expected": len(points) * len(run.prompts),
                "tokens": tokens,
                "rounds": n_rounds,
                "wall_s": wall,
                "tokens_per_s": tokens / wall if wall > 0 else None,
                "tokens_per_s_std": statistics.stdev(rates) if len(rates) >= 2 else None,
                "latency_per_token_ms": _mean(
                    [(o["done_ns"] - o["started_ns"]) / 1e6 / o["tokens"] for o in outputs if o["tokens"]]
                ),
            }
        )
        if speculative and n_rounds:
            row["mean_draft_length"] = drafted / n_rounds
            row["mean_accepted_per_round"] = accepted / n_rounds
            row["mean_tokens_per_round"] = emitted / n_rounds
            row["acceptance_rate"] = accepted / drafted if drafted else None
            if drafted:
                a = row["acceptance_rate"]
                row["acceptance_rate_se"] = math.sqrt(a * (1 - a) / drafted)
            row.update(acceptance_columns(rounds))
        if distributed and n_rounds:
            row["bytes_up_per_draft_token"] = sum(r["bytes_up"] for r in rounds) / drafted if drafted else None
            row["bytes_down_per_round"] = sum(r["bytes_down"] for r in rounds) / n_rounds
        if p0["scheme"] == "top-k" and n_rounds:
            row["mean_tail_mass"] = _mean([r.get("tail_mass") for r in rounds])
            row["mean_tv_distance"] = _mean([r.get("tv_distance") for r in rounds])
        per_agent: dict[str, list[float]] = defaultdict(list)
        for r in rounds:
            if r.get("predicted_goodput") is not None:
                per_agent[r["agent"]].append(r["predicted_goodput"])
        if per_agent and distributed:
            # the model predicts each device's goodput; the run's agents draft side by side
            row["predicted_tokens_per_s"] = sum(_mean(v) for v in per_agent.values())
        if distributed and n_rounds:
            row["mean_batch_size"] = _mean([r.get("batch_size", 1) for r in rounds])
            steady = [steady_window(run.rounds.get(p["id"], [])) for p in points]
            steady_s = sum(w for w, _ in steady)
            if steady_s > 0:
                row["tokens_per_s_steady"] = sum(t for _, t in steady) / steady_s
        rates = [(r.get("channel") or {}).get("rate_bps") for r in rounds]
        if any(v is not None for v in rates):
            row["mean_uplink_rate_bps"] = _mean(rates)
        if energy_measured and tokens:
            row["energy_j_per_token"] = energy_total / tokens
            row["energy_hosts"] = " ".join(sorted(energy_hosts))
        if p0["temperature"] == 0 and p0["scheme"] != "target-only":
            fractions, identical = [], []
            for p in points:
                ref = target_only.get((p["seed"],))
                if ref is None:
                    continue
                for o in run.outputs.get(p["id"], []):
                    want = ref.get(o["prompt_id"])
                    if want is None:
                        continue
                    common = 0
                    for a, b in zip(o["token_ids"], want, strict=False):
                        if a != b:
                            break
                        common += 1
                    fractions.append(common / max(len(want), 1))
                    identical.append(1.0 if o["token_ids"] == want else 0.0)
            row["greedy_agreement"] = _mean(fractions)
            row["greedy_identical"] = _mean(identical)
        rows.append(row)
    # acceptance gap against the full-distribution baseline of the same γ, temperature and agents
    full = {
        (r["draft_length"], r["temperature"], r["agents"]): r["acceptance_rate"]
        for r in rows
        if r["scheme"] == "full-distribution"
    }
    for r in rows:
        if r["scheme"] == "top-k" and r["acceptance_rate"] is not None:
            ref = full.get((r["draft_length"], r["temperature"], r["agents"]))
            if ref is not None:
                r["acceptance_gap_vs_full"] = r["acceptance_rate"] - ref
    return rows


def write_summary_csv(rows: list[dict], path: Path) -> Path:
    tmp = path.with_suffix(".tmp")
    with open(tmp, "w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(COLUMNS))
        writer.writeheader()
        for row in rows:
            writer.writerow({k: _csv_value(row.get(k)) for k in COLUMNS})
    tmp.replace(path)
    return path


def _csv_value(v: Any) -> Any:
    if v is None:
        return ""
    if isinstance(v, float):
        return f"{v:.6g}"
    return v


def read_summary_csv(path: Path) -> list[dict]:
    with open(path, newline="", encoding="utf-8") as fh:
        return list(csv.DictReader(fh))


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
        return "-" if row["scheme"] == "target-only" else policy_label(row)
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


# --- report.md -----------------------------------------------------------------------------------


def policy_label(row: dict) -> str:
    """How a configuration chose γ and shared the band, in a few words."""
    if row.get("bandwidth_policy") not in (None, "none"):
        label = str(row["bandwidth_policy"])
        return f"{label}, γ={row['draft_length']}" if label == "equal-split" else label
    if row.get("draft_policy") in (None, "fixed"):
        return f"fixed γ={row['draft_length']}"
    return str(row["draft_policy"])


def _policy_plots(rows: list[dict], out: Path, plt) -> list[tuple[Path, str]]:
    """Measured goodput beside the policies' predictions: against the uplink rate, or side by side."""
    modelled = [
        r
        for r in rows
        if r["scheme"] == "top-k" and r["predicted_tokens_per_s"] is not None and r["tokens_per_s"] is not None
    ]
    if not modelled:
        return []
    rates = sorted({r["uplink_rate_bps"] for r in modelled if r["uplink_rate_bps"] is not None})
    groups: dict[str, list[dict]] = defaultdict(list)
    for r in modelled:
        groups[policy_label(r)].append(r)
    if len(rates) > 1:
        fig, (a1, a2) = plt.subplots(1, 2, figsize=(12, 4.6))
        for i, (label, rs) in enumerate(sorted(groups.items())):
            rs = sorted((r for r in rs if r["uplink_rate_bps"] is not None), key=lambda r: r["uplink_rate_bps"])
            xs = [r["uplink_rate_bps"] for r in rs]
            colour = f"C{i}"
            adaptive = not label.startswith("fixed")
            a1.errorbar(
                xs,
                [r["tokens_per_s"] for r in rs],
                yerr=[r["tokens_per_s_std"] or 0 for r in rs],
                fmt="o-",
                color=colour,
                lw=2.2 if adaptive else 1.2,
                capsize=3,
                label=f"{label} measured",
            )
            a1.plot(
                xs, [r["predicted_tokens_per_s"] for r in rs], "x--", color=colour, lw=1, label=f"{label} predicted"
            )
            a2.plot(xs, [r["mean_draft_length"] for r in rs], "o-", color=colour, label=label)
        for ax in (a1, a2):
            ax.set_xscale("log")
            ax.set_xlabel("uplink rate (bit/s)")
            ax.grid(alpha=0.3)
        a1.legend(fontsize=6, ncol=2)
        a2.legend(fontsize=7)
        a1.set_ylabel("goodput (tokens / s)")
        a1.set_title("measured (solid, ± std over seeds) and predicted (dashed)")
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
    labels = sorted(groups)
    measured = [_mean([r["tokens_per_s"] for r in groups[k]]) for k in labels]
    steady = [
        _mean([r["tokens_per_s_steady"] for r in groups[k] if r["tokens_per_s_steady"] is not None]) for k in labels
    ]
    predicted = [_mean([r["predicted_tokens_per_s"] for r in groups[k]]) for k in labels]
    spread = [_mean([r["tokens_per_s_std"] or 0 for r in groups[k]]) for k in labels]
    fig, ax = plt.subplots(figsize=(max(6, 2.6 * len(labels)), 4.4))
    xs = range(len(labels))
    bars = (
        (measured, "#4C72B0", "measured, whole point", spread),
        (steady, "#55A868", "measured, all agents drafting", None),
        (predicted, "#DD8452", "predicted by the policy's model", None),
    )
    for j, (values, colour, name, err) in enumerate(bars):
        at = [x + (j - 1) * 0.27 for x in xs]
        ax.bar(at, [v or 0 for v in values], 0.27, yerr=err, capsize=3, color=colour, label=name)
        for x, v in zip(at, values, strict=True):
            if v is not None:
                ax.text(x, v, f"{v:.2f}", ha="center", va="bottom", fontsize=7)
    ax.set_xticks(list(xs), labels, fontsize=8)
    ax.set_ylabel("goodput (tokens / s)")
    ax.set_title("measured and predicted goodput per policy")
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3, axis="y")
    return [_save(plt, fig, out / "policies.png", "Measured goodput beside each policy's predicted goodput.")]


def _fmt(v: Any, spec: str = ".3g") -> str:
    if v is None or v == "":
        return "n/a"
    if isinstance(v, float):
        if math.isnan(v):
            return "n/a"
        return format(v, spec)
    return str(v)


def short_label(row: dict, rows: list[dict]) -> str:
    """The scheme and only the settings that vary among that scheme's rows."""
    same = [r for r in rows if r["scheme"] == row["scheme"]]
    varying = _varying(same, set())
    return row["scheme"] + (" " + ", ".join(_setting(row, k) for k in varying) if varying else "")


def make_report(run: RunData, rows: list[dict]) -> Path:
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

    measured = [r for r in rows if r["tokens_per_s"] is not None]
    if measured:
        fastest = max(measured, key=lambda r: r["tokens_per_s"])
        lines += ["## Answers", ""]
        lines.append(f"- **fastest**: `{short_label(fastest, rows)}` at {_fmt(fastest['tokens_per_s'])} tokens/s")
        wire = [r for r in measured if r["bytes_up_per_draft_token"] is not None]
        if wire:
            cheapest = min(wire, key=lambda r: r["bytes_up_per_draft_token"])
            lines.append(
                f"- **fewest bytes**: `{short_label(cheapest, rows)}` at {_fmt(cheapest['bytes_up_per_draft_token'])} "
                "uplink bytes per draft token"
            )
        energy = [r for r in measured if r["energy_j_per_token"] is not None]
        if energy:
            e = min(energy, key=lambda r: r["energy_j_per_token"])
            lines.append(
                f"- **least energy**: `{short_label(e, rows)}` at {_fmt(e['energy_j_per_token'])} J/token "
                f"(hosts: {e['energy_hosts']})"
            )
        else:
            lines.append("- **energy**: not measured (no host had a readable power source; see manifest.json)")
        tv = [r for r in measured if r["mean_tv_distance"] is not None]
        if tv:
            f = min(tv, key=lambda r: r["mean_tv_distance"])
            lines.append(
                f"- **most faithful reconstruction**: `{short_label(f, rows)}`, mean TV {_fmt(f['mean_tv_distance'])}"
            )
        greedy = [r for r in measured if r["greedy_agreement"] is not None]
        if greedy:
            worst = min(greedy, key=lambda r: r["greedy_agreement"])
            lines.append(
                f"- **greedy agreement with target-only**: lowest {_fmt(worst['greedy_agreement'])} "
                f"(`{short_label(worst, rows)}`)"
            )
        lines.append("")

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


def write_summary_and_report(run_dir: Path) -> list[Path]:
    """Rewrite summary.csv, report.md and report/*.png from the run's files."""
    run = RunData(run_dir)
    rows = summary_rows(run)
    csv_path = write_summary_csv(rows, run.dir / "summary.csv")
    report = make_report(run, rows)
    return [csv_path, report, *sorted((run.dir / "report").glob("*.png"))]


# --- compare ---------------------------------------------------------------------------------------

COMPARED = (
    "tokens_per_s",
    "acceptance_rate",
    "mean_tokens_per_round",
    "bytes_up_per_draft_token",
    "latency_per_token_ms",
    "energy_j_per_token",
    "mean_tv_distance",
)


def compare_runs(a: Path, b: Path) -> list[dict]:
    """Rows of two runs joined on configuration; ``ratio`` is B/A of tokens/s."""
    rows_a = {r["config"]: r for r in summary_rows(RunData(a))}
    rows_b = {r["config"]: r for r in summary_rows(RunData(b))}
    out = []
    for config in [*rows_a, *[c for c in rows_b if c not in rows_a]]:
        ra, rb = rows_a.get(config), rows_b.get(config)
        row = {"config": config}
        for key in COMPARED:
            row[f"{key}_a"] = ra[key] if ra else None
            row[f"{key}_b"] = rb[key] if rb else None
        ta, tb = row["tokens_per_s_a"], row["tokens_per_s_b"]
        row["tokens_per_s_ratio"] = tb / ta if ta and tb else None
        out.append(row)
    return out
