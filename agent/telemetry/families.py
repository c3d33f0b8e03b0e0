"""Which sensor families a host has: the family table, ``Samplers`` and ``auto_samplers``."""

from __future__ import annotations

from collections.abc import Callable, Iterable

from agent.telemetry.host import ProcfsSampler, PsutilSampler
from agent.telemetry.jetson import JetsonSampler
from agent.telemetry.nvml import NvmlSampler
from agent.telemetry.rapl import RaplSampler
from agent.telemetry.sampler import Sampler

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
