"""Telemetry samplers: one interface over every sensor family a host may have.

Zeus-style: each family is a ``Sampler`` that says whether it is available
and, if not, why (``describe()``); callers never branch on hardware.  A
``TelemetryThread`` reads the available samplers on an absolute schedule
(default 20 Hz) off the inference loop and merges them into one row per
tick, a plain dict::

    {"t_ns": time.monotonic_ns(), "host": str, "source": "psutil+nvml", <metric>: value, ...}

``source`` names the samplers that answered that tick; ``describe()`` says
where each of their numbers comes from.  Metric names carry their units:
``cpu_percent``, ``mem_used_bytes``, ``mem_total_bytes``, ``proc_rss_bytes``,
``cpu_energy_uj`` (RAPL, cumulative since the sampler opened, wrap-corrected),
``gpu_power_w``, ``gpu_energy_mj`` (NVML cumulative counter),
``gpu_mem_used_bytes``, ``gpu_util_percent``, ``gpu_sm_clock_mhz``,
``power_<RAIL>_w`` and ``power_total_w`` (Jetson INA3221 rails),
``ram_used_bytes``, ``ram_total_bytes``, ``ram_shared_bytes`` and
``temp_<zone>_c`` (jtop).  Every row holds every metric of its samplers; a
reading not taken that tick, or that a sensor could not give, is ``None``,
never zero.

Optional imports only: psutil, pynvml (nvidia-ml-py) and jtop (jetson-stats,
AGPL-3.0) are used where installed.
"""

from __future__ import annotations

import logging
import os
import re
import threading
import time
from abc import ABC, abstractmethod
from collections import Counter
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from agent.physical import MACHINE_ID_PATHS, SERIAL_PATHS, board_serial, machine_id

log = logging.getLogger(__name__)

Reading = dict[str, float | int | None]
Sample = dict[str, Any]  # one row: t_ns, host, source and Reading's metrics

HOST_METRICS = ("cpu_percent", "mem_used_bytes", "mem_total_bytes", "proc_rss_bytes")


def _metric_name(label: str) -> str:
    """A sensor label as part of a column name: 'Sum of shunt' -> 'Sum_of_shunt'."""
    return re.sub(r"\W+", "_", label.strip()).strip("_")


class Sampler(ABC):
    """One sensor family.  ``read()`` is called from the sampling thread only.

    Subclasses set ``metrics`` (the keys ``read()`` returns) when they open
    their sensors, or ``missing_reason`` when they cannot.
    """

    name = "sampler"

    def __init__(self) -> None:
        self.missing_reason: str | None = None
        self.metrics: tuple[str, ...] = ()
        self.device: str | None = None  # the physical device read (agent.physical), set when opened

    def available(self) -> bool:
        return self.missing_reason is None

    @abstractmethod
    def read(self) -> Reading:
        """This tick's readings, keyed by ``metrics``; None for a value not read."""

    def sources(self) -> dict[str, str]:
        """Where each metric comes from, for the manifest."""
        return {}

    def describe(self) -> dict[str, Any]:
        """For the manifest: what this sampler reads and from where, or why it is missing."""
        d: dict[str, Any] = {"sampler": self.name, "available": self.available(), "missing_reason": self.missing_reason}
        if self.available():
            d.update(metrics=list(self.metrics), source=self.sources(), device=self.device)
        return d

    def close(self) -> None:  # noqa: B027 (most samplers hold nothing to release)
        """Release files or handles."""


