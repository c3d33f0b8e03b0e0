"""Per-host energy, power, memory and phase latency from telemetry and rounds.

Power is integrated on the controller's clock after the run (no sensor is
read on the critical path).  A host's power is the sum of the sources it
has: ``power_total_w`` (Jetson rails), ``gpu_power_w`` (NVML) and CPU package
power derived from RAPL's ``cpu_energy_uj`` counter.  Energy over the
generation window uses cumulative counters where they exist (``gpu_energy_mj``,
``cpu_energy_uj``) and the trapezoid integral of power otherwise.  Where a
host has no power source every energy field is null and ``power_missing``
says why.
"""

from __future__ import annotations

import bisect
import csv
from collections.abc import Callable, Iterable
from pathlib import Path

from controller.phases import AGENT_PHASES, CONTROLLER_PHASES, PHASES

POWER_COLUMNS = ("power_total_w", "gpu_power_w")
COUNTER_COLUMNS = {"gpu_energy_mj": 1e-3, "cpu_energy_uj": 1e-6}  # to joules
MEMORY_COLUMNS = ("proc_rss_bytes", "gpu_mem_used_bytes")


def read_series(path: Path, to_ctrl: Callable[[int], int] | None = None) -> dict[str, list]:
    """A telemetry CSV as columns; ``t_ns`` mapped to the controller's clock; missing cells None."""
    with open(path, newline="", encoding="utf-8") as fh:
        reader = csv.reader(fh)
        header = next(reader)
        cols: dict[str, list] = {c: [] for c in header}
        for row in reader:
            for c, v in zip(header, row, strict=False):
                cols[c].append(None if v == "" else float(v))
    t = [int(v) for v in cols["t_ns"]]
    cols["t_ns"] = [to_ctrl(v) for v in t] if to_ctrl else t
    return cols


def host_power(cols: dict[str, list]) -> tuple[list[float | None], list[str]]:
    """Total power per sample (W) and the sources it sums; None where no source read."""
    n = len(cols["t_ns"])
    sources = [c for c in POWER_COLUMNS if c in cols and any(v is not None for v in cols[c])]
    rapl = cols.get("cpu_energy_uj")
    if rapl and sum(v is not None for v in rapl) >= 2:
        sources.append("cpu_energy_uj (RAPL, differentiated)")
    power: list[float | None] = []
    for i in range(n):
        total, seen = 0.0, False
        for c in POWER_COLUMNS:
            v = cols.get(c, [None] * n)[i]
            if v is not None:
                total, seen = total + v, True
        if rapl and i > 0 and rapl[i] is not None and rapl[i - 1] is not None:
            dt = (cols["t_ns"][i] - cols["t_ns"][i - 1]) / 1e9
            if dt > 0:
                total, seen = total + (rapl[i] - rapl[i - 1]) * 1e-6 / dt, True
        power.append(total if seen else None)
    return power, sources


def integrate(t_ns: list[int], power_w: list[float | None], intervals: Iterable[tuple[int, int]]) -> float | None:
    """Joules over the union of ``intervals`` (ns), trapezoid rule, linear interpolation.

    Returns None when there is no power reading inside any interval's span.
    """
    pts = [(t, p) for t, p in zip(t_ns, power_w, strict=True) if p is not None]
    if len(pts) < 2:
        return None
    merged: list[list[int]] = []
    for a, b in sorted((min(a, b), max(a, b)) for a, b in intervals):
        if merged and a <= merged[-1][1]:
            merged[-1][1] = max(merged[-1][1], b)
        else:
            merged.append([a, b])
    ts = [t for t, _ in pts]
    ps = [p for _, p in pts]

    def at(t: float) -> float:
        i = bisect.bisect_left(ts, t)
        if i <= 0:
            return ps[0]
        if i >= len(ts):
            return ps[-1]
        t0, t1 = ts[i - 1], ts[i]
        return ps[i - 1] + (ps[i] - ps[i - 1]) * (t - t0) / (t1 - t0)

    total = 0.0
    covered = False
    for a, b in merged:
        knots = [a] + [t for t in ts if a < t < b] + [b]
        for t0, t1 in zip(knots, knots[1:], strict=False):
            total += (at(t0) + at(t1)) / 2 * (t1 - t0) / 1e9
        covered = covered or (ts[0] <= b and ts[-1] >= a)
    return total if covered else None


