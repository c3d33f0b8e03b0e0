"""Samplers and the sampling thread: real /proc and psutil here, fake files and a fake jtop for Jetson sensors."""

from __future__ import annotations

import os
import time

import pytest

from agent.telemetry import (
    FAMILIES,
    JetsonSampler,
    NvmlSampler,
    ProcfsSampler,
    PsutilSampler,
    RaplSampler,
    Sampler,
    TelemetryThread,
    auto_samplers,
)
from tests.agent.fake_jtop import FakeJtop, make_ina3221_tree, set_rail

# --- host samplers, for real ---------------------------------------------------------------------


@pytest.mark.parametrize("cls", [PsutilSampler, ProcfsSampler])
def test_host_samplers_read_this_machine(cls):
    s = cls(os.getpid())
    assert s.available(), s.missing_reason
    time.sleep(0.05)
    r = s.read()
    assert set(r) == set(s.metrics)
    assert 0.0 <= r["cpu_percent"] <= 100.0
    assert 0 < r["mem_used_bytes"] < r["mem_total_bytes"]
    assert r["proc_rss_bytes"] > 10_000_000  # a Python process with pytest and numpy loaded
    d = s.describe()
    assert d["available"] and d["missing_reason"] is None and set(d["source"]) == set(s.metrics)
    s.close()


def test_psutil_cpu_right_after_priming_is_missing_not_zero():
    r = PsutilSampler().read()  # within 10 ms of the priming call: no interval to measure over
    assert r["cpu_percent"] is None


def test_procfs_and_psutil_agree():
    a, b = ProcfsSampler().read(), PsutilSampler().read()
    assert a["mem_total_bytes"] == b["mem_total_bytes"]
    assert abs(a["proc_rss_bytes"] - b["proc_rss_bytes"]) < 20_000_000


# --- RAPL, with fake powercap files --------------------------------------------------------------


def rapl_domain(root, name, energy_uj, max_uj=1_000_000):
    d = root / name
    d.mkdir()
    (d / "max_energy_range_uj").write_text(f"{max_uj}\n")
    (d / "energy_uj").write_text(f"{energy_uj}\n")
    return d / "energy_uj"


def test_rapl_wrap_correction(tmp_path):
    pkg0 = rapl_domain(tmp_path, "intel-rapl:0", 999_000)
    rapl_domain(tmp_path, "intel-rapl:0:0", 5)  # the core sub-zone: inside the package, ignored
    s = RaplSampler(tmp_path)
    assert s.available() and s.metrics == ("cpu_energy_uj",)
    pkg0.write_text("999500\n")
    assert s.read() == {"cpu_energy_uj": 500}
    pkg0.write_text("300\n")  # wrapped at 1_000_000
    assert s.read() == {"cpu_energy_uj": 500 + 500 + 300}
    pkg0.write_text("1300\n")
    assert s.read() == {"cpu_energy_uj": 2300}
    s.close()


def test_rapl_sums_packages(tmp_path):
    p0, p1 = rapl_domain(tmp_path, "intel-rapl:0", 10), rapl_domain(tmp_path, "intel-rapl:1", 999_990)
    s = RaplSampler(tmp_path)
    p0.write_text("110\n")
    p1.write_text("40\n")  # wrapped: 10 + 40
    assert s.read()["cpu_energy_uj"] == 100 + 50
    assert "intel-rapl:1/energy_uj" in s.describe()["source"]["cpu_energy_uj"]


def test_rapl_missing_says_why(tmp_path):
    s = RaplSampler(tmp_path / "nothing")
    assert not s.available() and "energy_uj" in s.missing_reason
    d = s.describe()
    assert d == {"sampler": "rapl", "available": False, "missing_reason": s.missing_reason}