class PsutilSampler(Sampler):
    """System CPU load (percent of all cores since the last read), memory, and one process's RSS.

    ``memory_info().rss``, not ``memory_full_info()``: the latter costs
    about 212 µs a call against about 86 µs for the whole tick.
    """

    name = "psutil"

    def __init__(self, pid: int | None = None) -> None:
        super().__init__()
        try:
            import psutil
        except ImportError:
            self.missing_reason = "psutil is not installed"
            return
        try:
            self.proc = psutil.Process(pid or os.getpid())
        except psutil.Error as exc:
            self.missing_reason = f"process {pid} not readable: {exc}"
            return
        self.psutil = psutil
        self.metrics = HOST_METRICS
        self.device = f"host:{machine_id()}"
        psutil.cpu_percent(interval=None)  # the first call primes the counter
        self.primed_ns = time.monotonic_ns()

    def read(self) -> Reading:
        vm = self.psutil.virtual_memory()
        # The load is over the interval since the previous call; under 10 ms
        # after priming it is noise, so the reading is missing then.
        cpu = self.psutil.cpu_percent(interval=None)
        fresh = time.monotonic_ns() - self.primed_ns < 10_000_000
        self.primed_ns = 0
        return {
            "cpu_percent": None if fresh else cpu,
            "mem_used_bytes": vm.total - vm.available,
            "mem_total_bytes": vm.total,
            "proc_rss_bytes": self.proc.memory_info().rss,
        }

    def sources(self) -> dict[str, str]:
        calls = ["cpu_percent(interval=None)", "virtual_memory()", "virtual_memory()", "Process.memory_info().rss"]
        return {m: f"psutil.{c}" for m, c in zip(HOST_METRICS, calls, strict=True)}


class ProcfsSampler(Sampler):
    """What ``PsutilSampler`` reads, from the same /proc files, through kept-open descriptors.

    psutil re-opens and fully parses /proc/stat, /proc/meminfo and
    /proc/PID/statm on every call; at 20 Hz that alone costs about 1% of a
    core on a 2-core VM (BENCHMARKS.md).  This reads the first line of
    /proc/stat, the head of /proc/meminfo (MemTotal, MemAvailable) and
    /proc/PID/statm with one pread each.  Linux only.
    """

    name = "procfs"

    def __init__(self, pid: int | None = None) -> None:
        super().__init__()
        self.fds: list[int] = []
        try:
            for path in ("/proc/stat", "/proc/meminfo", f"/proc/{pid or os.getpid()}/statm"):
                self.fds.append(os.open(path, os.O_RDONLY))
        except OSError as exc:
            self.close()
            self.missing_reason = f"/proc not readable ({exc.strerror})"
            return
        self.metrics = HOST_METRICS
        self.device = f"host:{machine_id()}"
        self.page_bytes = os.sysconf("SC_PAGE_SIZE")
        self.last_cpu: tuple[int, int] | None = None
        self._cpu()  # prime, as psutil.cpu_percent does

    def _cpu(self) -> float | None:
        fields = os.pread(self.fds[0], 512, 0).split(b"\n", 1)[0].split()[1:]
        ticks = [int(x) for x in fields[:8]]  # user nice system idle iowait irq softirq steal
        idle, total = ticks[3] + ticks[4], sum(ticks)
        last, self.last_cpu = self.last_cpu, (idle, total)
        if last is None or total == last[1]:
            return None
        return 100.0 * (1.0 - (idle - last[0]) / (total - last[1]))

    def read(self) -> Reading:
        mem: dict[bytes, int] = {}
        for line in os.pread(self.fds[1], 256, 0).split(b"\n")[:3]:
            key, _, rest = line.partition(b":")
            if rest:
                mem[key] = int(rest.split()[0]) * 1024  # kB
        total, avail = mem.get(b"MemTotal"), mem.get(b"MemAvailable")
        return {
            "cpu_percent": self._cpu(),
            "mem_used_bytes": total - avail if total is not None and avail is not None else None,
            "mem_total_bytes": total,
            "proc_rss_bytes": int(os.pread(self.fds[2], 128, 0).split()[1]) * self.page_bytes,
        }

    def sources(self) -> dict[str, str]:
        return dict(zip(HOST_METRICS, ["/proc/stat", "/proc/meminfo", "/proc/meminfo", "/proc/PID/statm"], strict=True))

    def close(self) -> None:
        while self.fds:
            os.close(self.fds.pop())


