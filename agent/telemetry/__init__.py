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

The package holds one part each: ``sampler`` (the row schema and the
interface), one module per sensor family (``host``: psutil and /proc,
``rapl``, ``nvml``, ``jetson``), ``families`` (which of them a host has)
and ``thread`` (the sampling schedule); this module hands their names on.
"""

from agent.telemetry.families import FAMILIES, HOST_SAMPLERS, Samplers, auto_samplers
from agent.telemetry.host import ProcfsSampler, PsutilSampler
from agent.telemetry.jetson import JetsonSampler
from agent.telemetry.nvml import NvmlSampler
from agent.telemetry.rapl import RaplSampler
from agent.telemetry.sampler import HOST_METRICS, Reading, Sample, Sampler
from agent.telemetry.thread import TelemetryThread

__all__ = [
    "FAMILIES",
    "HOST_METRICS",
    "HOST_SAMPLERS",
    "JetsonSampler",
    "NvmlSampler",
    "ProcfsSampler",
    "PsutilSampler",
    "RaplSampler",
    "Reading",
    "Sample",
    "Sampler",
    "Samplers",
    "TelemetryThread",
    "auto_samplers",
]
