"""How busy the controller's host was over a run segment: load average and CPU steal.

Throughput measured on a shared host is noise (the same demo ran at 0.55
and 6.12 tokens/s on a loaded and a quiet machine), so every segment records
the host's load and the report warns when it was busy.  Read from procfs:
``/proc/loadavg`` (1-minute load) and ``/proc/stat`` (CPU jiffies, of which
``steal`` is time a hypervisor gave to other guests).
"""

from __future__ import annotations

import os
import time

BUSY_LOAD_PER_CPU = 1.0  # a 1-minute load above the CPU count: processes waited for a core
BUSY_STEAL_FRACTION = 0.05


def snapshot() -> dict:
    """Load averages, CPU jiffies (total, idle, steal) and the time, now."""
    out: dict = {"unix_s": time.time(), "cpu_count": os.cpu_count()}
    try:
        out["loadavg"] = [float(x) for x in open("/proc/loadavg").read().split()[:3]]
        fields = [int(x) for x in open("/proc/stat").readline().split()[1:]]
        out["jiffies_total"] = sum(fields[:8])  # user..steal (guest time is already in user)
        out["jiffies_idle"] = fields[3] + (fields[4] if len(fields) > 4 else 0)
        out["jiffies_steal"] = fields[7] if len(fields) > 7 else 0
    except (OSError, ValueError, IndexError):
        pass  # not Linux: no load recorded
    return out


def over_segment(start: dict, end: dict) -> dict:
    """Busy fraction, steal fraction and the load averages seen at both ends of a segment."""
    out: dict = {"cpu_count": start.get("cpu_count"), "seconds": end["unix_s"] - start["unix_s"]}
    if "loadavg" not in start or "loadavg" not in end:
        return out
    total = end["jiffies_total"] - start["jiffies_total"]
    out["loadavg_1m_start"], out["loadavg_1m_end"] = start["loadavg"][0], end["loadavg"][0]
    out["loadavg_1m_max"] = max(start["loadavg"][0], end["loadavg"][0])
    if total > 0:
        out["cpu_busy_fraction"] = 1 - (end["jiffies_idle"] - start["jiffies_idle"]) / total
        out["cpu_steal_fraction"] = (end["jiffies_steal"] - start["jiffies_steal"]) / total
    return out


def describe(load: dict | None) -> str | None:
    """The load over a segment as one phrase for a report, or None where none was recorded."""
    if not load or "loadavg_1m_max" not in load:
        return None
    return (
        f"1-minute load {load['loadavg_1m_start']:.1f} at start, {load['loadavg_1m_end']:.1f} at end, "
        f"CPU busy {100 * (load.get('cpu_busy_fraction') or 0):.0f}%, "
        f"steal {100 * (load.get('cpu_steal_fraction') or 0):.1f}% ({load.get('cpu_count')} CPUs)"
    )


def busy_warning(load: dict | None) -> str | None:
    """A sentence for the report when throughput was measured on a busy host, else None."""
    if not load or "loadavg_1m_max" not in load:
        return None
    cpus = load.get("cpu_count") or 1
    why = []
    if load["loadavg_1m_max"] > BUSY_LOAD_PER_CPU * cpus:
        why.append(f"1-minute load up to {load['loadavg_1m_max']:.1f} on {cpus} CPUs")
    if (load.get("cpu_steal_fraction") or 0) > BUSY_STEAL_FRACTION:
        why.append(f"CPU steal {100 * load['cpu_steal_fraction']:.0f}%")
    if not why:
        return None
    return (
        "**busy host**: " + ", ".join(why) + "; tokens/s and times here include waiting for the CPU and do not "
        "compare with runs on a quiet host (acceptance, bytes and token counts do not depend on load)."
    )