class RaplSampler(Sampler):
    """CPU package energy from Linux powercap (Intel RAPL; AMD too on recent kernels).

    ``cpu_energy_uj`` is the energy of all packages since the sampler opened,
    in µJ: each package's counter wraps at its ``max_energy_range_uj``
    (hours at full load, so at most one wrap between reads), and a read
    below the previous one is taken as a wrap.
    """

    name = "rapl"

    def __init__(
        self, root: str | Path = "/sys/class/powercap", machine_id_paths: Iterable[str] = MACHINE_ID_PATHS
    ) -> None:
        super().__init__()
        self.device = f"rapl:{machine_id(tuple(machine_id_paths))}"  # every package of this machine
        self.domains: list[tuple[str, int, int]] = []  # (path, fd, max_energy_range_uj)
        problems = []
        for d in sorted(Path(root).glob("intel-rapl:*")):
            if d.name.count(":") != 1:  # package domains only, not their core/uncore/dram sub-zones
                continue
            try:
                wrap = int((d / "max_energy_range_uj").read_text())
                fd = os.open(d / "energy_uj", os.O_RDONLY)
                int(os.pread(fd, 32, 0))
            except (OSError, ValueError) as exc:
                problems.append(f"{d.name}: {getattr(exc, 'strerror', None) or exc}")
                continue
            self.domains.append((str(d / "energy_uj"), fd, wrap))
        if not self.domains:
            why = "; ".join(problems) or "none found (no RAPL, or a VM)"
            self.missing_reason = f"no readable {root}/intel-rapl:*/energy_uj: {why} (root-only since Linux 5.10)"
            return
        self.metrics = ("cpu_energy_uj",)
        self.last = [int(os.pread(fd, 32, 0)) for _, fd, _ in self.domains]
        self.total_uj = 0

    def read(self) -> Reading:
        for i, (_, fd, wrap) in enumerate(self.domains):
            now = int(os.pread(fd, 32, 0))
            delta = now - self.last[i]
            self.total_uj += delta + wrap if delta < 0 else delta
            self.last[i] = now
        return {"cpu_energy_uj": self.total_uj}

    def sources(self) -> dict[str, str]:
        paths = ", ".join(p for p, _, _ in self.domains)
        return {"cpu_energy_uj": f"sum of {paths} since start, wrap-corrected with max_energy_range_uj"}

    def close(self) -> None:
        for _, fd, _ in self.domains:
            os.close(fd)
        self.domains = []


