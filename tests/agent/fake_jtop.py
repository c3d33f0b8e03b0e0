"""Fakes for the Jetson sensors, which cannot exist on a CI machine.

Shapes copy the real APIs: the jetson-stats 4.x ``jtop`` client's attributes
and units, and the INA3221 hwmon files of an AGX Orin (``inN_label``,
``inN_input`` in mV, ``currN_input`` in mA; an "NC" channel and a shunt-sum
channel, both to be skipped).
"""

from __future__ import annotations

from pathlib import Path

# (label, mV, mA) per channel of the two INA3221 chips on an AGX Orin
ORIN_RAILS_0x40 = [("VDD_GPU_SOC", 5000, 1200), ("VDD_CPU_CV", 5000, 800), ("VIN_SYS_5V0", 5000, 1500)]
ORIN_RAILS_0x41 = [("NC", 0, 0), ("VDDQ_VDD2_1V8AO", 5000, 200), ("Sum of shunt voltages", 4960, 3700)]


def make_ina3221_tree(root: Path) -> Path:
    """Write two fake INA3221 hwmon folders as the kernel lays them out; returns the driver folder.

    ``root/ina3221/1-0040/hwmon/hwmon1/in1_label`` and so on.  The sum
    channel gets a ``currN_input`` too, so skipping it is the label's doing.
    """
    driver = root / "ina3221"
    for n_chip, (chip, rails) in enumerate((("1-0040", ORIN_RAILS_0x40), ("1-0041", ORIN_RAILS_0x41)), start=1):
        hwmon = driver / chip / "hwmon" / f"hwmon{n_chip}"
        hwmon.mkdir(parents=True)
        for n, (label, mv, ma) in enumerate(rails, start=1):
            (hwmon / f"in{n}_label").write_text(label + "\n")
            (hwmon / f"in{n}_input").write_text(f"{mv}\n")
            (hwmon / f"curr{n}_input").write_text(f"{ma}\n")
    return driver


def set_rail(driver: Path, chip: str, channel: int, mv: int | None = None, ma: int | None = None) -> None:
    """Change a fake rail's reading in place, as the kernel would (same file, new contents)."""
    hwmon = next((driver / chip / "hwmon").glob("hwmon*"))
    if mv is not None:
        (hwmon / f"in{channel}_input").write_text(f"{mv}\n")
    if ma is not None:
        (hwmon / f"curr{channel}_input").write_text(f"{ma}\n")


class FakeJtop:
    """The jtop 4.x client shape: power in mV/mA/mW, memory in kB, GPU keyed by name, temperatures in °C.

    Counts reads of ``memory`` (``reads``) so tests can check the sampler's
    0.5 s rate limit; ``fail_start`` imitates a missing jtop service.
    """

    def __init__(self, fail_start: bool = False) -> None:
        self.fail_start = fail_start
        self.started = self.closed = False
        self.reads = 0
        self.nvpmodel = "MAXN"  # jtop's NVPModel object prints as the mode name
        self.board = {
            "platform": {"Machine": "aarch64", "System": "Linux"},
            "hardware": {
                "Model": "NVIDIA Jetson AGX Orin Developer Kit",
                "Module": "NVIDIA Jetson AGX Orin (64GB ram)",
                "SoC": "tegra234",
                "L4T": "35.4.1",
                "Jetpack": "5.1.2",
            },
        }
        self.power = {
            "rail": {
                "VDD_GPU_SOC": {"online": True, "volt": 5000, "curr": 1200, "power": 6000, "avg": 5800},
                "VDD_CPU_CV": {"online": True, "volt": 5000, "curr": 800, "power": 4000, "avg": 3900},
                "VIN_SYS_5V0": {"online": True, "volt": 5000, "curr": 1500, "power": 7500, "avg": 7400},
                "VDDQ_VDD2_1V8AO": {"online": True, "volt": 5000, "curr": 200, "power": 1000, "avg": 1000},
            },
            "tot": {"volt": 5000, "curr": 3700, "power": 18500, "avg": 18100, "name": "ALL"},
        }
        self.temperature = {
            "CPU": {"online": True, "temp": 48.5},
            "GPU": {"online": True, "temp": 46.0},
            "CV0": {"online": False, "temp": -256.0},
            "tj": {"online": True, "temp": 49.1},
        }

    @property
    def memory(self) -> dict:
        self.reads += 1
        return {
            "RAM": {"tot": 31_000_000, "used": 4_000_000, "free": 25_000_000, "shared": 1_000_000, "cached": 900_000},
            "SWAP": {"tot": 15_000_000, "used": 0},
        }

    @property
    def gpu(self) -> dict:
        return {
            "ga10b": {
                "type": "integrated",
                "status": {"railgate": False, "tpc_pg_mask": False, "3d_scaling": True, "load": 37.5},
                "freq": {"governor": "nvhost_podgov", "cur": 1300500, "max": 1300500, "min": 306000},
            }
        }

    def start(self) -> None:
        if self.fail_start:
            raise RuntimeError("The jtop.service is not active")
        self.started = True

    def close(self) -> None:
        self.closed = True
