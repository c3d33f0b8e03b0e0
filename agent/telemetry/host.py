"""The host sampler: CPU, memory and the agent process's RSS, from psutil or straight from /proc."""

from __future__ import annotations

import os
import time

from agent.physical import machine_id
from agent.telemetry.sampler import HOST_METRICS, Reading, Sampler


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
