"""Clock offset of each agent against the controller, NTP-style.

The controller sends ``TIME_PING`` at T1 (its clock); the agent stamps
receipt T2 and reply T3 (its clock); the controller stamps receipt T4.

    offset θ = ((T2 - T1) + (T3 - T4)) / 2     agent clock minus controller clock
    delay  δ = (T4 - T1) - (T3 - T2)            round trip minus the agent's hold time

If the two one-way delays differ, θ is off by at most δ / 2, so the samples
with the smallest δ are kept.  Bursts at session start and between prompts
give several points in time; with two or more, a line θ(t) = θ0 + drift·t
is fitted through each burst's best sample, so a 20 ppm drift (12 ms in ten
minutes) does not leak into long runs.
"""

from __future__ import annotations

from dataclasses import dataclass, field


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
        """(offset at t=0 in ns, drift in ns per ns, uncertainty in ns).

        Drift is fitted only when the best points span at least one second.
        Uncertainty is half the largest delay among the points used.
        """
        points = self.best_points()
        if not points:
            raise ValueError("no clock samples")
        uncertainty = max(p.delay_ns for p in points) // 2
        span = points[-1].t_ctrl_ns - points[0].t_ctrl_ns
        if len(points) < 2 or span < 1_000_000_000:
            best = min(points, key=lambda s: s.delay_ns)
            return best.offset_ns, 0.0, best.delay_ns // 2
        n = len(points)
        mt = sum(p.t_ctrl_ns for p in points) / n
        mo = sum(p.offset_ns for p in points) / n
        var = sum((p.t_ctrl_ns - mt) ** 2 for p in points)
        drift = sum((p.t_ctrl_ns - mt) * (p.offset_ns - mo) for p in points) / var
        return mo - drift * mt, drift, uncertainty

    def offset_at(self, t_ctrl_ns: int) -> float:
        offset0, drift, _ = self.fit()
        return offset0 + drift * t_ctrl_ns

    def to_controller(self, t_agent_ns: int) -> int:
        """An agent timestamp on the controller's clock (unchanged before the first sample)."""
        if not self.samples:
            return t_agent_ns
        offset0, drift, _ = self.fit()
        # t_agent = t_ctrl + offset0 + drift * t_ctrl  =>  solve for t_ctrl
        return round((t_agent_ns - offset0) / (1.0 + drift))

    def describe(self) -> dict:
        """For the manifest: offset and its uncertainty in ns, drift in ppm, sample counts."""
        if not self.samples:
            return {"offset_ns": None, "uncertainty_ns": None, "drift_ppm": None, "samples": 0}
        offset0, drift, unc = self.fit()
        latest = self.best_points()[-1].t_ctrl_ns
        return {
            "offset_ns": round(offset0 + drift * latest),
            "uncertainty_ns": int(unc),
            "drift_ppm": drift * 1e6,
            "samples": self.samples,
            "bursts": len(self.bursts),
            "best_delay_ns": min(p.delay_ns for p in self.best_points()),
            "method": "NTP four timestamps over the agent's ZeroMQ link; lowest-delay sample per burst",
        }
