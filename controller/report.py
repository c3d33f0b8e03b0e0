"""Plots of a one-point run's telemetry, phases and energy (part of ``specbed report DIR``).

Writes into ``DIR/report/``:
``power.png``           power (or, where no power sensor exists, CPU load) per
                        host over time, with that host's phases shaded
``latency.png``         per-round latency broken down by phase (stacked bars)
``energy_per_token.png``  joules per generated token per host ("n/a" where no
                        power sensor was readable, with the reason)
"""

from __future__ import annotations

import json
from pathlib import Path

from controller.clocksync import clock_to_controller
from controller.energy import host_power, read_series
from controller.results import AGENT_PHASES, CONTROLLER_PHASES, PHASES, read_jsonl

PHASE_COLOURS = {
    "drafting": "#4C72B0",
    "packing": "#8172B3",
    "uplink": "#937860",
    "queue": "#8C8C8C",
    "decode": "#DA8BC3",
    "batch_wait": "#BBBBBB",
    "target_forward": "#C44E52",
    "verification": "#DD8452",
    "reply": "#CCB974",
    "rollback": "#55A868",
}


def make_point_plots(run_dir: Path) -> list[Path]:
    """The plots above for a run with one distributed point (``specbed local``, ``serve``); none otherwise.

    Reads summary.json's ``points`` and the telemetry of the segment that
    recorded the point.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.collections import PolyCollection

    run_dir = Path(run_dir)
    manifest = json.loads((run_dir / "manifest.json").read_text())
    found = [(seg, pid, s) for seg in manifest.get("segments", []) for pid, s in (seg.get("summaries") or {}).items()]
    if len(found) != 1:
        return []
    seg, point, summary = found[0]
    telemetry_dir = run_dir / seg.get("telemetry_dir", "telemetry")
    rounds = [r for r in read_jsonl(run_dir / "rounds.jsonl")[0] if r.get("point") == point]
    out = run_dir / "report"
    out.mkdir(exist_ok=True)
    written = []
    hosts = list(summary.get("hosts", {}))
    clocks = seg.get("clock_offsets", {})
    t0 = min((r["ctrl_recv_ns"] for r in rounds), default=0)

    # power over time, phases shaded
    fig, axes = plt.subplots(max(len(hosts), 1), 1, figsize=(11, 2.6 * max(len(hosts), 1)), sharex=True, squeeze=False)
    for ax, host in zip(axes[:, 0], hosts, strict=False):
        path = telemetry_dir / f"{host}.csv"
        if path.is_file():
            cols = read_series(path, clock_to_controller(clocks.get(host)))
            t = [(x - t0) / 1e9 for x in cols["t_ns"]]
            power, sources = host_power(cols)
            if sources:
                ax.plot(t, [p if p is not None else float("nan") for p in power], color="black", lw=1)
                ax.set_ylabel("power (W)")
            else:
                cpu = cols.get("cpu_percent", [])
                ax.plot(t, [c if c is not None else float("nan") for c in cpu], color="grey", lw=1)
                ax.set_ylabel("CPU load (%)")
                ax.text(0.01, 0.85, "no power sensor: CPU load shown", transform=ax.transAxes, fontsize=8)
        own = CONTROLLER_PHASES if host == "controller" else AGENT_PHASES
        spans: dict[str, list[tuple[float, float]]] = {}
        for r in rounds:
            if host != "controller" and r["agent"] != host:
                continue
            for phase, (a, b) in (r.get("phases") or {}).items():
                if phase in own:
                    spans.setdefault(phase, []).append(((a - t0) / 1e9, (b - a) / 1e9))
        for phase, xranges in spans.items():  # one collection a phase: shaded from the bottom to the top
            ax.broken_barh(
                xranges, (0, 1), transform=ax.get_xaxis_transform(), color=PHASE_COLOURS[phase], alpha=0.25, lw=0
            )
        ax.set_title(host, fontsize=9, loc="left")
    axes[-1, 0].set_xlabel("time since first round (s, controller clock)")
    handles = [plt.Rectangle((0, 0), 1, 1, color=PHASE_COLOURS[p], alpha=0.4) for p in PHASES]
    fig.legend(handles, PHASES, loc="upper right", fontsize=7, ncol=4)
    _margins(fig, top=0.6, gap=0.4)
    written.append(out / "power.png")
    fig.savefig(written[-1], dpi=110)
    plt.close(fig)

    # per-round latency breakdown
    fig, ax = plt.subplots(figsize=(11, 4))
    shown = rounds[:200]
    bottoms = [0.0] * len(shown)
    for phase in PHASES:  # stacked bars 0.9 wide, one collection a phase
        boxes = []
        for i, r in enumerate(shown):
            span = (r.get("phases") or {}).get(phase)
            h = (span[1] - span[0]) / 1e6 if span else 0.0
            if h > 0:
                b = bottoms[i]
                boxes.append([(i - 0.45, b), (i + 0.45, b), (i + 0.45, b + h), (i - 0.45, b + h)])
                bottoms[i] = b + h
        ax.add_collection(PolyCollection(boxes, facecolors=PHASE_COLOURS[phase], edgecolors="none", label=phase))
    ax.autoscale_view()
    ax.set_ylim(bottom=0)
    ax.set_xlabel(f"round (first {len(shown)} of {len(rounds)}, in arrival order)")
    ax.set_ylabel("latency (ms)")
    ax.set_title("per-round latency by phase (reply and rollback belong to the previous round)")
    ax.legend(fontsize=7, ncol=4)
    _margins(fig)
    written.append(out / "latency.png")
    fig.savefig(written[-1], dpi=110)
    plt.close(fig)

    # energy per token per host
    fig, ax = plt.subplots(figsize=(7, 3.8))
    values = [summary["hosts"][h]["joules_per_generated_token"] for h in hosts]
    ax.bar(hosts, [v or 0.0 for v in values], color="#4C72B0")
    top = max([v for v in values if v is not None], default=0.0) or 1.0
    ax.set_ylim(0, top * 1.2)
    for i, v in enumerate(values):
        ax.text(i, v or 0.0, f"{v:.3f} J" if v is not None else "n/a", ha="center", va="bottom", fontsize=8)
    missing = [f"{h}: {summary['hosts'][h]['power_missing']}" for h, v in zip(hosts, values, strict=True) if v is None]
    if missing:
        fig.text(0.01, 0.01, "n/a = " + "; ".join(missing), fontsize=6, wrap=True)
    ax.set_ylabel("J per generated token")
    ax.set_title("energy per generated token, per host")
    _margins(fig, bottom=0.75 if missing else 0.55)
    written.append(out / "energy_per_token.png")
    fig.savefig(written[-1], dpi=110)
    plt.close(fig)
    return written


def _margins(fig, left=0.8, right=0.2, top=0.4, bottom=0.55, gap=0.0) -> None:
    """Fixed margins in inches, since these plots' labels have fixed sizes; tight_layout would draw each
    figure once more to measure it (0.95 s -> 0.6 s for the three plots of a tiny run).  ``gap`` is the
    space between stacked axes."""
    w, h = fig.get_size_inches()
    rows = fig.axes[0].get_subplotspec().get_gridspec().nrows if fig.axes else 1
    axes_h = (h - top - bottom - (rows - 1) * gap) / rows
    fig.subplots_adjust(left=left / w, right=1 - right / w, top=1 - top / h, bottom=bottom / h, hspace=gap / axes_h)
