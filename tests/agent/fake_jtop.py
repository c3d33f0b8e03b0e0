"""Fakes for the Jetson sensors, which cannot exist on a CI machine.

Shapes copy the real APIs: the jetson-stats 7.x ``jtop`` client's attributes
and units (``jtop/jtop.py`` of jetson-stats 7.2: ``board``, ``memory``,
``gpu``, ``power``, ``temperature``, ``nvpmodel``; ``start``/``ok``/``close``
and the context manager), and the INA3221 hwmon files of an AGX Orin (``inN_label``,
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
    """The jtop 7.x client shape: power in mV/mA/mW, memory in kB, GPU keyed by name, temperatures in °C.

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
                "699-level Part Number": "699-13701-0005-500 M.0",
                "P-Number": "p3701-0005",
                "Module": "NVIDIA Jetson AGX Orin (64GB ram)",
                "SoC": "tegra234",
                "CUDA Arch BIN": "8.7",
                "Codename": "Concord",
                "Serial Number": "1421822056789",
                "L4T": "36.4.0",
                "Jetpack": "6.1",
            },
            "libraries": {"CUDA": "12.6.68", "cuDNN": "9.3.0.75", "TensorRT": "10.3.0.30", "VPI": "3.2.4"},
        }
        self.power = {
            "rail": {
                "VDD_GPU_SOC": {
                    "online": True,
                    "type": "INA3221",
                    "status": "ok",
                    "volt": 5000,
                    "curr": 1200,
                    "power": 6000,
                    "avg": 5800,
                },
                "VDD_CPU_CV": {
                    "online": True,
                    "type": "INA3221",
                    "status": "ok",
                    "volt": 5000,
                    "curr": 800,
                    "power": 4000,
                    "avg": 3900,
                },
                "VIN_SYS_5V0": {
                    "online": True,
                    "type": "INA3221",
                    "status": "ok",
                    "volt": 5000,
                    "curr": 1500,
                    "power": 7500,
                    "avg": 7400,
                },
                "VDDQ_VDD2_1V8AO": {
                    "online": True,
                    "type": "INA3221",
                    "status": "ok",
                    "volt": 5000,
                    "curr": 200,
                    "power": 1000,
                    "avg": 1000,
                },
            },
            "tot": {"volt": 5000, "curr": 3700, "power": 18500, "avg": 18100, "name": "ALL"},
        }
        self.temperature = {
            "CPU": {"online": True, "temp": 48.5, "max": 99.0, "crit": 103.0},
            "GPU": {"online": True, "temp": 46.0, "max": 99.0, "crit": 103.0},
            "CV0": {"online": False, "temp": -256.0},
            "tj": {"online": True, "temp": 49.1},
        }

    @property
    def memory(self) -> dict:
        self.reads += 1
        return {
            "RAM": {
                "tot": 31_000_000,
                "used": 4_000_000,
                "free": 25_000_000,
                "buffers": 100_000,
                "cached": 900_000,
                "shared": 1_000_000,
                "lfb": 2_000,  # large free blocks of 4 MB
            },
            "SWAP": {"tot": 15_000_000, "used": 0, "cached": 0, "table": {}},
            "EMC": {"online": True, "val": 12, "cur": 3_199_000, "max": 3_199_000, "min": 204_000},
        }

    @property
    def gpu(self) -> dict:
        return {
            "ga10b": {
                "type": "integrated",
                "status": {"railgate": False, "tpc_pg_mask": False, "3d_scaling": True, "load": 37.5},
                "freq": {
                    "governor": "nvhost_podgov",
                    "cur": 1300500,
                    "max": 1300500,
                    "min": 306000,
                    "GPC": [1300500, 1300500],
                },
            }
        }

    def start(self) -> None:
        if self.fail_start:
            raise RuntimeError("The jtop.service is not active")
        self.started = True

    def ok(self, spin: bool = False) -> bool:
        """7.x: True while the connection to the jtop service is up."""
        return self.started and not self.closed

    def close(self) -> None:
        self.closed = True

    def __enter__(self) -> FakeJtop:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
