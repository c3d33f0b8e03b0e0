"""Measurement windows and per-round energy on series whose energy is known in closed form."""

from __future__ import annotations

import math

import pytest

from controller.measurement import measure, round_energy

S = 1_000_000_000  # ns per second


def ramp_power(seconds: int = 10, hz: int = 10) -> dict[str, list]:
    """Jetson-style power rising linearly from 10 W at t = 0 to 20 W at t = ``seconds``."""
    t = [i * S // hz for i in range(seconds * hz + 1)]
    return {"t_ns": t, "power_total_w": [10.0 + 10.0 * ti / (seconds * S) for ti in t]}


def exact_ramp_j(a_s: float, b_s: float) -> float:
    return (10.0 * (b_s - a_s)) + 0.5 * (b_s**2 - a_s**2)  # ∫ 10 + t dt


def test_power_window_with_ends_between_readings():
    (m,) = measure(ramp_power(), "orin-1", (int(2.05 * S), int(7.93 * S)), {"jetson": "jetson:board-1"})
    assert m.device == "jetson:board-1" and m.family == "jetson" and m.source == "power_total_w"
    assert m.energy_j == pytest.approx(exact_ramp_j(2.05, 7.93), rel=1e-9)  # linear: the trapezoids are exact
    assert m.mean_power_w == pytest.approx(m.energy_j / 5.88)
    assert m.peak_power_w == pytest.approx(10 + 7.9)  # the last reading inside
    assert m.samples == 59 and m.coverage == 1.0


def test_counter_window_and_partial_coverage():
    # NVML's mJ counter at 1 Hz, 50 W, readings from t = 2 s to 8 s
    t = [i * S for i in range(2, 9)]
    cols = {"t_ns": t, "gpu_energy_mj": [50_000.0 * i for i in range(2, 9)], "gpu_power_w": [None] * len(t)}
    (m,) = measure(cols, "ctrl", (int(2.5 * S), int(6.25 * S)))
    assert m.source == "gpu_energy_mj" and m.energy_j == pytest.approx(50 * 3.75) and m.peak_power_w == 50
    (m,) = measure(cols, "ctrl", (0, 10 * S))
    assert m.coverage == pytest.approx(0.6) and m.samples == 7
    assert measure({"t_ns": t, "cpu_percent": [1.0] * len(t)}, "ctrl", (0, S)) == []  # no power source


def test_round_energies_split_overlaps_and_add_up():
    cols = ramp_power()
    # two agents' rounds overlapping on the controller between 3 and 4 s, a gap from 6 to 7 s
    windows = [(1 * S, 4 * S), (3 * S, 6 * S), (7 * S, 9 * S), None]
    e = round_energy(cols, windows)
    shared = exact_ramp_j(3, 4) / 2
    assert e[0] == pytest.approx(exact_ramp_j(1, 3) + shared)
    assert e[1] == pytest.approx(shared + exact_ramp_j(4, 6))
    assert e[2] == pytest.approx(exact_ramp_j(7, 9)) and e[3] is None
    union = exact_ramp_j(1, 6) + exact_ramp_j(7, 9)
    assert sum(e[:3]) == pytest.approx(union, rel=1e-12)
    # a host without power: every round None (not 0); a round past the last reading: None
    assert round_energy({"t_ns": cols["t_ns"], "cpu_percent": [1.0] * len(cols["t_ns"])}, windows) == [None] * 4
    late = round_energy(cols, [(1 * S, 2 * S), (20 * S, 21 * S)])
    assert math.isfinite(late[0]) and late[1] is None


def test_manifest_clock_maps_as_the_estimator_does():
    from controller.clocksync import ClockEstimator, clock_to_controller

    est = ClockEstimator()
    offset0, drift = 5_000_000.0, 40e-6  # agent 5 ms ahead, running 40 ppm fast
    for burst in range(5):  # bursts 30 s apart: a drift line is fitted (>= 60 s of bursts)
        est.new_burst()
        t1 = burst * 30 * S
        t2 = round(t1 + 50_000 + offset0 + drift * (t1 + 50_000))
        est.add(t1, t2, t2 + 1_000, t1 + 101_000)
    described = est.describe()
    assert described["drift_ppm"] == pytest.approx(40, rel=1e-3)
    to_ctrl = clock_to_controller(described)
    for t_agent in (0, 10 * S, 125 * S, 600 * S):
        assert abs(to_ctrl(t_agent) - est.to_controller(t_agent)) <= 1
    assert clock_to_controller({"offset_ns": None}) is None
