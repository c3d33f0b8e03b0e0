"""Telemetry samplers: one interface over every sensor family a host may have.

Zeus-style: each family is a ``Sampler`` that says whether it is available
and, if not, why (``describe()``); callers never branch on hardware.  A
``TelemetryThread`` reads all available samplers on an absolute schedule
(default 20 Hz) off the inference loop, stamps each row with the host's
monotonic clock (``t_ns``) and hands batches to a callback about twice a
second.  A reading a sensor could not give is ``None``, never zero.

Metric names carry their units: ``cpu_percent``, ``mem_used_bytes``,
``mem_total_bytes``, ``proc_rss_bytes``, ``cpu_energy_uj`` (RAPL, cumulative,
wrap-corrected), ``gpu_power_w``, ``gpu_energy_mj`` (NVML cumulative),
``gpu_mem_used_bytes``, ``gpu_util_percent``, ``gpu_sm_clock_mhz``,
``power_<RAIL>_w`` and ``power_total_w`` (Jetson INA3221 rails),
``gpu_load_percent``, ``ram_used_bytes`` and ``temp_<zone>_c`` (jtop).

Optional imports only: psutil, pynvml (nvidia-ml-py) and jtop (jetson-stats,
AGPL-3.0) are used where installed.
"""

from __future__ import annotations

import glob
import logging
import os
import threading
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

Reading = dict[str, float | int | None]


class Sampler:
    """One sensor family.  ``read()`` is called from the sampling thread only."""

    name = "sampler"

    def __init__(self) -> None:
        self.missing_reason: str | None = None

    def available(self) -> bool:
        return self.missing_reason is None

    def read(self) -> Reading:
        raise NotImplementedError

    def describe(self) -> dict[str, Any]:
        """For the manifest: what this sampler reads and from where, or why it is missing."""
        return {"sampler": self.name, "available": self.available(), "missing_reason": self.missing_reason}

    def close(self) -> None:
        """Release files or handles."""


class PsutilSampler(Sampler):
    """System CPU load and memory, and one process's resident set size (psutil)."""

    name = "psutil"

    def __init__(self, pid: int | None = None) -> None:
        super().__init__()
        try:
            import psutil
        except ImportError:
            self.missing_reason = "psutil is not installed"
            return
        self.psutil = psutil
        self.proc = psutil.Process(pid or os.getpid())
        psutil.cpu_percent(interval=None)  # the first call primes the counter
        self.primed_ns = time.monotonic_ns()

    def read(self) -> Reading:
        vm = self.psutil.virtual_memory()
        # psutil's load is over the interval since the previous call; under
        # 10 ms after priming it is noise, so the reading is missing then.
        cpu = self.psutil.cpu_percent(interval=None)
        fresh = time.monotonic_ns() - self.primed_ns < 10_000_000
        self.primed_ns = 0
        return {
            "cpu_percent": None if fresh else cpu,
            "mem_used_bytes": vm.total - vm.available,
            "mem_total_bytes": vm.total,
            "proc_rss_bytes": self.proc.memory_info().rss,
        }

    def describe(self) -> dict[str, Any]:
        return {**super().describe(), "source": "psutil: cpu_percent, virtual_memory, Process.memory_info().rss"}