class NvmlSampler(Sampler):
    """An NVIDIA GPU through NVML (nvidia-ml-py).

    ``nvmlDeviceGetPowerUsage`` is a one-second average on Ampere GPUs other
    than GA100; the cumulative energy counter (``gpu_energy_mj``) is the
    figure to integrate where the GPU has one.  Measured on an H100 (driver
    580, BENCHMARKS.md) the counter costs about 4 ms of CPU a call and moves
    every 100 ms, so it is read at most every ``energy_interval_s``, and
    memory, utilisation and clock every ``slow_interval_s``; rows between
    leave them None (missing, not repeated).
    """

    name = "nvml"
    SOURCES = {
        "gpu_power_w": "nvmlDeviceGetPowerUsage (mW; a 1 s average on Ampere other than GA100)",
        "gpu_energy_mj": "nvmlDeviceGetTotalEnergyConsumption (mJ since driver load)",
        "gpu_mem_used_bytes": "nvmlDeviceGetMemoryInfo.used",
        "gpu_util_percent": "nvmlDeviceGetUtilizationRates.gpu",
        "gpu_sm_clock_mhz": "nvmlDeviceGetClockInfo(NVML_CLOCK_SM)",
    }

    def __init__(self, index: int = 0, energy_interval_s: float = 1.0, slow_interval_s: float = 0.5) -> None:
        super().__init__()
        self.unsupported: dict[str, str] = {}
        try:
            import pynvml
        except ImportError:
            self.missing_reason = "nvidia-ml-py (pynvml) is not installed"
            return
        try:
            pynvml.nvmlInit()
        except pynvml.NVMLError as exc:  # no library, no driver
            self.missing_reason = f"NVML unavailable: {exc}"
            return
        try:
            h = self.handle = pynvml.nvmlDeviceGetHandleByIndex(index)
            self.gpu_name = pynvml.nvmlDeviceGetName(h)
            uuid = pynvml.nvmlDeviceGetUUID(h)
            self.device = f"gpu:{uuid.decode() if isinstance(uuid, bytes) else uuid}"
        except pynvml.NVMLError as exc:
            pynvml.nvmlShutdown()
            self.missing_reason = f"no NVIDIA GPU at index {index}: {exc}"
            return
        self.nvml = n = pynvml
        self.calls: dict[str, Callable[[], float | int]] = {
            "gpu_power_w": lambda: n.nvmlDeviceGetPowerUsage(h) / 1000.0,
            "gpu_energy_mj": lambda: n.nvmlDeviceGetTotalEnergyConsumption(h),
            "gpu_mem_used_bytes": lambda: n.nvmlDeviceGetMemoryInfo(h).used,
            "gpu_util_percent": lambda: n.nvmlDeviceGetUtilizationRates(h).gpu,
            "gpu_sm_clock_mhz": lambda: n.nvmlDeviceGetClockInfo(h, n.NVML_CLOCK_SM),
        }
        self.interval_ns = dict.fromkeys(self.calls, int(slow_interval_s * 1e9))
        self.interval_ns.update(gpu_power_w=0, gpu_energy_mj=int(energy_interval_s * 1e9))
        self.last_ns = dict.fromkeys(self.calls, -(1 << 62))
        for metric, call in list(self.calls.items()):
            try:
                call()
            except pynvml.NVMLError as exc:  # NVMLError_NotSupported on GPUs without the counter
                self.unsupported[metric] = str(exc)
                del self.calls[metric]
        self.metrics = tuple(self.SOURCES)

    @property
    def has_energy(self) -> bool:
        return self.available() and "gpu_energy_mj" in self.calls

    def read(self) -> Reading:
        out: Reading = dict.fromkeys(self.metrics)
        now = time.monotonic_ns()
        for metric, call in self.calls.items():
            if now - self.last_ns[metric] >= self.interval_ns[metric]:
                self.last_ns[metric] = now
                out[metric] = call()
        return out

    def sources(self) -> dict[str, str]:
        return {m: self.unsupported.get(m, s) for m, s in self.SOURCES.items()}

    def describe(self) -> dict[str, Any]:
        d = super().describe()
        if self.available():
            d.update(
                gpu=str(self.gpu_name),
                unsupported=self.unsupported,
                interval_s={m: ns / 1e9 for m, ns in self.interval_ns.items()},
            )
        return d

    def close(self) -> None:
        if self.available() and self.calls:
            self.calls = {}  # NVML counts nvmlInit calls; one shutdown each
            self.nvml.nvmlShutdown()


