"""NVIDIA GPU power, cumulative energy, memory, utilisation and clocks through NVML."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from agent.telemetry.sampler import Reading, Sampler


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
