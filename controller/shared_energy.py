"""Energy counted once per physical device, shared among the hosts that read it.

Several hosts of a run may read one physical device: agents on the GPU the
controller verifies on, or namespace hosts on one machine's CPU packages.
Adding every host's energy would count that device once per host (a run of
four agents on one GPU reported 49.4 J/token against 12.8 J/token from the
GPU's own counter).  Every sampler names its device (``agent.physical``,
``describe()["device"]`` in the manifest's telemetry entries); here each
device's energy over the window is read once, from the stream with the most
samples in the window, and split equally among the hosts that read it.

Per host (a point's ``hosts.<host>`` in summary.json's ``points``): ``energy_j`` is the host's
share, ``energy_devices`` maps each device to ``family``,
``device_energy_j`` (the whole device over the window), ``hosts`` (who
shares it) and ``read_from``.  ``run_energy`` gives the run's total with
each device once.  A host whose telemetry names no device (an older agent)
keeps its own energy, as if its devices were its alone.
"""

from __future__ import annotations

from controller.energy import counter_delta, integrate

#: sampler family -> (cumulative counter column and its scale to joules, power column)
FAMILIES: dict[str, tuple[tuple[str, float] | None, str | None]] = {
    "nvml": (("gpu_energy_mj", 1e-3), "gpu_power_w"),
    "rapl": (("cpu_energy_uj", 1e-6), None),
    "jetson": (None, "power_total_w"),
}


def family_energy(cols: dict[str, list], family: str, window: tuple[int, int]) -> tuple[float | None, int]:
    """Joules of one sampler family over ``window`` (its counter, else its integrated power) and samples used."""
    counter, power = FAMILIES[family]
    t = cols["t_ns"]
    if counter is not None:
        col, scale = counter
        delta, n = counter_delta(t, cols.get(col, []), *window)
        if delta is not None:
            return delta * scale, n
    if power is not None and power in cols:
        series = cols[power]
        n = sum(1 for ti, v in zip(t, series, strict=True) if v is not None and window[0] <= ti <= window[1])
        energy = integrate(t, series, [window])
        if energy is not None:
            return energy, n
    return None, 0


def devices_read(host: str, describe: list[dict] | None) -> dict[str, str]:
    """family -> physical device id for the energy families a host's telemetry reports.

    Without a device name (telemetry from before devices were named, or no
    manifest entry) a family is taken to be the host's own: ``<host>/<family>``.
    """
    named = {d.get("sampler"): d.get("device") for d in describe or [] if d.get("available")}
    return {family: named.get(family) or f"{host}/{family}" for family in FAMILIES}


def attribute_shared(
    hosts: dict[str, dict],
    series: dict[str, dict | None],
    describes: dict[str, list[dict] | None],
    window: tuple[int, int],
    tokens: int,
) -> None:
    """Rewrite each host summary's ``energy_j`` as its share of the devices it reads (in place)."""
    readings: dict[str, dict] = {}  # device -> {"family", "hosts", "best": (samples, joules, host)}
    for host, cols in series.items():
        if not cols or not cols.get("t_ns"):
            continue
        for family, device in devices_read(host, describes.get(host)).items():
            energy, n = family_energy(cols, family, window)
            if energy is None:
                continue
            entry = readings.setdefault(device, {"family": family, "hosts": [], "best": (-1, None, None)})
            entry["hosts"].append(host)
            if n > entry["best"][0]:
                entry["best"] = (n, energy, host)
    mine: dict[str, dict] = {}
    for device, entry in readings.items():
        _, energy, read_from = entry["best"]
        for host in entry["hosts"]:
            mine.setdefault(host, {})[device] = {
                "family": entry["family"],
                "device_energy_j": energy,
                "hosts": sorted(entry["hosts"]),
                "read_from": read_from,
            }
    for host, summary in hosts.items():
        devices = mine.get(host)
        if not devices:
            continue
        share = sum(d["device_energy_j"] / len(d["hosts"]) for d in devices.values())
        summary["energy_j"] = share
        summary["joules_per_generated_token"] = share / tokens if tokens else None
        summary["energy_devices"] = devices


def run_energy(hosts: dict[str, dict], tokens: int) -> dict:
    """The run's energy with every physical device once: ``energy_j``, ``joules_per_generated_token``, ``devices``."""
    devices: dict[str, dict] = {}
    for summary in hosts.values():
        devices.update(summary.get("energy_devices") or {})
    total = sum(d["device_energy_j"] for d in devices.values()) if devices else None
    return {
        "energy_j": total,
        "joules_per_generated_token": total / tokens if total is not None and tokens else None,
        "devices": devices,
    }
