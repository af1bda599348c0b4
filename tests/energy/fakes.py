"""Fakes for the energy tests: a powercap tree on disk, an NVML module, a reader driven by a counter."""

from __future__ import annotations

import os
from pathlib import Path

from sustainable_ipa.energy.measurement import EnergySource
from sustainable_ipa.energy.meter import CounterReader

MAX_RANGE_UJ = 262_143_328_850  # a real package's max_energy_range_uj


class PowercapTree:
    """`intel-rapl:N` packages with `core` (N:0) and `dram` (N:1) subdomains, nested as sysfs shows them."""

    def __init__(self, root: Path, packages: int = 2, max_range_uj: int = MAX_RANGE_UJ):
        self.root = root
        self.zones: dict[str, Path] = {}
        for n in range(packages):
            package = root / f"intel-rapl:{n}"
            self._zone(package, f"package-{n}", max_range_uj)
            self._zone(package / f"intel-rapl:{n}:0", "core", max_range_uj)
            self._zone(package / f"intel-rapl:{n}:1", "dram", max_range_uj)

    def _zone(self, path: Path, name: str, max_range_uj: int) -> None:
        path.mkdir(parents=True)
        (path / "name").write_text(f"{name}\n")
        (path / "max_energy_range_uj").write_text(f"{max_range_uj}\n")
        (path / "energy_uj").write_text("0\n")
        self.zones[path.name] = path

    def set_uj(self, zone: str, value: int) -> None:
        # write then rename: a reader sees the old or the new value, never an empty file (as sysfs reads are)
        staged = self.zones[zone] / ".energy_uj.new"
        staged.write_text(f"{value}\n")
        os.replace(staged, self.zones[zone] / "energy_uj")

    def get_uj(self, zone: str) -> int:
        return int((self.zones[zone] / "energy_uj").read_text())

    def add_uj(self, zone: str, delta: int, max_range_uj: int = MAX_RANGE_UJ) -> None:
        self.set_uj(zone, (self.get_uj(zone) + delta) % max_range_uj)


class NVMLError(Exception):
    pass


class FakeNvml:
    """The pynvml calls the NVML reader uses. `counter=False` makes the energy call unsupported (pre-Volta)."""

    def __init__(self, counter: bool = True):
        self.counter = counter
        self.energy_mj = {0: 1_000_000, 1: 5_000_000}
        self.power_mw = {0: 150_000, 1: 300_000}
        self.initialised = False

    def nvmlInit(self):
        self.initialised = True

    def nvmlDeviceGetHandleByIndex(self, index):
        if index not in self.energy_mj:
            raise NVMLError("Invalid Argument")
        return index

    def nvmlDeviceGetTotalEnergyConsumption(self, handle):
        if not self.counter:
            raise NVMLError("Not Supported")
        return self.energy_mj[handle]

    def nvmlDeviceGetPowerUsage(self, handle):
        return self.power_mw[handle]


class WorkCounterReader(CounterReader):
    """Joules proportional to work done: callers add to `joules` as they process items."""

    source = EnergySource.ESTIMATE

    def __init__(self):
        self.joules = 0.0

    def read_j(self) -> dict[str, float]:
        return {"cpu": self.joules}


class FakePyRapl:
    """The pyRAPL module as the pyRAPL reader uses it: `setup()` and `sensor.Sensor().energy()`.

    `energy()` gives (package, dram) µJ per socket; each call adds 1 J to every counter.
    """

    def __init__(self, sockets: int = 1):
        self.uj = [0.0] * (2 * sockets)
        fake = self

        class Sensor:
            def energy(self):
                fake.uj = [v + 1_000_000 for v in fake.uj]
                return list(fake.uj)

        self.sensor = type("sensor", (), {"Sensor": Sensor})

    def setup(self):
        pass