def counter_delta(t_ns: list[int], values: list, start_ns: int, end_ns: int) -> tuple[float | None, int]:
    """Increase of a cumulative counter over [start, end], and how many of its readings lie inside.

    NVML's energy counter is read about once a second, so the readings nearest
    a window's ends can be most of a second inside it; the counter is instead
    interpolated linearly at each end between the readings around it (clamped
    to the first or last reading where the series does not reach that far).
    None when the readings do not overlap the window.
    """
    pts = [(t, v) for t, v in zip(t_ns, values, strict=False) if v is not None]
    if len(pts) < 2 or pts[-1][0] < start_ns or pts[0][0] > end_ns:
        return None, 0
    times = [t for t, _ in pts]

    def at(x: int) -> float:
        if x <= times[0]:
            return pts[0][1]
        if x >= times[-1]:
            return pts[-1][1]
        i = bisect.bisect_right(times, x)
        (t0, v0), (t1, v1) = pts[i - 1], pts[i]
        return v0 + (v1 - v0) * (x - t0) / (t1 - t0)

    inside = sum(1 for t in times if start_ns <= t <= end_ns)
    return at(end_ns) - at(start_ns), inside


def counter_energy(cols: dict[str, list], start_ns: int, end_ns: int) -> tuple[float | None, list[str]]:
    """Joules from cumulative energy counters over the window (``counter_delta``), and the columns used."""
    total, used = 0.0, []
    for col, scale in COUNTER_COLUMNS.items():
        delta, _ = counter_delta(cols["t_ns"], cols.get(col, []), start_ns, end_ns)
        if delta is not None:
            total += delta * scale
            used.append(col)
    return (total, used) if used else (None, used)


def phase_intervals(rounds: list[dict], host: str, is_controller: bool) -> dict[str, list[tuple[int, int]]]:
    """Each phase's [start, end] intervals (controller clock) that ran on ``host``."""
    out: dict[str, list[tuple[int, int]]] = {p: [] for p in PHASES}
    for r in rounds:
        if not is_controller and r["agent"] != host:
            continue
        for phase, span in (r.get("phases") or {}).items():
            if is_controller and phase in AGENT_PHASES or not is_controller and phase in CONTROLLER_PHASES:
                continue
            out[phase].append((int(span[0]), int(span[1])))
    return out


def host_summary(
    cols: dict[str, list] | None,
    rounds: list[dict],
    host: str,
    is_controller: bool,
    window: tuple[int, int],
    tokens: int,
    missing_reason: str | None = None,
) -> dict:
    """The per-host fields of a point's live summary (summary.json's ``points``)."""
    intervals = phase_intervals(rounds, host, is_controller)
    out: dict = {
        "phase_mean_s": {p: (sum(b - a for a, b in iv) / len(iv) / 1e9 if iv else None) for p, iv in intervals.items()},
        "energy_j": None,
        "joules_per_generated_token": None,
        "mean_power_w": None,
        "peak_memory_bytes": None,
        "phase_energy_j": {p: None for p in PHASES},
        "samples": 0,
        "power_sources": [],
        "power_missing": missing_reason or "no telemetry from this host",
    }
    if not cols or not cols["t_ns"]:
        return out
    out["samples"] = len(cols["t_ns"])
    peaks = [
        max(v for v in cols[c] if v is not None)
        for c in MEMORY_COLUMNS
        if c in cols and any(v is not None for v in cols[c])
    ]
    out["peak_memory_bytes"] = int(max(peaks)) if peaks else None
    power, sources = host_power(cols)
    if not sources:
        out["power_missing"] = missing_reason or "no power sensor readable on this host"
        return out
    out["power_sources"] = sources
    out["power_missing"] = None
    in_window = [p for t, p in zip(cols["t_ns"], power, strict=True) if p is not None and window[0] <= t <= window[1]]
    out["mean_power_w"] = sum(in_window) / len(in_window) if in_window else None
    energy, counters = counter_energy(cols, *window)
    if energy is None:
        energy = integrate(cols["t_ns"], power, [window])
    else:
        out["energy_source"] = counters
    out["energy_j"] = energy
    if energy is not None and tokens:
        out["joules_per_generated_token"] = energy / tokens
    out["phase_energy_j"] = {p: (integrate(cols["t_ns"], power, iv) if iv else None) for p, iv in intervals.items()}
    return out
