"""Names of the physical devices a host's samplers read.

Several specbed processes may read one physical device: agents and the
controller in network namespaces of one machine, or four agents on the GPU
the controller verifies on.  Every sampler therefore names what it reads
(``describe()["device"]``), so summaries can count each device's energy
once (``controller.shared_energy``).  Names are stable across processes of
one machine and differ between machines:

``gpu:<UUID>``        an NVIDIA GPU, NVML's ``nvmlDeviceGetUUID``
``jetson:<serial>``   a Jetson board's rails, the device-tree serial number
                      (else jtop's board serial, else the machine id)
``rapl:<machine-id>`` the CPU packages of a machine (``/etc/machine-id``)
``host:<machine-id>`` the CPU and memory psutil/procfs report
"""

from __future__ import annotations

import socket
from pathlib import Path

MACHINE_ID_PATHS = ("/etc/machine-id", "/var/lib/dbus/machine-id")
SERIAL_PATHS = ("/proc/device-tree/serial-number", "/sys/firmware/devicetree/base/serial-number")


def _first_line(paths: tuple[str, ...] | list[str]) -> str | None:
    for path in paths:
        try:
            text = Path(path).read_bytes().replace(b"\x00", b"").decode(errors="replace").strip()
        except OSError:
            continue
        if text:
            return text.splitlines()[0].strip()
    return None


def machine_id(paths: tuple[str, ...] | list[str] = MACHINE_ID_PATHS) -> str:
    """This machine's id (systemd's machine-id), else its hostname."""
    return _first_line(paths) or f"hostname-{socket.gethostname()}"


def board_serial(paths: tuple[str, ...] | list[str] = SERIAL_PATHS, jtop_board: dict | None = None) -> str:
    """A Jetson board's serial: the device tree's, else jtop's (7.x: board.hardware['Serial Number'])."""
    serial = _first_line(paths)
    if not serial and jtop_board:
        serial = (jtop_board.get("hardware") or {}).get("Serial Number") or None
    return serial or machine_id()
