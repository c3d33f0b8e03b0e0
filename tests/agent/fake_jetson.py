"""Fakes for the Jetson sensors, which cannot exist on a CI machine.

Shapes copy the real APIs: jetson-stats 4.x (`jtop`) attributes and units,
and the INA3221 hwmon files of an AGX Orin (`inN_label`, `inN_input` in mV,
`currN_input` in mA; an "NC" channel and a shunt-sum channel to skip).
"""

from __future__ import annotations

from pathlib import Path

# (label, mV, mA) per channel of the two INA3221 chips on an AGX Orin
ORIN_RAILS_0x40 = [("VDD_GPU_SOC", 5000, 1200), ("VDD_CPU_CV", 5000, 800), ("VIN_SYS_5V0", 5000, 1500)]
ORIN_RAILS_0x41 = [("NC", 0, 0), ("VDDQ_VDD2_1V8AO", 5000, 200), ("Sum of shunt voltages", 0, 3700)]


def make_hwmon_tree(root: Path) -> str:
    """Write two fake INA3221 hwmon folders; returns the glob that finds them."""
    for chip, rails in (("1-0040", ORIN_RAILS_0x40), ("1-0041", ORIN_RAILS_0x41)):
        hwmon = root / chip / "hwmon" / f"hwmon{chip[-1]}"
        hwmon.mkdir(parents=True)
        for n, (label, mv, ma) in enumerate(rails, start=1):
            (hwmon / f"in{n}_label").write_text(label + "\n")
            (hwmon / f"in{n}_input").write_text(f"{mv}\n")
            (hwmon / f"curr{n}_input").write_text(f"{ma}\n")
    return str(root / "*" / "hwmon" / "hwmon*")


class FakeJtop:
    """jtop 4.x client shape: power in mW/mV/mA, memory in kB, GPU keyed by name."""

    def __init__(self) -> None:
        self.started = self.closed = False
        self.reads = 0
        self.nvpmodel = "MAXN"
        self.power = {
            "rail": {
                "VDD_GPU_SOC": {"volt": 5000, "curr": 1200, "power": 6000, "avg": 5800},
                "VDD_CPU_CV": {"volt": 5000, "curr": 800, "power": 4000, "avg": 3900},
            },
            "tot": {"volt": 5000, "curr": 2000, "power": 10000, "avg": 9700},
        }
        self.temperature = {"cpu": {"temp": 48.5, "online": True}, "gpu": {"temp": 46.0, "online": True}}

    @property
    def memory(self) -> dict:
        self.reads += 1
        return {"RAM": {"used": 4_000_000, "tot": 31_000_000, "shared": 1_000_000}}

    @property
    def gpu(self) -> dict:
        return {"ga10b": {"status": {"load": 37.5}, "freq": {"cur": 1300500}}}

    def start(self) -> None:
        self.started = True

    def close(self) -> None:
        self.closed = True
