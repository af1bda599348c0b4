"""RAPL through the Linux powercap tree (Intel, and AMD Zen on Linux ≥ 5.8, which use the same `intel-rapl` tree).

Packages are `intel-rapl:N` (name `package-N`); their subdomains `intel-rapl:N:M` are named `core`, `uncore`,
`dram`. A package's counter already contains its cores (and uncore), so only packages make up the `cpu` domain;
`dram` counters are separate and make up `dram`.
"""

from __future__ import annotations

import re
from pathlib import Path

from sustainable_ipa.energy.measurement import EnergySource
from sustainable_ipa.energy.meter import CounterReader, MeterUnavailable

DEFAULT_ROOT = "/sys/class/powercap"
PERMISSION_FIX = ("since CVE-2020-8694 energy_uj is readable by root only: run as root, or "
                  "`sudo chmod a+r /sys/class/powercap/intel-rapl:*/energy_uj /sys/class/powercap/intel-rapl:*:*/energy_uj`"
                  " (a udev rule makes it last), or pass energy.meter=estimate")
_ZONE = re.compile(r"^intel-rapl:(\d+)(?::(\d+))?$")


class RaplReader(CounterReader):
    source = EnergySource.RAPL

    def __init__(self, root: str | Path = DEFAULT_ROOT):
        self.root = Path(root)
        zones = {p.name: p for pattern in ("intel-rapl:*", "intel-rapl:*/intel-rapl:*") for p in self.root.glob(pattern)}
        self.counters: dict[str, Path] = {}
        for name, path in sorted(zones.items()):
            match = _ZONE.match(name)
            if not match:
                continue
            label = _read_text(path / "name")
            if match.group(2) is None:
                self.counters[f"cpu/{label or name}"] = path
            elif label == "dram":
                self.counters[f"dram/{name}"] = path
        if not self.counters:
            raise MeterUnavailable(f"no RAPL package under {self.root}",
                                   "this machine exposes no RAPL counters (VM, non-x86, old kernel): pass "
                                   "energy.meter=estimate, or energy.rapl_root=<powercap folder> if it lives elsewhere")
        self._ranges = {k: _read_uj(p / "max_energy_range_uj", k) / 1e6 for k, p in self.counters.items()}
        self.read_j()  # fail now, with the permission message, rather than in the middle of a run

    def read_j(self) -> dict[str, float]:
        return {k: _read_uj(p / "energy_uj", k) / 1e6 for k, p in self.counters.items()}

    def wrap_j(self) -> dict[str, float | None]:
        return dict(self._ranges)


def _read_text(path: Path) -> str:
    try:
        return path.read_text().strip()
    except OSError:
        return ""


def _read_uj(path: Path, counter: str) -> int:
    try:
        return int(path.read_text().strip())
    except PermissionError:
        raise MeterUnavailable(f"RAPL counter {path} is not readable ({counter})", PERMISSION_FIX) from None
    except (OSError, ValueError) as err:
        raise MeterUnavailable(f"RAPL counter {path} cannot be read ({err})", "pass energy.meter=estimate") from None