class JetsonSampler(Sampler):
    """Jetson power rails from the INA3221 hwmon files, plus jtop for the rest.

    Rails are discovered by label (``inN_label``; "NC" and the shunt-sum
    channel skipped) and read directly, files kept open and reread at
    offset 0: ``inN_input`` in mV, ``currN_input`` in mA, so a rail's power
    is mV * mA / 1e6 W.  A register read costs about 0.55 ms on AGX Orin.
    ``power_total_w`` is the sum of the rails read; the carrier board is
    not measured.  jtop (a 0.5-1 Hz tool) is read at most every 0.5 s for
    GPU load, RAM and temperatures, and gives board facts for describe().
    """

    name = "jetson"
    JTOP_INTERVAL_S = 0.5

    def __init__(
        self,
        hwmon_root: str | Path = "/sys/bus/i2c/drivers/ina3221",
        jtop_factory: Callable[[], Any] | None = None,
        serial_paths: Iterable[str] = SERIAL_PATHS,
    ) -> None:
        super().__init__()
        self.rails: list[tuple[str, int, int]] = []  # (label, mV fd, mA fd)
        for hwmon in sorted(Path(hwmon_root).glob("*/hwmon/hwmon*")):
            labels = sorted(hwmon.glob("in*_label"), key=lambda p: int(p.name[2:].split("_")[0]))
            for label_file in labels:
                label = label_file.read_text().strip()
                if label == "NC" or label.lower().startswith("sum") or "Sum" in label:
                    continue
                n = label_file.name[2:].split("_")[0]
                try:
                    fds = (os.open(hwmon / f"in{n}_input", os.O_RDONLY), os.open(hwmon / f"curr{n}_input", os.O_RDONLY))
                except OSError as exc:
                    log.warning("INA3221 rail %s in %s not readable: %s", label, hwmon, exc)
                    continue
                self.rails.append((_metric_name(label), *fds))
        self.jtop: Any = None
        self.jtop_note = "not asked for"
        self.board: dict[str, Any] = {}
        self.jtop_last_ns = -(1 << 62)
        if jtop_factory is None:
            try:
                from jtop import jtop  # optional, AGPL-3.0

                jtop_factory = jtop
            except ImportError:
                self.jtop_note = "jetson-stats (jtop) is not installed"
        if jtop_factory is not None:
            self._open_jtop(jtop_factory)
        if not self.rails and self.jtop is None:
            self.missing_reason = f"no INA3221 rails under {hwmon_root} and no jtop ({self.jtop_note}): not a Jetson"
            return
        self.metrics = (*[f"power_{label}_w" for label, _, _ in self.rails], "power_total_w", *self._jtop_metrics())
        jtop_board = getattr(self.jtop, "board", None) if self.jtop is not None else None
        self.device = f"jetson:{board_serial(tuple(serial_paths), jtop_board)}"

    def _open_jtop(self, factory: Callable[[], Any]) -> None:
        try:
            j = factory()
            j.start()
        except Exception as exc:  # no jtop service, or its socket not readable
            self.jtop_note = f"jtop failed to start: {exc}"
            log.warning("%s", self.jtop_note)
            return
        self.jtop, self.jtop_note = j, "connected"
        hw = (getattr(j, "board", None) or {}).get("hardware", {})
        nvp = getattr(j, "nvpmodel", None)
        self.board = {k.lower(): hw.get(k) for k in ("Model", "Module", "SoC", "L4T", "Jetpack")}
        self.board["nvpmodel"] = None if nvp is None else str(nvp)

    def _jtop_metrics(self) -> list[str]:
        if self.jtop is None:
            return []
        zones = [f"temp_{_metric_name(z)}_c" for z in self.jtop.temperature]
        return ["gpu_util_percent", "ram_used_bytes", "ram_total_bytes", "ram_shared_bytes", *zones]

    def read(self) -> Reading:
        out: Reading = dict.fromkeys(self.metrics)
        total = 0.0
        for label, mv_fd, ma_fd in self.rails:
            watts = int(os.pread(mv_fd, 32, 0)) * int(os.pread(ma_fd, 32, 0)) / 1e6  # mV * mA
            out[f"power_{label}_w"] = watts
            total += watts
        if self.rails:
            out["power_total_w"] = total
        now = time.monotonic_ns()
        if self.jtop is not None and now - self.jtop_last_ns >= self.JTOP_INTERVAL_S * 1e9:
            self.jtop_last_ns = now
            out.update(self._read_jtop())
        return out

    def _read_jtop(self) -> Reading:
        j, out = self.jtop, {}
        ram = j.memory.get("RAM", {})
        for key, metric in (("used", "ram_used_bytes"), ("tot", "ram_total_bytes"), ("shared", "ram_shared_bytes")):
            out[metric] = ram[key] * 1024 if key in ram else None  # kB
        loads = [g["status"]["load"] for g in j.gpu.values() if "load" in g.get("status", {})]
        out["gpu_util_percent"] = loads[0] if loads else None
        for zone, t in j.temperature.items():
            online = t.get("online", True) and t.get("temp", -256) > -256  # jtop marks offline zones -256
            out[f"temp_{_metric_name(zone)}_c"] = t.get("temp") if online else None
        return out

    def sources(self) -> dict[str, str]:
        rails = {f"power_{label}_w": "INA3221 hwmon inN_input (mV) * currN_input (mA)" for label, _, _ in self.rails}
        jtop = {m: f"jtop, every {self.JTOP_INTERVAL_S} s" for m in self.metrics if not m.startswith("power_")}
        return rails | {"power_total_w": "sum of the rails"} | jtop

    def describe(self) -> dict[str, Any]:
        d = super().describe()
        if self.available():
            rails = [label for label, _, _ in self.rails]
            d.update(
                rails=rails,
                total_note=f"power_total_w = sum of the rails listed ({' + '.join(rails) or 'none read'}); "
                "the carrier board is not measured, and the DDR rail may already be inside VIN_SYS_5V0",
                jtop=self.jtop_note,
                board=self.board,
            )
        return d

    def close(self) -> None:
        for _, mv_fd, ma_fd in self.rails:
            os.close(mv_fd)
            os.close(ma_fd)
        self.rails = []
        if self.jtop is not None:
            self.jtop.close()
            self.jtop = None