def test_rapl_unreadable_counter_names_domain_and_error(tmp_path):
    # Permissions do not stop root (CI runs as root); a directory in the counter's place fails for everyone.
    counter = rapl_domain(tmp_path, "intel-rapl:0", 10)
    counter.unlink()
    counter.mkdir()
    s = RaplSampler(tmp_path)
    assert not s.available()
    assert "intel-rapl:0" in s.missing_reason and "directory" in s.missing_reason


# --- Jetson, with fake INA3221 files and a fake jtop ---------------------------------------------


def test_jetson_rails_from_hwmon_and_jtop(tmp_path):
    fake = FakeJtop()
    s = JetsonSampler(
        hwmon_root=make_ina3221_tree(tmp_path), jtop_factory=lambda: fake, serial_paths=[str(tmp_path / "none")]
    )
    assert fake.started and fake.ok() and s.available()
    r = s.read()
    assert r["power_VDD_GPU_SOC_w"] == 5000 * 1200 / 1e6  # mV * mA
    assert r["power_VDD_CPU_CV_w"] == 5000 * 800 / 1e6
    assert r["power_VIN_SYS_5V0_w"] == 5000 * 1500 / 1e6
    assert r["power_VDDQ_VDD2_1V8AO_w"] == 5000 * 200 / 1e6
    assert not any("NC" in k or "Sum" in k or "sum" in k for k in r)  # skipped channels
    assert r["power_total_w"] == pytest.approx(6.0 + 4.0 + 7.5 + 1.0)
    assert r["ram_used_bytes"] == 4_000_000 * 1024 and r["ram_total_bytes"] == 31_000_000 * 1024
    assert r["ram_shared_bytes"] == 1_000_000 * 1024
    assert r["gpu_util_percent"] == 37.5
    assert r["temp_CPU_c"] == 48.5 and r["temp_tj_c"] == 49.1
    assert r["temp_CV0_c"] is None  # offline zone (jtop reports -256): missing, not a temperature
    d = s.describe()
    assert d["rails"] == ["VDD_GPU_SOC", "VDD_CPU_CV", "VIN_SYS_5V0", "VDDQ_VDD2_1V8AO"]
    assert "sum of the rails listed" in d["total_note"] and "carrier board is not measured" in d["total_note"]
    assert d["board"]["nvpmodel"] == "MAXN" and d["board"]["jetpack"] == "6.1"
    # no device-tree serial here: the board is named by jtop's serial number (jetson-stats 7.x)
    assert d["device"] == "jetson:1421822056789"
    assert "INA3221" in d["source"]["power_VDD_GPU_SOC_w"] and "jtop" in d["source"]["ram_used_bytes"]
    s.close()
    assert fake.closed


def test_jtop_read_at_most_every_half_second(tmp_path):
    fake = FakeJtop()
    s = JetsonSampler(hwmon_root=make_ina3221_tree(tmp_path), jtop_factory=lambda: fake)
    first, second = s.read(), s.read()
    assert fake.reads == 1
    assert first["ram_used_bytes"] is not None
    assert second["ram_used_bytes"] is None and second["temp_CPU_c"] is None  # not read this tick: missing
    assert second["power_VDD_GPU_SOC_w"] == 6.0  # the rails are read every tick
    time.sleep(0.55)
    assert s.read()["ram_used_bytes"] is not None and fake.reads == 2


def test_jetson_rail_files_are_reread(tmp_path):
    driver = make_ina3221_tree(tmp_path)
    s = JetsonSampler(hwmon_root=driver, jtop_factory=lambda: FakeJtop(fail_start=True))
    assert s.available() and "failed to start" in s.describe()["jtop"]
    assert "ram_used_bytes" not in s.metrics
    set_rail(driver, "1-0040", 1, ma=2400)
    set_rail(driver, "1-0041", 2, mv=4800)
    r = s.read()
    assert r["power_VDD_GPU_SOC_w"] == 12.0
    assert r["power_VDDQ_VDD2_1V8AO_w"] == 4800 * 200 / 1e6
    assert r["power_total_w"] == pytest.approx(12.0 + 4.0 + 7.5 + 0.96)


