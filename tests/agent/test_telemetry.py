"""Samplers and the sampling thread: real /proc and psutil here, fakes for Jetson sensors."""

from __future__ import annotations

import time

import pytest

from agent.telemetry import (
    JetsonSampler,
    NvmlSampler,
    ProcfsSampler,
    PsutilSampler,
    RaplSampler,
    Sampler,
    TelemetryThread,
    all_samplers,
)
from tests.agent.fake_jetson import FakeJtop, make_hwmon_tree


@pytest.mark.parametrize("cls", [ProcfsSampler, PsutilSampler])
def test_host_samplers_read_this_machine(cls):
    s = cls()
    assert s.available(), s.missing_reason
    time.sleep(0.05)
    r = s.read()
    assert 0 <= r["cpu_percent"] <= 100
    assert 0 < r["mem_used_bytes"] < r["mem_total_bytes"]
    assert r["proc_rss_bytes"] > 10_000_000  # a Python process with numpy loaded


def test_procfs_and_psutil_agree():
    a, b = ProcfsSampler().read(), PsutilSampler().read()
    assert a["mem_total_bytes"] == b["mem_total_bytes"]
    assert abs(a["proc_rss_bytes"] - b["proc_rss_bytes"]) < 20_000_000


def test_rapl_wrap_correction(tmp_path):
    dom = tmp_path / "intel-rapl:0"
    dom.mkdir()
    (dom / "max_energy_range_uj").write_text("1000000\n")
    (dom / "energy_uj").write_text("999000\n")
    (tmp_path / "intel-rapl:0:0").mkdir()  # a sub-zone: ignored
    s = RaplSampler(tmp_path)
    assert s.available()
    (dom / "energy_uj").write_text("999500\n")
    assert s.read()["cpu_energy_uj"] == 500
    (dom / "energy_uj").write_text("000300\n")  # wrapped
    assert s.read()["cpu_energy_uj"] == 500 + 500 + 300


def test_rapl_missing_is_reported_not_zero(tmp_path):
    s = RaplSampler(tmp_path / "nothing")
    assert not s.available() and "energy_uj" in s.missing_reason
    assert s.describe()["available"] is False


def test_jetson_rails_from_hwmon_and_jtop(tmp_path):
    fake = FakeJtop()
    s = JetsonSampler(hwmon_glob=make_hwmon_tree(tmp_path), jtop_factory=lambda: fake)
    assert fake.started and s.available()
    r = s.read()
    assert r["power_VDD_GPU_SOC_w"] == pytest.approx(6.0)  # 5000 mV * 1200 mA
    assert r["power_VDD_CPU_CV_w"] == pytest.approx(4.0)
    assert r["power_VIN_SYS_5V0_w"] == pytest.approx(7.5)
    assert r["power_VDDQ_VDD2_1V8AO_w"] == pytest.approx(1.0)
    assert not any("NC" in k or "Sum" in k for k in r)  # skipped channels
    assert r["power_total_w"] == pytest.approx(18.5)
    assert r["ram_used_bytes"] == 4_000_000 * 1024
    assert r["gpu_load_percent"] == 37.5
    assert r["temp_cpu_c"] == 48.5
    d = s.describe()
    assert d["rails"] == ["VDD_GPU_SOC", "VDD_CPU_CV", "VIN_SYS_5V0", "VDDQ_VDD2_1V8AO"]
    assert "carrier board is not measured" in d["total_note"] and d["nvpmodel"] == "MAXN"
    s.read()
    assert fake.reads == 1  # jtop read at most every 0.5 s
    s.close()
    assert fake.closed


def test_jetson_rail_files_are_reread(tmp_path):
    glob = make_hwmon_tree(tmp_path)
    s = JetsonSampler(hwmon_glob=glob, jtop_factory=None)
    (tmp_path / "1-0040" / "hwmon" / "hwmon0" / "curr1_input").write_text("2400\n")
    assert s.read()["power_VDD_GPU_SOC_w"] == pytest.approx(12.0)


def test_no_jetson_here():
    s = JetsonSampler(hwmon_glob="/nonexistent/hwmon*", jtop_factory=None)
    assert not s.available() and "not a Jetson" in s.missing_reason


def test_every_family_describes_itself():
    for s in all_samplers():
        d = s.describe()
        assert d["available"] == (d["missing_reason"] is None)


class Flaky(Sampler):
    name = "flaky"

    def __init__(self) -> None:
        super().__init__()
        self.calls = 0

    def read(self):
        self.calls += 1
        if self.calls % 2:
            raise OSError("sensor hiccup")
        return {"flaky_w": 1.0}


def test_thread_rate_order_batches_and_failing_sampler():
    batches: list[list[dict]] = []
    flaky = Flaky()
    th = TelemetryThread([ProcfsSampler(), flaky], "test", rate_hz=20.0, on_batch=batches.append)
    th.start()
    time.sleep(1.0)
    th.stop()
    rows = [r for b in batches for r in b]
    assert len(rows) == th.samples >= 18  # 20 Hz for 1 s, 10% tolerance
    assert len(batches) >= 2  # about every 0.5 s, plus the final flush
    ts = [r["t_ns"] for r in rows]
    assert ts == sorted(ts) and len(set(ts)) == len(ts)
    gaps = [b - a for a, b in zip(ts, ts[1:], strict=False)]
    assert max(gaps) < 3 * 50_000_000  # no stalls beyond 2 missed ticks
    assert th.sampler_errors["flaky"] >= 8  # counted, not fatal
    assert any("flaky_w" in r for r in rows) and any("flaky_w" not in r for r in rows)
    assert all("proc_rss_bytes" in r for r in rows)


@pytest.mark.gpu
def test_nvml_on_a_real_gpu():
    pytest.importorskip("pynvml")
    torch = pytest.importorskip("torch")
    s = NvmlSampler()
    if not s.available() or not torch.cuda.is_available():
        pytest.skip(f"no NVIDIA GPU here: {s.missing_reason}")
    idle = s.read()
    assert idle["gpu_power_w"] > 0 and idle["gpu_mem_used_bytes"] > 0
    x = torch.randn(8192, 8192, device="cuda")
    t0 = time.monotonic()
    while time.monotonic() - t0 < 3.0:
        x = (x @ x).clamp_(-1, 1)
    torch.cuda.synchronize()
    busy = s.read()
    print(f"NVML idle {idle['gpu_power_w']:.1f} W, under matmul {busy['gpu_power_w']:.1f} W, {s.describe()}")
    assert busy["gpu_power_w"] > idle["gpu_power_w"]
    if s.has_energy:
        assert idle["gpu_energy_mj"] is not None  # the first read takes the counter
        assert s.read()["gpu_energy_mj"] is None  # then at most once per energy_interval_s
        time.sleep(1.0)
        assert s.read()["gpu_energy_mj"] > idle["gpu_energy_mj"]