class ProcfsSampler(Sampler):
    """What ``PsutilSampler`` reads, from the same /proc files, through kept-open descriptors.

    psutil re-opens and fully parses /proc/stat, /proc/meminfo and
    /proc/PID/statm on every call; at 20 Hz that alone costs about 1% of a
    core on a 2-core VM (``specbed bench telemetry`` measures both).  This
    reads the first line of /proc/stat, the head of /proc/meminfo
    (MemTotal, MemAvailable) and /proc/PID/statm with one pread each.
    Linux only; elsewhere ``PsutilSampler`` is used.
    """

    name = "procfs"

    def __init__(self, pid: int | None = None) -> None:
        super().__init__()
        try:
            self.fd_stat = os.open("/proc/stat", os.O_RDONLY)
            self.fd_mem = os.open("/proc/meminfo", os.O_RDONLY)
            self.fd_statm = os.open(f"/proc/{pid or os.getpid()}/statm", os.O_RDONLY)
        except OSError as exc:
            self.missing_reason = f"/proc not readable ({exc.strerror})"
            return
        self.page = os.sysconf("SC_PAGE_SIZE")
        self.last_cpu: tuple[int, int] | None = None
        self._cpu()  # prime, as psutil.cpu_percent does

    def _cpu(self) -> float | None:
        fields = os.pread(self.fd_stat, 512, 0).split(b"\n", 1)[0].split()[1:]
        ticks = [int(x) for x in fields[:8]]  # user nice system idle iowait irq softirq steal
        idle, total = ticks[3] + ticks[4], sum(ticks)
        last, self.last_cpu = self.last_cpu, (idle, total)
        if last is None or total == last[1]:
            return None
        return 100.0 * (1.0 - (idle - last[0]) / (total - last[1]))

    def read(self) -> Reading:
        mem: dict[bytes, int] = {}
        for line in os.pread(self.fd_mem, 256, 0).split(b"\n")[:3]:
            key, _, rest = line.partition(b":")
            if rest:
                mem[key] = int(rest.split()[0]) * 1024  # kB
        total, avail = mem.get(b"MemTotal"), mem.get(b"MemAvailable")
        return {
            "cpu_percent": self._cpu(),
            "mem_used_bytes": total - avail if total is not None and avail is not None else None,
            "mem_total_bytes": total,
            "proc_rss_bytes": int(os.pread(self.fd_statm, 128, 0).split()[1]) * self.page,
        }

    def describe(self) -> dict[str, Any]:
        return {**super().describe(), "source": "/proc/stat, /proc/meminfo, /proc/PID/statm (pread, kept open)"}

    def close(self) -> None:
        for fd in ("fd_stat", "fd_mem", "fd_statm"):
            if hasattr(self, fd):
                os.close(getattr(self, fd))


class RaplSampler(Sampler):
    """CPU package energy from Linux powercap (Intel RAPL), cumulative and wrap-corrected."""

    name = "rapl"

    def __init__(self, root: str | Path = "/sys/class/powercap") -> None:
        super().__init__()
        self.domains: list[tuple[Path, int]] = []
        self.last: list[int] = []
        self.total_uj: list[int] = []
        for d in sorted(Path(root).glob("intel-rapl:*")):
            if d.name.count(":") != 1:  # package domains only, not their sub-zones
                continue
            try:
                int((d / "energy_uj").read_text())
                wrap = int((d / "max_energy_range_uj").read_text())
            except (OSError, ValueError):
                continue
            self.domains.append((d / "energy_uj", wrap))
        if not self.domains:
            self.missing_reason = f"no readable {root}/intel-rapl:*/energy_uj (no RAPL, a VM, or not root)"
            return
        self.last = [int(p.read_text()) for p, _ in self.domains]
        self.total_uj = [0] * len(self.domains)

    def read(self) -> Reading:
        for i, (path, wrap) in enumerate(self.domains):
            now = int(path.read_text())
            delta = now - self.last[i]
            if delta < 0:  # the counter wrapped at max_energy_range_uj
                delta += wrap
            self.total_uj[i] += delta
            self.last[i] = now
        return {"cpu_energy_uj": sum(self.total_uj)}

    def describe(self) -> dict[str, Any]:
        return {**super().describe(), "source": [str(p) for p, _ in self.domains]}


class NvmlSampler(Sampler):
    """An NVIDIA GPU through NVML (nvidia-ml-py).

    ``nvmlDeviceGetPowerUsage`` is a one-second average on most Ampere
    boards; the cumulative energy counter (``gpu_energy_mj``) is the figure to
    integrate where the GPU has one.
    """

    name = "nvml"

    def __init__(self, index: int = 0, energy_interval_s: float = 1.0, slow_interval_s: float = 0.5) -> None:
        super().__init__()
        self.slow_interval_ns = int(slow_interval_s * 1e9)
        self.slow_last_ns = -(1 << 62)
        # The energy counter costs about 4 ms of CPU a call (H100, driver
        # 580) and moves about every 100 ms; read it at most this often,
        # leaving the rows between without it (missing, not repeated).
        self.energy_interval_ns = int(energy_interval_s * 1e9)
        self.energy_last_ns = -(1 << 62)
        try:
            import pynvml
        except ImportError:
            self.missing_reason = "nvidia-ml-py (pynvml) is not installed"
            return
        try:
            pynvml.nvmlInit()
            self.handle = pynvml.nvmlDeviceGetHandleByIndex(index)
            self.gpu_name = pynvml.nvmlDeviceGetName(self.handle)
        except Exception as exc:  # NVMLError subclasses: no driver, no device
            self.missing_reason = f"NVML unavailable: {exc}"
            return
        self.nvml = pynvml
        self.has_energy = True
        try:
            pynvml.nvmlDeviceGetTotalEnergyConsumption(self.handle)
        except Exception:
            self.has_energy = False

    def read(self) -> Reading:
        n, h = self.nvml, self.handle
        out: Reading = {"gpu_power_w": n.nvmlDeviceGetPowerUsage(h) / 1000.0, "gpu_energy_mj": self._energy()}
        now = time.monotonic_ns()
        if now - self.slow_last_ns >= self.slow_interval_ns:
            # memory, utilisation and clocks move slowly: read every slow_interval_s
            self.slow_last_ns = now
            out["gpu_mem_used_bytes"] = n.nvmlDeviceGetMemoryInfo(h).used
            out["gpu_util_percent"] = n.nvmlDeviceGetUtilizationRates(h).gpu
            out["gpu_sm_clock_mhz"] = n.nvmlDeviceGetClockInfo(h, n.NVML_CLOCK_SM)
        return out

    def _energy(self) -> int | None:
        now = time.monotonic_ns()
        if not self.has_energy or now - self.energy_last_ns < self.energy_interval_ns:
            return None
        self.energy_last_ns = now
        return self.nvml.nvmlDeviceGetTotalEnergyConsumption(self.handle)

    def describe(self) -> dict[str, Any]:
        d = super().describe()
        if self.available():
            d.update(
                energy_interval_s=self.energy_interval_ns / 1e9,
                gpu=str(self.gpu_name),
                source="NVML: nvmlDeviceGetPowerUsage (1 s average on most Ampere GPUs), "
                + ("nvmlDeviceGetTotalEnergyConsumption (mJ)" if self.has_energy else "no energy counter"),
            )
        return d


