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
                          for the in-process schemes: nothing crosses a wire);
                          ``_se`` its cluster-robust SE over (seed, prompt)
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
``predicted_tokens_per_s``  hindsight diagnostic: the draft or bandwidth policy's
                          model, the sum over agents of the mean over that agent's
                          rounds of its predicted goodput at the γ (and band share)
                          chosen, from online estimates that include those rounds
``predicted_tokens_per_s_calibrated``  a prediction made before the measurement
                          (``controller.prediction``): each agent's first rounds of
                          a point calibrate the model, which predicts the goodput of
                          its later rounds from their γ and link rate alone; mean
                          over repetitions, ``_se`` its SE (empty with one)
``measured_tokens_per_s_calibrated``  the goodput measured on those later rounds
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

from controller.acceptance_metrics import acceptance_columns
from controller.clocksync import clock_to_controller
from controller.energy import host_summary, read_series
from controller.plots import format_rate, policy_columns, table_cell  # noqa: F401  (re-exported for callers)
from controller.prediction import point_prediction
from controller.results import read_jsonl, write_json_atomic
from controller.shared_energy import attribute_shared, run_energy
from controller.stats import ratio_of_sums

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
    "bytes_up_per_draft_token_se",
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
    "predicted_tokens_per_s_calibrated",
    "predicted_tokens_per_s_calibrated_se",
    "measured_tokens_per_s_calibrated",
    "measured_tokens_per_s_calibrated_se",
)


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
            seg = self.manifest["segments"][segment] if segment < len(self.manifest["segments"]) else {}
            describes = {"controller": (seg.get("telemetry") or {}).get("controller")}
            describes |= {
                a: ((seg.get("agents") or {}).get(a) or {}).get("drafter", {}).get("telemetry") for a in agents
            }
            series = {host: self.series(segment, host) for host in ["controller", *sorted(agents)]}
            summaries = {
                host: host_summary(cols, seg_rounds, host, host == "controller", window, tokens)
                for host, cols in series.items()
            }
            attribute_shared(summaries, series, describes, window, tokens)  # a shared device counts once
            seg_energy = run_energy(summaries, tokens)["energy_j"]
            if seg_energy is not None:
                total += seg_energy
                hosts.update(h for h, s in summaries.items() if s["energy_j"] is not None)
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
            seed_of = {p["id"]: p["seed"] for p in points}
            row["bytes_up_per_draft_token"], row["bytes_up_per_draft_token_se"] = ratio_of_sums(
                ((seed_of.get(r.get("point")), r["prompt_id"]), r["bytes_up"], r["draft_length"]) for r in rounds
            )
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
            row.update(calibrated_columns([run.rounds.get(p["id"], []) for p in points]))
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


def write_summary_and_report(run_dir: Path) -> list[Path]:
    """Rewrite summary.csv, report.md and report/*.png from the run's files."""
    run = RunData(run_dir)
    rows = summary_rows(run)
    csv_path = write_summary_csv(rows, run.dir / "summary.csv")
    json_path = write_summary_json(run, rows)
    from controller.report import make_point_plots
    from controller.report_text import make_report

    report = make_report(run, rows)
    make_point_plots(run.dir)
    return [csv_path, json_path, report, *sorted((run.dir / "report").glob("*.png"))]


def write_summary_json(run: RunData, rows: list[dict]) -> Path:
    """summary.json: summary.csv's rows (``configurations``) and each distributed point's live figures
    as its last segment recorded them (``points``, see ``controller.experiment.summary``)."""
    points: dict[str, dict] = {}
    for seg in run.manifest.get("segments", []):
        points |= seg.get("summaries") or {}
    path = run.dir / "summary.json"
    write_json_atomic(path, {"configurations": rows, "points": points})
    return path


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


def calibrated_columns(points_rounds: list[list[dict]]) -> dict[str, float | None]:
    """Calibrated prediction beside measurement, mean and SE over a configuration's repetitions."""
    got = [x for x in (point_prediction(rs) for rs in points_rounds) if x]
    out: dict[str, float | None] = {}
    for key in ("predicted", "measured"):
        values = [x[f"{key}_tokens_per_s"] for x in got]
        out[f"{key}_tokens_per_s_calibrated"] = _mean(values) if values else None
        se = statistics.stdev(values) / math.sqrt(len(values)) if len(values) >= 2 else None
        out[f"{key}_tokens_per_s_calibrated_se"] = se
    return out
