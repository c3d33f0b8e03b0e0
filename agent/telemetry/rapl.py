"""CPU package energy from Linux powercap (RAPL), wrap-corrected."""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

from agent.physical import MACHINE_ID_PATHS, machine_id
from agent.telemetry.sampler import Reading, Sampler


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