FAMILIES: dict[str, Callable[[int | None], Sampler]] = {
    "psutil": PsutilSampler,
    "procfs": ProcfsSampler,
    "rapl": lambda pid: RaplSampler(),
    "nvml": lambda pid: NvmlSampler(),
    "jetson": lambda pid: JetsonSampler(),
}
HOST_SAMPLERS = ("psutil", "procfs")


class Samplers(list):
    """The samplers a host can read (a list), plus those it cannot in ``missing``, each saying why."""

    def __init__(self, available: Iterable[Sampler], missing: Iterable[Sampler]) -> None:
        super().__init__(available)
        self.missing: list[Sampler] = list(missing)

    def describe(self) -> list[dict]:
        """Every family tried, available ones first: the manifest's telemetry entry for a host."""
        return [s.describe() for s in self] + self.describe_missing()

    def describe_missing(self) -> list[dict]:
        return [s.describe() for s in self.missing]

    def close(self) -> None:
        for s in self:
            s.close()


def auto_samplers(
    pid: int | None = None, include: Iterable[str] | str | None = None, host_sampler: str = "psutil"
) -> Samplers:
    """The samplers this host can read; ``.describe_missing()`` lists the others with reasons.

    ``include`` names the families to try (keys of ``FAMILIES``); by default
    the host sampler plus RAPL, NVML and Jetson.  ``host_sampler`` picks the
    CPU/memory/RSS source, "psutil" (portable) or "procfs" (the same /proc
    files at about half the cost, Linux only); if it is unavailable the
    other is tried.  A string ``include`` is taken as ``host_sampler``, the
    older call shape ``auto_samplers(pid, host_sampler)``.
    """
    if isinstance(include, str):
        host_sampler, include = include, None
    if host_sampler not in HOST_SAMPLERS:
        raise ValueError(f"host_sampler must be one of {HOST_SAMPLERS}, got {host_sampler!r}")
    names = list(include) if include is not None else [host_sampler, "rapl", "nvml", "jetson"]
    unknown = [n for n in names if n not in FAMILIES]
    if unknown:
        raise ValueError(f"unknown sampler families {unknown}; known: {sorted(FAMILIES)}")
    tried = [FAMILIES[n](pid) for n in names]
    if include is None and not tried[0].available():
        other = FAMILIES[HOST_SAMPLERS[1 - HOST_SAMPLERS.index(host_sampler)]](pid)
        if other.available():
            tried.insert(0, other)
    return Samplers([s for s in tried if s.available()], [s for s in tried if not s.available()])


