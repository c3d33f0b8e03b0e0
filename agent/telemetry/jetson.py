"""Jetson power rails (INA3221 in sysfs), RAM and temperatures (jtop)."""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from agent.physical import SERIAL_PATHS, board_serial
from agent.telemetry.sampler import Reading, Sampler, _metric_name

log = logging.getLogger(__name__)


class JetsonSampler(Sampler):
    """Jetson power rails from the INA3221 hwmon files, plus jtop for the rest.

    Rails are discovered by label (``inN_label``; "NC" and the shunt-sum
    channel skipped) and read directly, files kept open and reread at
    offset 0: ``inN_input`` in mV, ``currN_input`` in mA, so a rail's power
    is mV * mA / 1e6 W.  A register read costs about 0.55 ms on AGX Orin.
    ``power_total_w`` is the sum of the rails read; the carrier board is
    not measured.  jtop (a 0.5-1 Hz tool) is read at most every 0.5 s for
    GPU load, RAM and temperatures, and gives board facts for describe().
    """

    name = "jetson"
    JTOP_INTERVAL_S = 0.5

    def __init__(
        self,
        hwmon_root: str | Path = "/sys/bus/i2c/drivers/ina3221",
        jtop_factory: Callable[[], Any] | None = None,
        serial_paths: Iterable[str] = SERIAL_PATHS,
    ) -> None:
        super().__init__()
        self.rails: list[tuple[str, int, int]] = []  # (label, mV fd, mA fd)
        for hwmon in sorted(Path(hwmon_root).glob("*/hwmon/hwmon*")):
            labels = sorted(hwmon.glob("in*_label"), key=lambda p: int(p.name[2:].split("_")[0]))
            for label_file in labels:
                label = label_file.read_text().strip()
                if label == "NC" or label.lower().startswith("sum") or "Sum" in label:
                    continue
                n = label_file.name[2:].split("_")[0]
                try:
                    fds = (os.open(hwmon / f"in{n}_input", os.O_RDONLY), os.open(hwmon / f"curr{n}_input", os.O_RDONLY))
                except OSError as exc:
                    log.warning("INA3221 rail %s in %s not readable: %s", label, hwmon, exc)
                    continue
                self.rails.append((_metric_name(label), *fds))
        self.jtop: Any = None
        self.jtop_note = "not asked for"
        self.board: dict[str, Any] = {}
        self.jtop_last_ns = -(1 << 62)
        if jtop_factory is None:
            try:
                from jtop import jtop  # optional, AGPL-3.0

                jtop_factory = jtop
            except ImportError:
                self.jtop_note = "jetson-stats (jtop) is not installed"
        if jtop_factory is not None:
            self._open_jtop(jtop_factory)
        if not self.rails and self.jtop is None:
            self.missing_reason = f"no INA3221 rails under {hwmon_root} and no jtop ({self.jtop_note}): not a Jetson"
            return
        self.metrics = (*[f"power_{label}_w" for label, _, _ in self.rails], "power_total_w", *self._jtop_metrics())
        jtop_board = getattr(self.jtop, "board", None) if self.jtop is not None else None
        self.device = f"jetson:{board_serial(tuple(serial_paths), jtop_board)}"

    def _open_jtop(self, factory: Callable[[], Any]) -> None:
        try:
            j = factory()
            j.start()
        except Exception as exc:  # no jtop service, or its socket not readable
            self.jtop_note = f"jtop failed to start: {exc}"
            log.warning("%s", self.jtop_note)
            return
        self.jtop, self.jtop_note = j, "connected"
        hw = (getattr(j, "board", None) or {}).get("hardware", {})
        nvp = getattr(j, "nvpmodel", None)
        self.board = {k.lower(): hw.get(k) for k in ("Model", "Module", "SoC", "L4T", "Jetpack")}
        self.board["nvpmodel"] = None if nvp is None else str(nvp)

    def _jtop_metrics(self) -> list[str]:
        if self.jtop is None:
            return []
        zones = [f"temp_{_metric_name(z)}_c" for z in self.jtop.temperature]
        return ["gpu_util_percent", "ram_used_bytes", "ram_total_bytes", "ram_shared_bytes", *zones]

    def read(self) -> Reading:
        out: Reading = dict.fromkeys(self.metrics)
        total = 0.0
        for label, mv_fd, ma_fd in self.rails:
            watts = int(os.pread(mv_fd, 32, 0)) * int(os.pread(ma_fd, 32, 0)) / 1e6  # mV * mA
            out[f"power_{label}_w"] = watts
            total += watts
        if self.rails:
            out["power_total_w"] = total
        now = time.monotonic_ns()
        if self.jtop is not None and now - self.jtop_last_ns >= self.JTOP_INTERVAL_S * 1e9:
            self.jtop_last_ns = now
            out.update(self._read_jtop())
        return out

    def _read_jtop(self) -> Reading:
        j, out = self.jtop, {}
        ram = j.memory.get("RAM", {})
        for key, metric in (("used", "ram_used_bytes"), ("tot", "ram_total_bytes"), ("shared", "ram_shared_bytes")):
            out[metric] = ram[key] * 1024 if key in ram else None  # kB
        loads = [g["status"]["load"] for g in j.gpu.values() if "load" in g.get("status", {})]
        out["gpu_util_percent"] = loads[0] if loads else None
        for zone, t in j.temperature.items():
            online = t.get("online", True) and t.get("temp", -256) > -256  # jtop marks offline zones -256
            out[f"temp_{_metric_name(zone)}_c"] = t.get("temp") if online else None
        return out

    def sources(self) -> dict[str, str]:
        rails = {f"power_{label}_w": "INA3221 hwmon inN_input (mV) * currN_input (mA)" for label, _, _ in self.rails}
        jtop = {m: f"jtop, every {self.JTOP_INTERVAL_S} s" for m in self.metrics if not m.startswith("power_")}
        return rails | {"power_total_w": "sum of the rails"} | jtop

    def describe(self) -> dict[str, Any]:
        d = super().describe()
        if self.available():
            rails = [label for label, _, _ in self.rails]
            d.update(
                rails=rails,
                total_note=f"power_total_w = sum of the rails listed ({' + '.join(rails) or 'none read'}); "
                "the carrier board is not measured, and the DDR rail may already be inside VIN_SYS_5V0",
                jtop=self.jtop_note,
                board=self.board,
            )
        return d

    def close(self) -> None:
        for _, mv_fd, ma_fd in self.rails:
            os.close(mv_fd)
            os.close(ma_fd)
        self.rails = []
        if self.jtop is not None:
            self.jtop.close()
            self.jtop = None