class BareJtop(FakeJtop):
    """A board whose jtop reports no shared memory and no GPU load."""

    @property
    def memory(self) -> dict:
        return {"RAM": {"used": 1, "tot": 2}}

    @property
    def gpu(self) -> dict:
        return {"ga10b": {"status": {"railgate": True}}}


def test_jtop_without_a_sensor_gives_none(tmp_path):
    s = JetsonSampler(hwmon_root=tmp_path / "no-ina3221", jtop_factory=BareJtop)
    r = s.read()
    assert s.available() and s.describe()["rails"] == []
    assert r["gpu_util_percent"] is None
    assert r["power_total_w"] is None and r["ram_shared_bytes"] is None and r["ram_used_bytes"] == 1024


def test_no_jetson_here():
    s = JetsonSampler(hwmon_root="/nonexistent", jtop_factory=lambda: FakeJtop(fail_start=True))
    assert not s.available() and "not a Jetson" in s.missing_reason and "jtop failed" in s.missing_reason


# --- choosing samplers -----------------------------------------------------------------------------


def test_auto_samplers_lists_every_family_available_or_why_not():
    samplers = auto_samplers(os.getpid())
    names = [s.name for s in samplers] + [s.name for s in samplers.missing]
    assert sorted(names) == ["jetson", "nvml", "psutil", "rapl"]
    assert all(s.available() for s in samplers) and samplers[0].name == "psutil"
    for d in samplers.describe_missing():
        assert d["available"] is False and d["missing_reason"]
    assert [d["sampler"] for d in samplers.describe()][0] == "psutil"
    samplers.close()


def test_auto_samplers_include_and_host_choice():
    assert [s.name for s in auto_samplers(include=["procfs"])] == ["procfs"]
    assert auto_samplers(os.getpid(), "procfs")[0].name == "procfs"  # the older call shape
    assert auto_samplers(host_sampler="procfs")[0].name == "procfs"
    with pytest.raises(ValueError, match="unknown sampler families"):
        auto_samplers(include=["psutil", "ipmi"])
    with pytest.raises(ValueError, match="host_sampler"):
        auto_samplers(host_sampler="top")
    assert set(FAMILIES) == {"psutil", "procfs", "rapl", "nvml", "jetson"}


# --- the sampling thread ---------------------------------------------------------------------------


class Flaky(Sampler):
    """Raises on every other read."""

    name = "flaky"

    def __init__(self) -> None:
        super().__init__()
        self.metrics = ("flaky_w",)
        self.calls = 0

    def read(self):
        self.calls += 1
        if self.calls % 2:
            raise OSError("sensor hiccup")
        return {"flaky_w": 1.0}


class Slow(Sampler):
    """Takes 130 ms a read: 20 Hz cannot keep up."""

    name = "slow"

    def read(self):
        time.sleep(0.13)
        return {}


def test_thread_rate_order_batches_and_failing_sampler():
    batches: list[list[dict]] = []
    flaky = Flaky()
    th = TelemetryThread([PsutilSampler(), flaky], "test-host", rate_hz=20.0, on_batch=batches.append)
    th.start()
    time.sleep(1.0)
    th.stop()
    rows = [r for b in batches for r in b]
    assert len(rows) == th.samples >= 18  # 20 Hz for 1 s, 10% tolerance
    assert len(batches) >= 2  # about every 0.5 s, plus the final flush
    assert th.missed_ticks == 0
    ts = [r["t_ns"] for r in rows]
    assert all(b > a for a, b in zip(ts, ts[1:], strict=False))
    gaps = [b - a for a, b in zip(ts, ts[1:], strict=False)]
    assert max(gaps) < 3 * 50_000_000  # no stalls beyond 2 missed ticks
    assert all(r["host"] == "test-host" for r in rows)
    assert th.sampler_errors["flaky"] >= 9  # counted, not fatal
    failed = [r for r in rows if r["source"] == "psutil"]
    assert failed and all(r["flaky_w"] is None for r in failed)  # present, and None on a failed tick
    assert all(r["flaky_w"] == 1.0 for r in rows if r["source"] == "psutil+flaky")
    assert all(r["proc_rss_bytes"] > 0 for r in rows)
    assert 0 < th.cpu_time_s() < 1.0


