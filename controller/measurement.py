"""Energy as a measurement: one physical device, read by one host, over a window on the controller's clock.

A ``Measurement`` is what ``measure`` makes of a host's telemetry (columns as
``controller.energy.read_series`` returns them, already on the controller's
clock through ``controller.clocksync.clock_to_controller``, the one mapping
of agent timestamps) over ``[start_ns, end_ns]``: per sampler family
(``controller.shared_energy.FAMILIES``: NVML, RAPL, Jetson rails), the
energy from the cumulative counter where there is one
(``controller.energy.counter_delta``, interpolated at the window's ends),
else the trapezoid integral of power (``controller.energy.integrate``, the
same interpolation).

``round_energy`` splits a host's energy among rounds: the window of each
round (its phases' first start to last end) is cut at every other round's
ends, and each piece's energy is shared equally by the rounds running in it,
so a host's per-round energies add up to its energy over the union of the
rounds (rounds of several agents overlap on the controller; each piece is
counted once).  Gaps between rounds (clock syncs, a new prompt being
assigned) belong to no round.  ``join_round_energy`` does this for every
host of a run folder whose power was readable: the round's agent
(``agent_energy_j``) and the controller (``controller_energy_j``); None for
a host without a readable power source.  Hosts sharing one physical device
(agents on the controller's GPU) each report that device here; run totals
with each device counted once are ``controller.shared_energy``'s.
"""

from __future__ import annotations

import bisect
import logging
from dataclasses import dataclass
from pathlib import Path

from controller.clocksync import clock_to_controller
from controller.energy import counter_delta, integrate, read_series
from controller.shared_energy import FAMILIES

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Measurement:
    """One physical device's energy over one window, as read by one host.

    ``host``: the telemetry stream it came from; ``device``: the physical
    device (``agent.physical`` names, else ``<host>/<family>``);
    ``family``: the sampler family (nvml, rapl, jetson); ``start_ns``,
    ``end_ns``: the window, controller clock (ns); ``energy_j``: joules over
    the window (None: no reading covers it); ``mean_power_w``: ``energy_j``
    over the window's length (W); ``peak_power_w``: the highest power
    reading inside the window (W; from the counter's differences where the
    family has no power column; None with no two readings inside);
    ``samples``: readings inside the window; ``coverage``: the share of the
    window between the first and last readings, 0 to 1 (below 1, the
    energy's ends are extrapolated from the nearest reading); ``source``:
    the column the energy came from.
    """

    host: str
    device: str
    family: str
    start_ns: int
    end_ns: int
    energy_j: float | None
    mean_power_w: float | None
    peak_power_w: float | None
    samples: int
    coverage: float
    source: str | None


class _Series:
    """A family's readings with the missing cells dropped, for cheap windows over long runs."""

    def __init__(self, t_ns: list[int], counter: list | None, power: list | None, counter_scale: float) -> None:
        self.counter = [(t, v * counter_scale) for t, v in zip(t_ns, counter or [], strict=False) if v is not None]
        self.power = [(t, v) for t, v in zip(t_ns, power or [], strict=False) if v is not None]
        if len(self.counter) < 2:
            self.counter = []
        pts = self.counter or self.power
        self.t = [t for t, _ in pts]
        self.readable = len(pts) >= 2
        if self.power:
            self.watts = self.power
        else:  # power from the counter's differences, stamped at the later reading
            c = self.counter
            self.watts = [
                (t1, (v1 - v0) / ((t1 - t0) / 1e9)) for (t0, v0), (t1, v1) in zip(c, c[1:], strict=False) if t1 > t0
            ]

    def around(self, pts: list[tuple[int, float]], times: list[int], a: int, b: int) -> list[tuple[int, float]]:
        """The readings inside [a, b] plus one on each side: all that interpolation at a and b looks at."""
        i0 = max(0, bisect.bisect_left(times, a) - 1)
        i1 = bisect.bisect_right(times, b) + 1
        return pts[i0:i1]

    def energy_j(self, a: int, b: int) -> float | None:
        if self.counter:
            near = self.around(self.counter, self.t, a, b)
            delta, _ = counter_delta([t for t, _ in near], [v for _, v in near], a, b)
            return delta
        near = self.around(self.power, self.t, a, b)
        return integrate([t for t, _ in near], [p for _, p in near], [(a, b)])


def _families(cols: dict[str, list]) -> dict[str, tuple[_Series, str]]:
    """family -> (its readings, the column its energy comes from), for the families with >= 2 readings."""
    out = {}
    for family, (counter, power) in FAMILIES.items():
        ccol, scale = counter if counter else (None, 1.0)
        series = _Series(cols["t_ns"], cols.get(ccol) if ccol else None, cols.get(power) if power else None, scale)
        if series.readable:
            out[family] = (series, ccol if series.counter else power)
    return out