INA3221_GLOB = "/sys/bus/i2c/drivers/ina3221/*/hwmon/hwmon*"


class JetsonSampler(Sampler):
    """Jetson power rails from the INA3221 hwmon files, plus jtop for the rest.

    Rails are discovered by label ("NC" and the shunt-sum channel skipped)
    and read directly (about 0.55 ms a register on AGX Orin), files kept
    open.  ``power_total_w`` is the sum of the rails read; the carrier board
    is not measured.  jtop (a 0.5-1 Hz tool) is read at most every 0.5 s for
    GPU load, RAM and temperatures.
    """

    name = "jetson"
    JTOP_MIN_INTERVAL_S = 0.5

    def __init__(self, hwmon_glob: str = INA3221_GLOB, jtop_factory: Callable[[], Any] | None = None) -> None:
        super().__init__()
        self.rails: list[tuple[str, Any, Any]] = []  # (label, mV file, mA file)
        for hwmon in sorted(glob.glob(hwmon_glob)):
            for label_file in sorted(Path(hwmon).glob("in*_label")):
                label = label_file.read_text().strip()
                n = label_file.name[2:].split("_")[0]
                if label == "NC" or label.lower().startswith("sum"):
                    continue
                volt, curr = Path(hwmon) / f"in{n}_input", Path(hwmon) / f"curr{n}_input"
                if volt.exists() and curr.exists():
                    self.rails.append((label, open(volt), open(curr)))
        self.jtop = None
        self.jtop_cache: Reading = {}
        self.jtop_last = 0.0
        self.board: dict[str, Any] = {}
        if jtop_factory is None:
            try:
                from jtop import jtop  # optional, AGPL-3.0

                jtop_factory = jtop
            except ImportError:
                jtop_factory = None
        if jtop_factory is not None:
            try:
                self.jtop = jtop_factory()
                self.jtop.start()
                self.board = {"nvpmodel": str(getattr(self.jtop, "nvpmodel", None))}
            except Exception as exc:
                log.warning("jtop unavailable: %s", exc)
                self.jtop = None
        if not self.rails and self.jtop is None:
            self.missing_reason = "no INA3221 hwmon rails and no jtop (not a Jetson)"

    @staticmethod
    def _read_int(fh: Any) -> int:
        fh.seek(0)
        return int(fh.read())

    def read(self) -> Reading:
        out: Reading = {}
        total = 0.0
        for label, volt, curr in self.rails:
            watts = self._read_int(volt) * self._read_int(curr) / 1e6  # mV * mA
            out[f"power_{label}_w"] = watts
            total += watts
        out["power_total_w"] = total if self.rails else None
        if self.jtop is not None:
            now = time.monotonic()
            if now - self.jtop_last >= self.JTOP_MIN_INTERVAL_S:
                self.jtop_last = now
                self.jtop_cache = self._read_jtop()
            out.update(self.jtop_cache)
        return out

    def _read_jtop(self) -> Reading:
        j = self.jtop
        out: Reading = {}
        ram = j.memory.get("RAM", {})
        out["ram_used_bytes"] = ram["used"] * 1024 if "used" in ram else None
        loads = [g["status"]["load"] for g in j.gpu.values() if "status" in g]
        out["gpu_load_percent"] = loads[0] if loads else None
        for zone, t in j.temperature.items():
            out[f"temp_{zone}_c"] = t.get("temp")
        return out

    def describe(self) -> dict[str, Any]:
        d = super().describe()
        d["rails"] = [label for label, _, _ in self.rails]
        d["total_note"] = "power_total_w = sum of the rails listed; the carrier board is not measured"
        d["jtop"] = self.jtop is not None
        d.update(self.board)
        return d

    def close(self) -> None:
        for _, volt, curr in self.rails:
            volt.close()
            curr.close()
        if self.jtop is not None:
            self.jtop.close()


