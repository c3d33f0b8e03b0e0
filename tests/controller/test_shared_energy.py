"""A physical device read by several hosts counts once, split among them.

Real samplers over files shaped like the kernel's (RAPL powercap counters,
INA3221 hwmon rails), a machine-id and a board serial: two hosts that read
the same files name the same device, and the summary counts its energy once.
"""

from __future__ import annotations

import pytest

from agent.telemetry import JetsonSampler, RaplSampler
from controller.energy import host_summary
from controller.shared_energy import attribute_shared, run_energy
from tests.agent.fake_jtop import make_ina3221_tree, set_rail

S = 1_000_000_000


def machine(tmp_path, name: str, watts: float):
    """A machine: its machine-id file and one RAPL package whose counter we advance by ``watts``."""
    root = tmp_path / name
    pkg = root / "powercap" / "intel-rapl:0"
    pkg.mkdir(parents=True)
    (pkg / "max_energy_range_uj").write_text("262143328850\n")
    (pkg / "energy_uj").write_text("1000\n")
    (root / "machine-id").write_text(f"{name:0>32}\n")
    return root, watts


def sample(streams, machines, seconds: int):
    """Advance every machine's counter once a second; every host's sampler reads it; returns columns per host."""
    cols = {host: {"t_ns": [], "cpu_energy_uj": []} for host in streams}
    for t in range(seconds + 1):
        if t:
            for root, watts in machines:
                counter = root / "powercap" / "intel-rapl:0" / "energy_uj"
                counter.write_text(f"{int(counter.read_text()) + int(watts * 1e6)}\n")
        for host, sampler in streams.items():
            cols[host]["t_ns"].append(t * S)
            cols[host]["cpu_energy_uj"].append(sampler.read()["cpu_energy_uj"])
    return cols


def summarise(cols, describes, window, tokens):
    hosts = {h: host_summary(c, [], h, h == "controller", window, tokens) for h, c in cols.items()}
    naive = sum(s["energy_j"] for s in hosts.values())
    attribute_shared(hosts, cols, describes, window, tokens)
    return hosts, naive


def test_two_hosts_on_one_machine_count_its_rapl_once(tmp_path):
    (a_root, _), (b_root, _) = m_a, m_b = machine(tmp_path, "a", 10.0), machine(tmp_path, "b", 4.0)

    def rapl(root):
        return RaplSampler(root / "powercap", machine_id_paths=[str(root / "machine-id")])

    streams = {"controller": rapl(a_root), "agent-0": rapl(a_root), "agent-1": rapl(b_root)}
    describes = {h: [s.describe()] for h, s in streams.items()}
    assert describes["controller"][0]["device"] == describes["agent-0"][0]["device"] == f"rapl:{'a':0>32}"
    assert describes["agent-1"][0]["device"] != describes["controller"][0]["device"]
    cols = sample(streams, [m_a, m_b], seconds=5)
    hosts, naive = summarise(cols, describes, (0, 5 * S), tokens=10)
    assert naive == pytest.approx(50 + 50 + 20)  # machine a's energy counted twice
    assert hosts["controller"]["energy_j"] == pytest.approx(25.0)  # half of machine a
    assert hosts["agent-0"]["energy_j"] == pytest.approx(25.0)
    assert hosts["agent-1"]["energy_j"] == pytest.approx(20.0)  # machine b alone
    assert hosts["agent-0"]["energy_devices"][f"rapl:{'a':0>32}"]["hosts"] == ["agent-0", "controller"]
    total = run_energy(hosts, tokens=10)
    assert total["energy_j"] == pytest.approx(50 + 20)
    assert total["joules_per_generated_token"] == pytest.approx(7.0)
    assert len(total["devices"]) == 2


def test_streams_without_device_names_stay_per_host(tmp_path):
    """Telemetry from before devices were named: each host's energy is its own, as it was."""
    root, watts = m = machine(tmp_path, "a", 10.0)
    streams = {h: RaplSampler(root / "powercap", machine_id_paths=[str(root / "machine-id")]) for h in ("x", "y")}
    cols = sample(streams, [m], seconds=2)
    hosts, naive = summarise(cols, {}, (0, 2 * S), tokens=4)
    assert hosts["x"]["energy_j"] == hosts["y"]["energy_j"] == pytest.approx(20.0)
    assert run_energy(hosts, 4)["energy_j"] == pytest.approx(naive) == pytest.approx(40.0)


def test_two_processes_on_one_jetson_board_count_its_rails_once(tmp_path):
    driver = make_ina3221_tree(tmp_path)
    serial = tmp_path / "serial-number"
    serial.write_bytes(b"1421822056789\x00")  # the device tree's string ends in a NUL
    streams = {
        h: JetsonSampler(hwmon_root=driver, jtop_factory=lambda: None, serial_paths=[str(serial)]) for h in ("o1", "o2")
    }
    # jtop_factory returning None fails to start: rails only, as on a board without the jtop service
    describes = {h: [s.describe()] for h, s in streams.items()}
    assert describes["o1"][0]["device"] == describes["o2"][0]["device"] == "jetson:1421822056789"
    cols = {h: {"t_ns": [], "power_total_w": []} for h in streams}
    for t in range(4):
        set_rail(driver, "1-0040", 1, ma=1200 + 100 * t)  # the GPU rail ramps
        for h, s in streams.items():
            cols[h]["t_ns"].append(t * S)
            cols[h]["power_total_w"].append(s.read()["power_total_w"])
    hosts, naive = summarise(cols, describes, (0, 3 * S), tokens=3)
    device = naive / 2
    assert hosts["o1"]["energy_j"] == pytest.approx(device / 2)
    assert run_energy(hosts, 3)["energy_j"] == pytest.approx(device)