def measure(
    cols: dict[str, list], host: str, window: tuple[int, int], devices: dict[str, str] | None = None
) -> list[Measurement]:
    """One ``Measurement`` per family of ``host`` with a readable power source, over ``window`` (controller ns).

    ``devices`` maps a family to its physical device (``shared_energy.devices_read``).
    """
    a, b = window
    out = []
    for family, (series, source) in _families(cols).items():
        energy = series.energy_j(a, b)
        inside = [w for t, w in series.watts if a <= t <= b]
        span = max(0, min(b, series.t[-1]) - max(a, series.t[0]))
        out.append(
            Measurement(
                host=host,
                device=(devices or {}).get(family) or f"{host}/{family}",
                family=family,
                start_ns=a,
                end_ns=b,
                energy_j=energy,
                mean_power_w=energy / ((b - a) / 1e9) if energy is not None and b > a else None,
                peak_power_w=max(inside) if inside else None,
                samples=sum(1 for t in series.t if a <= t <= b),
                coverage=span / (b - a) if b > a else float(series.t[0] <= a <= series.t[-1]),
                source=source,
            )
        )
    return out


def round_window(record: dict) -> tuple[int, int] | None:
    """A round's first phase start to its last phase end (controller ns); None without phases."""
    spans = [s for s in (record.get("phases") or {}).values() if s and s[0] is not None and s[1] is not None]
    if not spans:
        return None
    return int(min(s[0] for s in spans)), int(max(s[1] for s in spans))


def round_energy(cols: dict[str, list], windows: list[tuple[int, int] | None]) -> list[float | None]:
    """A host's joules in each round window, pieces shared by concurrent rounds split equally (module doc).

    None for every round when the host has no readable power source, and
    for a round no reading covers.
    """
    families = _families(cols)
    if not families:
        return [None] * len(windows)
    cuts = sorted({t for w in windows if w for t in w})
    out: list[float | None] = [0.0 if w else None for w in windows]
    # each elementary piece [cuts[i], cuts[i + 1]] once, shared by the rounds that contain it
    active: dict[int, list[int]] = {}
    for k, w in enumerate(windows):
        if w:
            for i in range(bisect.bisect_left(cuts, w[0]), bisect.bisect_left(cuts, w[1])):
                active.setdefault(i, []).append(k)
    for i, rounds in active.items():
        a, b = cuts[i], cuts[i + 1]
        parts = [series.energy_j(a, b) for series, _ in families.values()]
        if any(p is None for p in parts):
            for k in rounds:
                out[k] = None
            continue
        share = sum(parts) / len(rounds)
        for k in rounds:
            if out[k] is not None:
                out[k] += share
    return out


def host_series(files: list[tuple[int, Path, dict | None]]) -> dict[str, dict[str, list]]:
    """Every host's telemetry on the controller's clock, segments of a resumed run joined in time order.

    ``files``: (segment, CSV named after its host, the host's clock entry) as ``controller.rundata`` lists them.
    """
    by_host: dict[str, dict[str, list]] = {}
    for _segment, path, clock in files:
        cols = read_series(path, clock_to_controller(clock))
        if not cols["t_ns"]:
            continue
        into = by_host.setdefault(path.stem, {"t_ns": []})
        n_before = len(into["t_ns"])
        for name in set(into) | set(cols):
            into.setdefault(name, [None] * n_before).extend(cols.get(name, [None] * len(cols["t_ns"])))
    for cols in by_host.values():
        order = sorted(range(len(cols["t_ns"])), key=cols["t_ns"].__getitem__)
        for name in cols:
            cols[name] = [cols[name][i] for i in order]
    return by_host


def join_round_energy(rounds: list[dict], series: dict[str, dict[str, list]]) -> list[dict]:
    """``agent_energy_j`` (the round's agent's host) and ``controller_energy_j`` for each round (module doc)."""
    windows = [round_window(r) for r in rounds]
    per_host: dict[str, list[float | None]] = {}
    for host, cols in series.items():
        if host == "controller":
            per_host[host] = round_energy(cols, windows)
        else:  # an agent's host works on its own rounds only
            mine = [w if r.get("agent") == host else None for r, w in zip(rounds, windows, strict=True)]
            per_host[host] = round_energy(cols, mine)
    return [
        {
            "agent_energy_j": per_host.get(r.get("agent"), [None] * len(rounds))[k],
            "controller_energy_j": per_host.get("controller", [None] * len(rounds))[k],
        }
        for k, r in enumerate(rounds)
    ]