HOST_SAMPLERS = ("psutil", "procfs")


def all_samplers(pid: int | None = None, host_sampler: str = "psutil") -> list[Sampler]:
    """Every sampler family, available or not (unavailable ones say why).

    ``host_sampler`` picks the CPU/memory/RSS source: "psutil" (the
    default, portable) or "procfs" (the same /proc files with kept-open
    descriptors, about half psutil's cost; Linux only).  If the one asked
    for is unavailable the other is tried.
    """
    if host_sampler not in HOST_SAMPLERS:
        raise ValueError(f"host_sampler must be one of {HOST_SAMPLERS}, got {host_sampler!r}")
    order = [PsutilSampler, ProcfsSampler] if host_sampler == "psutil" else [ProcfsSampler, PsutilSampler]
    host: Sampler = order[0](pid)
    if not host.available():
        host = order[1](pid)
    return [host, RaplSampler(), NvmlSampler(), JetsonSampler()]


def auto_samplers(pid: int | None = None, host_sampler: str = "psutil") -> list[Sampler]:
    """The samplers this host can read.  ``describe_samplers`` lists the rest with reasons."""
    return [s for s in all_samplers(pid, host_sampler) if s.available()]


def describe_samplers(pid: int | None = None) -> list[dict]:
    return [s.describe() for s in all_samplers(pid)]


class TelemetryThread:
    """Samples on an absolute schedule in a daemon thread; batches go to ``on_batch``."""

    def __init__(
        self,
        samplers: list[Sampler],
        host: str,
        rate_hz: float = 20.0,
        on_batch: Callable[[list[dict]], None] | None = None,
        batch_interval_s: float = 0.5,
    ) -> None:
        self.samplers = samplers
        self.host = host
        self.period_ns = int(1e9 / rate_hz)
        self.on_batch = on_batch or (lambda rows: None)
        self.batch_interval_ns = int(batch_interval_s * 1e9)
        self.samples = 0
        self.missed_ticks = 0
        self.sampler_errors: Counter[str] = Counter()
        self.thread_cpu_s = 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"telemetry-{host}", daemon=True)

    def tick(self) -> dict:
        row: dict = {"t_ns": time.monotonic_ns()}
        for s in self.samplers:
            try:
                row.update(s.read())
            except Exception as exc:  # a failing sensor must not stop the others
                self.sampler_errors[s.name] += 1
                log.debug("sampler %s failed: %s", s.name, exc)
        return row

    def _run(self) -> None:
        cpu0 = time.thread_time()
        start = time.monotonic_ns()
        k = 0
        batch: list[dict] = []
        last_flush = start
        while not self._stop.is_set():
            batch.append(self.tick())
            self.samples += 1
            now = time.monotonic_ns()
            if now - last_flush >= self.batch_interval_ns:
                self._flush(batch)
                batch, last_flush = [], now
            k += 1
            next_t = start + k * self.period_ns
            now = time.monotonic_ns()
            if next_t < now:  # late: skip the ticks already missed, keep the grid
                skipped = (now - next_t) // self.period_ns + 1
                self.missed_ticks += int(skipped)
                k += int(skipped)
                next_t = start + k * self.period_ns
            self.thread_cpu_s = time.thread_time() - cpu0
            # time.sleep wakes for about half the CPU cost of Event.wait;
            # stop() is seen within one period.
            time.sleep((next_t - now) / 1e9)
        self._flush(batch)
        self.thread_cpu_s = time.thread_time() - cpu0

    def _flush(self, batch: list[dict]) -> None:
        if not batch:
            return
        try:
            self.on_batch(batch)
        except Exception:
            log.exception("telemetry batch callback failed")

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(5)
