"""Host profiles: device kinds (``profiles/devices/``) and testbeds (``profiles/testbeds/``) checked against an inventory."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from controller.profiles.base import ProfileError, check
from controller.profiles.device import DeviceProfile
from controller.profiles.loaders.files import PROFILES_DIR, _read_yaml, _resolve, _typed, _unknown
from controller.profiles.testbed import TestbedProfile


@dataclass(frozen=True)
class Device:
    """``profiles/devices/NAME.yaml``: a kind of host, what it runs models on and what it can measure."""

    name: str
    role: str  # "edge" | "server" | "any"
    torch_device: str  # "cpu" | "cuda"
    threads: int | None  # torch CPU threads (None: torch's choice)
    memory_gb: float | None
    accelerator: str | None
    memory_bandwidth_gbs: float | None  # peak DRAM bandwidth, for memory-bound floors
    power_sources: list[str]
    description: str
    path: str


def load_device(ref: str, where: str = "device") -> Device:
    """``profiles/devices/NAME.yaml``."""
    path = _resolve(ref, "devices", ".yaml")
    data = _read_yaml(path)
    check(DeviceProfile, data, path, where)
    allowed = {
        "name",
        "role",
        "torch_device",
        "threads",
        "memory_gb",
        "accelerator",
        "memory_bandwidth_gbs",
        "power_sources",
        "description",
    }
    _unknown(path, where, data, allowed)
    role = data.get("role", "any")
    if role not in ("edge", "server", "any"):
        raise ProfileError(f"{path}: role: expected one of edge, server, any, got {role!r}")
    torch_device = _typed(path, "torch_device", data.get("torch_device", "cpu"), str, "cpu, cuda or cuda:N")
    if not (torch_device == "cpu" or torch_device.startswith("cuda")):
        raise ProfileError(f"{path}: torch_device: expected cpu, cuda or cuda:N, got {torch_device!r}")
    threads = data.get("threads")
    if threads is not None and (_typed(path, "threads", threads, int, "a positive integer or null") < 1):
        raise ProfileError(f"{path}: threads: expected a positive integer or null, got {threads}")
    numbers = {}
    for key in ("memory_gb", "memory_bandwidth_gbs"):
        value = data.get(key)
        if value is not None and _typed(path, key, value, (int, float), "a positive number or null") <= 0:
            raise ProfileError(f"{path}: {key}: expected a positive number or null, got {value}")
        numbers[key] = None if value is None else float(value)
    sources = _typed(path, "power_sources", data.get("power_sources", []), list, "a list of sampler families")
    return Device(
        name=str(data.get("name", path.stem)),
        role=role,
        torch_device=torch_device,
        threads=threads,
        memory_gb=numbers["memory_gb"],
        accelerator=data.get("accelerator"),
        memory_bandwidth_gbs=numbers["memory_bandwidth_gbs"],
        power_sources=[str(x) for x in sources],
        description=str(data.get("description", "")),
        path=str(path),
    )


TESTBED_AGENT_FIELDS = {"agent_name", "nvpmodel_mode", "uplink_rate", "agent_device"}


@dataclass(frozen=True)
class Testbed:
    """``profiles/testbeds/NAME.yaml``: the hosts an experiment runs on, checked against an inventory.

    ``controller`` is the server the controller runs on (in the inventory's
    ``servers`` group); ``agents`` maps every host of the ``jetsons`` group
    to the per-device settings that the inventory must agree with.
    """

    name: str
    inventory: str  # resolved path
    controller: str
    agents: dict[str, dict[str, Any]]
    path: str


def load_testbed(ref: str) -> Testbed:
    path = _resolve(ref, "testbeds", ".yaml")
    data = _read_yaml(path)
    check(TestbedProfile, data, path, "testbed")
    for key in ("inventory", "controller"):
        _typed(path, key, data.get(key), str, "a string")
    agents = _typed(path, "agents", data.get("agents"), dict, "a mapping of host name to settings")
    for host, settings in agents.items():
        settings = {} if settings is None else _typed(path, f"agents.{host}", settings, dict, "a mapping")
        _unknown(path, f"agents.{host}", settings, TESTBED_AGENT_FIELDS)
        _host_values(path, host, settings)
        agents[host] = settings
    inventory = Path(data["inventory"]).expanduser()
    if not inventory.is_absolute():
        # relative to the working folder, else to the repository (bundled profiles)
        inventory = inventory if inventory.exists() else PROFILES_DIR.parent / inventory
    if not inventory.exists():
        raise ProfileError(f"{path}: inventory: {data['inventory']} not found")
    return Testbed(str(data.get("name", path.stem)), str(inventory), data["controller"], agents, str(path))


def _host_values(path: Path, host: str, settings: dict) -> None:
    """Values that reach a board (names, rates) must match controller.hostvalues' grammar."""
    from controller.hostvalues import HostValueError, check_value, check_values

    try:
        check_value("agent_name", host, f"{path}: agents: host name ")
        check_values(settings, f"{path}: agents.{host}.")
    except HostValueError as exc:
        raise ProfileError(str(exc)) from None
