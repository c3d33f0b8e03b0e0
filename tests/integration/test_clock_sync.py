"""Clock offsets estimated over the real ZeroMQ link, one agent shifted on purpose."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from controller.clocksync import ClockEstimator
from controller.local import run_local
from controller.profiles import load_experiment

_HOG = "while True:\n    pass\n"


@pytest.fixture
def cpu_hog():
    """One busy-looping process per core, beside the run: the agents' pings compete for the CPU."""
    procs = [subprocess.Popen([sys.executable, "-c", _HOG]) for _ in range(os.cpu_count() or 2)]
    yield procs
    for p in procs:
        p.kill()
    for p in procs:
        p.wait()


SHIFT_NS = 250_000_000  # agent-1 reports times 250 ms ahead of the shared monotonic clock
TOLERANCE_NS = 1_000_000  # 1 ms
PHASE_TOLERANCE_NS = 100_000_000  # 100 ms


def test_shifted_agent_offset_is_recovered(tmp_path, tiny_pair, cpu_hog):
    experiment = load_experiment("tiny", max_new_tokens=16)
    run = run_local(
        experiment,
        tmp_path / "run",
        agents=2,
        target=tiny_pair[0],
        agent_args={"agent-1": ["--clock-shift-ns", str(SHIFT_NS)]},
    )
    manifest = json.loads((tmp_path / "run" / "manifest.json").read_text())
    offsets = manifest["segments"][0]["clock_offsets"]
    assert abs(offsets["agent-0"]["offset_ns"]) < TOLERANCE_NS, offsets
    assert abs(offsets["agent-1"]["offset_ns"] - SHIFT_NS) < TOLERANCE_NS, offsets
    assert offsets["agent-1"]["uncertainty_ns"] < TOLERANCE_NS
    for name in ("agent-0", "agent-1"):
        # the reported bound covers the error actually made
        true_offset = SHIFT_NS if name == "agent-1" else 0
        assert abs(offsets[name]["offset_ns"] - true_offset) <= offsets[name]["error_bound_ns"] + 1, offsets
    assert all(p.poll() is None for p in cpu_hog)  # the hog ran for the whole test
    # Round phases are on the controller's clock: the shifted agent's send time, mapped back by the
    # true shift, within PHASE_TOLERANCE_NS (each round is mapped with the estimate of its time, an
    # early one from fewer bursts; an unapplied shift would be 250 ms off); uplink starts before the
    # controller receives.  (How long the uplink took is not bounded here: on a loaded machine an
    # agent can be descheduled between stamping its send time and sending.)
    rounds = [json.loads(line) for line in (tmp_path / "run" / "rounds.jsonl").read_text().splitlines()]
    shifted = [r for r in rounds if r["agent"] == "agent-1"]
    assert shifted
    bound = PHASE_TOLERANCE_NS
    for r in shifted:
        start, end = r["phases"]["uplink"]
        assert abs(start - (r["agent_send_ns"] - SHIFT_NS)) <= bound, (r["phases"]["uplink"], r["agent_send_ns"])
        assert 0 <= end - start and end <= r["ctrl_recv_ns"], r["phases"]["uplink"]
    assert run.summary["prompts"] == len(experiment.prompts)


def test_estimator_math_with_asymmetric_delays():
    est = ClockEstimator()
    true_offset = 5_000_000
    # controller sends at t1; out delay d1, agent holds h, back delay d2
    for t1, d1, h, d2 in [(0, 400, 100, 300), (10_000, 50, 10, 50), (20_000, 2_000, 10, 100)]:
        t2 = t1 + d1 + true_offset
        t3 = t2 + h
        t4 = t3 - true_offset + d2
        est.add(t1, t2, t3, t4)
    offset, drift, unc = est.fit()
    assert offset == true_offset  # the symmetric, lowest-delay sample wins
    assert unc == 50 and drift == 0.0
    assert est.to_controller(true_offset + 123) == 123


def test_estimator_fits_drift_across_bursts():
    est = ClockEstimator()
    drift = 20e-6  # 20 ppm
    for burst in range(5):
        est.new_burst()
        t1 = burst * 60_000_000_000  # a burst a minute
        off = 1_000 + drift * t1
        est.add(t1, int(t1 + 100 + off), int(t1 + 110 + off), t1 + 210)
    _, fitted, _ = est.fit()
    assert abs(fitted - drift) < 1e-7


def test_short_span_noise_is_not_read_as_drift():
    """Bursts over 5 s with ±0.4 ms of offset noise: no drift fitted, the lowest-delay sample's offset kept."""
    est = ClockEstimator()
    noise = [400_000, -300_000, 0, 350_000, -400_000, 200_000]
    for burst, e in enumerate(noise):
        est.new_burst()
        t1 = burst * 1_000_000_000
        delay = 100_000 if burst == 2 else 900_000
        # an asymmetric path moves θ by up to δ / 2; burst 2 is the quiet one
        out = delay // 2 + e // 2 if burst != 2 else delay // 2
        est.add(t1, t1 + out, t1 + out + 10, t1 + delay + 10)
    offset, drift, bound = est.fit()
    assert drift == 0.0
    assert abs(offset) <= bound == 50_000