def test_thread_keeps_its_grid_and_counts_missed_ticks():
    rows: list[dict] = []
    th = TelemetryThread([Slow()], "h", rate_hz=20.0, on_batch=rows.extend)
    th.start()
    time.sleep(0.7)
    th.stop()
    assert th.missed_ticks >= 5
    t0 = rows[0]["t_ns"]
    for r in rows:  # every tick starts on the 50 ms grid, not 50 ms after the previous one ended
        offset_ms = (r["t_ns"] - t0) / 1e6 % 50
        assert min(offset_ms, 50 - offset_ms) < 15


def test_stop_flushes_the_last_batch():
    batches: list[list[dict]] = []
    th = TelemetryThread([ProcfsSampler()], "h", rate_hz=50.0, on_batch=batches.append, batch_size=1000)
    th.start()
    time.sleep(0.3)
    th.stop()
    assert len(batches) == 1 and len(batches[0]) == th.samples >= 10


def test_the_readings_bracket_the_moment_stop_is_called():
    """The closing tick comes after stop(), on the grid: a window that ends just before stop() is covered."""
    rows: list[dict] = []
    th = TelemetryThread([ProcfsSampler()], "h", rate_hz=5.0, on_batch=rows.extend)
    th.start()
    time.sleep(0.5)
    stopped_ns = time.monotonic_ns()
    th.stop()
    assert rows[-1]["t_ns"] >= stopped_ns and rows[-2]["t_ns"] < stopped_ns
    t0 = rows[0]["t_ns"]
    assert all(abs((r["t_ns"] - t0) / 1e6 - round((r["t_ns"] - t0) / 2e8) * 200) < 30 for r in rows)  # 200 ms grid


def test_a_failing_callback_does_not_stop_sampling():
    def explode(rows):
        raise RuntimeError("publisher down")

    th = TelemetryThread([ProcfsSampler()], "h", rate_hz=50.0, on_batch=explode, batch_size=2)
    th.start()
    time.sleep(0.3)
    th.stop()
    assert th.samples >= 10 and th.batches >= 5


# --- NVML on a real GPU ----------------------------------------------------------------------------


@pytest.mark.gpu
def test_nvml_on_a_real_gpu():
    pynvml = pytest.importorskip("pynvml")
    try:
        pynvml.nvmlInit()
        pynvml.nvmlShutdown()
    except pynvml.NVMLError as exc:
        pytest.skip(f"no NVIDIA driver here: {exc}")
    torch = pytest.importorskip("torch")
    if not torch.cuda.is_available():
        pytest.skip("torch has no CUDA here")
    s = NvmlSampler(energy_interval_s=0.0, slow_interval_s=0.0)
    assert s.available(), s.missing_reason
    idle = s.read()
    assert idle["gpu_power_w"] > 0 and idle["gpu_mem_used_bytes"] > 0
    x = torch.randn(8192, 8192, device="cuda")
    t0 = time.monotonic()
    while time.monotonic() - t0 < 1.0:
        x = (x @ x).clamp_(-1, 1)
        torch.cuda.synchronize()
    busy = s.read()
    print(f"NVML: idle {idle['gpu_power_w']:.1f} W, under matmul {busy['gpu_power_w']:.1f} W; {s.describe()}")
    assert busy["gpu_power_w"] > 0 and busy["gpu_sm_clock_mhz"] > 0
    if s.has_energy:
        assert busy["gpu_energy_mj"] > idle["gpu_energy_mj"]
    else:
        assert busy["gpu_energy_mj"] is None and "gpu_energy_mj" in s.describe()["unsupported"]
    s.close()
