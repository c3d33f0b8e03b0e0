"""Clock offset of each agent against the controller, NTP-style.

The controller sends ``TIME_PING`` at T1 (its clock); the agent stamps
receipt T2 and reply T3 (its clock); the controller stamps receipt T4.

    offset θ = ((T2 - T1) + (T3 - T4)) / 2     agent clock minus controller clock
    delay  δ = (T4 - T1) - (T3 - T2)            round trip minus the agent's hold time

If the two one-way delays differ, θ is off by at most δ / 2 whatever the
asymmetry, so estimates come from the samples with the smallest δ: on a
loaded host a ping that waited for the CPU has a large δ and is filtered
out.  Bursts at session start and between prompts give several points in
time.  Offset: the lowest-delay sample over the whole window of samples,
with its δ / 2 as a hard error bound.  Drift: a line θ(t) = θ0 + drift·t
through each burst's best sample, fitted only when those points span at
least ``MIN_DRIFT_SPAN_NS`` (a minute) and only from bursts whose best delay
is close to the window's best; over shorter spans, sub-millisecond noise in
θ would be read as hundreds of ppm and extrapolated (a 20 ppm drift moves
θ by 1.2 ms per minute, below that noise over a few seconds).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

MIN_DRIFT_SPAN_NS = 60_000_000_000  # drift is fitted only over a minute or more of bursts
FILTER_SLACK_NS = 200_000  # a burst's best delay within 2x the window's best + 0.2 ms is used for drift


@dataclass(frozen=True)
class ClockSample:
    offset_ns: float  # θ, agent minus controller
    delay_ns: int  # δ
    t_ctrl_ns: int  # midpoint of T1 and T4 on the controller's clock


@dataclass
class ClockEstimator:
    """Offset estimates for one agent; ``to_controller`` maps its timestamps."""

    bursts: list[list[ClockSample]] = field(default_factory=list)

    def new_burst(self) -> None:
        self.bursts.append([])

    def add(self, t1: int, t2: int, t3: int, t4: int) -> ClockSample:
        if not self.bursts:
            self.new_burst()
        sample = ClockSample(((t2 - t1) + (t3 - t4)) / 2, (t4 - t1) - (t3 - t2), (t1 + t4) // 2)
        self.bursts[-1].append(sample)
        return sample

    def best_points(self) -> list[ClockSample]:
        """The lowest-delay sample of each burst."""
        return [min(b, key=lambda s: s.delay_ns) for b in self.bursts if b]

    @property
    def samples(self) -> int:
        return sum(len(b) for b in self.bursts)

    def fit(self) -> tuple[float, float, int]:
        """(offset at t=0 in ns, drift in ns per ns, error bound in ns).

        The bound is δ / 2 of the sample the offset comes from (plus the
        largest residual of the drift line when a drift is fitted).
        """
        points = self.best_points()
        if not points:
            raise ValueError("no clock samples")
        best = min(points, key=lambda s: s.delay_ns)
        # bursts whose best ping also waited (a loaded host) say little about the line
        limit = 2 * best.delay_ns + FILTER_SLACK_NS
        good = [p for p in points if p.delay_ns <= limit]
        span = good[-1].t_ctrl_ns - good[0].t_ctrl_ns
        if len(good) < 3 or span < MIN_DRIFT_SPAN_NS:
            return best.offset_ns, 0.0, best.delay_ns // 2
        n = len(good)
        mt = sum(p.t_ctrl_ns for p in good) / n
        mo = sum(p.offset_ns for p in good) / n
        var = sum((p.t_ctrl_ns - mt) ** 2 for p in good)
        drift = sum((p.t_ctrl_ns - mt) * (p.offset_ns - mo) for p in good) / var
        offset0 = mo - drift * mt
        residual = max(abs(p.offset_ns - offset0 - drift * p.t_ctrl_ns) for p in good)
        return offset0, drift, int(max(p.delay_ns for p in good) // 2 + residual)

    def offset_at(self, t_ctrl_ns: int) -> float:
        offset0, drift, _ = self.fit()
        return offset0 + drift * t_ctrl_ns

    def to_controller(self, t_agent_ns: int) -> int:
        """An agent timestamp on the controller's clock (unchanged before the first sample)."""
        if not self.samples:
            return t_agent_ns
        offset0, drift, _ = self.fit()
        return to_controller_ns(t_agent_ns, offset0, drift)

    def describe(self) -> dict:
        """For the manifest: offset and its uncertainty in ns, drift in ppm, sample counts."""
        if not self.samples:
            return {"offset_ns": None, "uncertainty_ns": None, "error_bound_ns": None, "drift_ppm": None, "samples": 0}
        offset0, drift, unc = self.fit()
        latest = self.best_points()[-1].t_ctrl_ns
        return {
            "offset_ns": round(offset0 + drift * latest),
            "offset0_ns": round(offset0),  # at controller t = 0: with drift_ppm, what clock_to_controller maps by
            "uncertainty_ns": int(unc),
            "error_bound_ns": int(unc),
            "drift_ppm": drift * 1e6,
            "samples": self.samples,
            "bursts": len(self.bursts),
            "best_delay_ns": min(p.delay_ns for p in self.best_points()),
            "method": "NTP four timestamps over the agent's ZeroMQ link; lowest-delay sample of the window, "
            "drift only over >= 60 s of low-delay bursts",
        }


def to_controller_ns(t_agent_ns: int, offset0_ns: float, drift: float) -> int:
    """An agent timestamp on the controller's clock, given the fitted line θ(t) = θ0 + drift·t.

    t_agent = t_ctrl + θ0 + drift·t_ctrl, solved for t_ctrl.
    """
    return round((t_agent_ns - offset0_ns) / (1.0 + drift))


def clock_to_controller(clock: dict | None) -> Callable[[int], int] | None:
    """Agent ns -> controller ns from a manifest's clock entry (``ClockEstimator.describe()``); None without one.

    The one mapping of recorded agent timestamps (telemetry) onto the
    controller's clock; the same line as ``ClockEstimator.to_controller``.
    Entries written before ``offset0_ns`` was recorded are mapped by their
    latest offset (the same thing when no drift was fitted).
    """
    if not clock or clock.get("offset_ns") is None:
        return None
    drift = (clock.get("drift_ppm") or 0.0) * 1e-6
    offset0 = clock.get("offset0_ns", clock["offset_ns"])
    return lambda t: to_controller_ns(t, offset0, drift)
