"""A power model: the power of the vCPUs a run may use as a function of their load, and the energy of a load trace.

    P(u) = cpu_w(u) + memory_w        u = busy CPU seconds ÷ (elapsed × vCPUs), in [0, 1]

`cpu_w` is piecewise linear through (load, W) points, so a reference curve (Boavizta's fitted log curve sampled at
101 loads), a linear min–max model (Cloud Carbon Footprint) and a curve calibrated on RAPL all have one shape.
Energy of a window = Σ P(u)·dt over its load samples, split in two parts, both recorded:

- static: P(0)·dt, the power drawn whatever runs (the idle baseline this model implies);
- active: (P(u) − P(0))·dt times the run's share of the busy time (its process tree's CPU seconds ÷ the machine's),
  so another process on the same vCPUs is not charged to the run.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class LoadSample:
    """Between the previous sample and this one: `dt_s` elapsed, the vCPUs' load and the run's share of it."""

    time_s: float
    dt_s: float
    load: float  # busy CPU seconds of the vCPUs ÷ (dt × vCPUs), in [0, 1]
    run_share: float  # the run's CPU seconds ÷ all busy CPU seconds on them, in [0, 1]


@dataclass(frozen=True)
class PowerCurve:
    """Power of `vcpus` vCPUs against their load. `source` says where the points come from (logged as a tag)."""

    name: str
    source: str
    loads: tuple[float, ...]  # increasing, from 0 to 1
    cpu_w: tuple[float, ...]
    memory_w: float = 0.0

    def __post_init__(self):
        if len(self.loads) != len(self.cpu_w) or len(self.loads) < 2:
            raise ValueError("a power curve needs as many watts as loads, at least two")
        if self.loads[0] != 0.0 or self.loads[-1] != 1.0 or any(b <= a for a, b in zip(self.loads, self.loads[1:])):
            raise ValueError(f"a power curve's loads run from 0 to 1, increasing: {self.loads}")
        if min(self.cpu_w) < 0 or self.memory_w < 0:
            raise ValueError("a power curve has no negative watts")

    def power_w(self, load: float) -> float:
        return float(np.interp(min(max(load, 0.0), 1.0), self.loads, self.cpu_w)) + self.memory_w

    @property
    def static_w(self) -> float:
        return self.power_w(0.0)

    def energy_j(self, samples: list[LoadSample]) -> dict[str, float]:
        """{"cpu": J, "dram": J} of the samples: static over their whole time, active as the run's share."""
        static_cpu_w = self.power_w(0.0) - self.memory_w
        cpu_j = sum((static_cpu_w + (self.power_w(s.load) - self.static_w) * s.run_share) * s.dt_s for s in samples)
        return {"cpu": cpu_j, "dram": self.memory_w * sum(s.dt_s for s in samples)}


def from_function(name: str, source: str, cpu_w, memory_w: float, points: int = 101) -> PowerCurve:
    """A curve through `points` evenly spaced loads of a function of the load in [0, 1]: at 101, Boavizta's log
    curve and its samples differ by at most 0.11 % (4.8 % at 11 loads: the curve is steep near idle)."""
    loads = tuple(float(u) for u in np.linspace(0.0, 1.0, points))
    return PowerCurve(name, source, loads, tuple(max(float(cpu_w(u)), 0.0) for u in loads), memory_w)
