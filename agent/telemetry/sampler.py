"""The sample schema and the ``Sampler`` interface every sensor family implements."""

from __future__ import annotations

import re
from abc import ABC, abstractmethod
from typing import Any

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