class TelemetryThread:
    """Samples on an absolute schedule in a daemon thread; batches of rows go to ``on_batch``.

    Tick k is due at start + k / rate_hz, so delays never accumulate; a tick
    that comes too late to keep the grid is skipped and counted in
    ``missed_ticks``.  ``t_ns`` is taken before the sensors are read.  A
    sampler that raises is counted in ``sampler_errors`` and its metrics are
    None that tick; the thread carries on.  ``on_batch`` is called from the
    thread every ``batch_size`` rows (default: about every 0.5 s) and once
    more with the rest when stopped.
    """

    def __init__(
        self,
        samplers: list[Sampler],
        host: str,
        rate_hz: float = 20.0,
        on_batch: Callable[[list[Sample]], None] | None = None,
        batch_size: int | None = None,
    ) -> None:
        if rate_hz <= 0:
            raise ValueError(f"rate_hz must be positive, got {rate_hz}")
        self.samplers = list(samplers)
        self.host = host
        self.period_ns = round(1e9 / rate_hz)
        self.on_batch = on_batch or (lambda rows: None)
        self.batch_size = max(1, batch_size if batch_size is not None else round(rate_hz * 0.5))
        self.template: Reading = {m: None for s in self.samplers for m in s.metrics}
        self.samples = 0
        self.missed_ticks = 0
        self.batches = 0
        self.sampler_errors: Counter[str] = Counter()
        self.tick_wall_s = 0.0  # wall time spent reading sensors, all ticks together
        self._cpu_s = 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"telemetry-{host}", daemon=True)

    def cpu_time_s(self) -> float:
        """CPU seconds the sampling thread has used so far (``time.thread_time`` inside it)."""
        return self._cpu_s

    def tick(self) -> Sample:
        """One row: every sampler read once, failures isolated."""
        row: Sample = {"t_ns": time.monotonic_ns(), "host": self.host, "source": ""}
        row.update(self.template)
        answered = []
        for s in self.samplers:
            try:
                row.update(s.read())
                answered.append(s.name)
            except Exception as exc:  # a failing sensor must not stop the others
                self.sampler_errors[s.name] += 1
                level = logging.WARNING if self.sampler_errors[s.name] == 1 else logging.DEBUG
                log.log(level, "sampler %s failed (%d so far): %r", s.name, self.sampler_errors[s.name], exc)
        row["source"] = "+".join(answered)
        return row

    def _run(self) -> None:
        cpu0 = time.thread_time()
        start = time.monotonic_ns()
        k = 0
        batch: list[Sample] = []
        while not self._stop.is_set():
            row = self.tick()
            now = time.monotonic_ns()
            self.tick_wall_s += (now - row["t_ns"]) / 1e9
            batch.append(row)
            self.samples += 1
            if len(batch) >= self.batch_size:
                self._flush(batch)
                batch = []
            k += 1
            next_ns = start + k * self.period_ns
            now = time.monotonic_ns()
            if next_ns < now:  # late: skip the ticks already missed, keep the grid
                skipped = (now - next_ns) // self.period_ns + 1
                self.missed_ticks += skipped
                k += skipped
                next_ns = start + k * self.period_ns
            self._cpu_s = time.thread_time() - cpu0
            # time.sleep wakes for about half the CPU of Event.wait; stop()
            # is seen within one period, or within 0.1 s at slow rates.
            delay_s = (next_ns - now) / 1e9
            if delay_s > 0.1:
                self._stop.wait(delay_s)
            else:
                time.sleep(delay_s)
        self._flush(batch)
        self._cpu_s = time.thread_time() - cpu0

    def _flush(self, batch: list[Sample]) -> None:
        if not batch:
            return
        self.batches += 1
        try:
            self.on_batch(batch)
        except Exception:
            log.exception("telemetry batch callback failed")

    def start(self) -> None:
        self._thread.start()

    def stop(self, timeout_s: float = 5.0) -> None:
        """Stop sampling, deliver the last batch and wait for the thread (at most ``timeout_s``)."""
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout_s)
            if self._thread.is_alive():
                log.warning("telemetry thread %s did not stop within %.1f s", self._thread.name, timeout_s)
