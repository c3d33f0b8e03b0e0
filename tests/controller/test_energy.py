"""Energy attribution on synthetic series with known integrals."""

from __future__ import annotations

import pytest

from controller.energy import counter_energy, host_power, host_summary, integrate

S = 1_000_000_000  # ns per second


def test_integrate_constant_and_ramp():
    t = [0, S, 2 * S, 3 * S]
    assert integrate(t, [10.0, 10.0, 10.0, 10.0], [(0, 3 * S)]) == pytest.approx(30.0)
    # ramp 0..30 W over 3 s: 45 J in all, 5 J in the first second... of [0.5 s, 1.5 s]: mean 10 W
    ramp = [0.0, 10.0, 20.0, 30.0]
    assert integrate(t, ramp, [(0, 3 * S)]) == pytest.approx(45.0)
    assert integrate(t, ramp, [(S // 2, 3 * S // 2)]) == pytest.approx(10.0)


def test_integrate_merges_overlapping_intervals_and_skips_missing():
    t = [0, S, 2 * S]
    assert integrate(t, [5.0, None, 5.0], [(0, S), (S // 2, 2 * S)]) == pytest.approx(10.0)
    assert integrate(t, [None, None, None], [(0, S)]) is None


def test_counters_and_rapl_power():
    cols = {"t_ns": [0, S, 2 * S], "cpu_energy_uj": [0.0, 4e6, 9e6], "gpu_energy_mj": [100.0, 200.0, 400.0]}
    energy, used = counter_energy(cols, 0, 2 * S)
    assert energy == pytest.approx(9.0 + 0.3)
    assert set(used) == {"cpu_energy_uj", "gpu_energy_mj"}
    power, sources = host_power(cols)
    assert power == [None, pytest.approx(4.0), pytest.approx(5.0)]
    assert sources == ["cpu_energy_uj (RAPL, differentiated)"]


def test_host_without_power_reports_null_with_reason():
    cols = {"t_ns": [0, S], "cpu_percent": [10.0, 20.0], "proc_rss_bytes": [1e8, 2e8]}
    rounds = [{"agent": "a", "phases": {"drafting": [0, S // 10], "decode": [S // 10, S // 5]}}]
    out = host_summary(cols, rounds, "a", False, (0, S), tokens=10)
    assert out["energy_j"] is None and out["mean_power_w"] is None and out["joules_per_generated_token"] is None
    assert out["power_missing"] == "no power sensor readable on this host"
    assert out["peak_memory_bytes"] == 200_000_000
    assert out["phase_mean_s"]["drafting"] == pytest.approx(0.1)
    assert out["phase_mean_s"]["decode"] is None  # a controller phase, not this agent's


def test_host_with_power_attributes_phases():
    cols = {"t_ns": [0, S, 2 * S], "power_total_w": [8.0, 8.0, 8.0]}
    rounds = [{"agent": "a", "phases": {"drafting": [0, S // 2], "packing": [S // 2, S]}}]
    out = host_summary(cols, rounds, "a", False, (0, 2 * S), tokens=4)
    assert out["energy_j"] == pytest.approx(16.0)
    assert out["joules_per_generated_token"] == pytest.approx(4.0)
    assert out["mean_power_w"] == pytest.approx(8.0)
    assert out["phase_energy_j"]["drafting"] == pytest.approx(4.0)


def test_counter_energy_is_interpolated_at_the_window_ends():
    """NVML's counter is read once a second: a window between readings still gets its whole energy."""

    s = 1_000_000_000
    t = [i * s // 20 for i in range(0, 201)]  # 20 Hz rows over 10 s
    counter = [(ti / s) * 100_000.0 if ti % s == 0 else None for ti in t]  # 100 W in mJ, read every 1 s
    energy, used = counter_energy({"t_ns": t, "gpu_energy_mj": counter}, s // 2, 9 * s + s // 2)
    assert used == ["gpu_energy_mj"]
    assert abs(energy - 900.0) < 1e-6  # the readings inside alone (1 s .. 9 s) would give 800 J
