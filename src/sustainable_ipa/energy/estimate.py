"""The estimate used when no counter is readable: a documented model, not a measurement.

    energy_j = process CPU time_s × active_w_per_core + idle_w × elapsed_s

CPU time counts every thread of this process (torch's worker threads included), so a stage using 2 cores for
1 s adds 2 core-seconds. `active_w_per_core` and `idle_w` come from the hardware config
(`hardware.estimate`). The idle term makes the estimate's idle baseline equal `idle_w`, and idle subtraction
leaves the CPU-time term: energy proportional to the work done.
"""

from __future__ import annotations

import time
from typing import Callable

from sustainable_ipa.energy.measurement import EnergySource
from sustainable_ipa.energy.meter import CounterReader


class EstimateReader(CounterReader):
    source = EnergySource.ESTIMATE

    def __init__(self, active_w_per_core: float, idle_w: float, cpu_time_s: Callable[[], float] = time.process_time,
                 clock: Callable[[], float] = time.perf_counter):
        self.active_w_per_core = active_w_per_core
        self.idle_w = idle_w
        self._cpu_time_s = cpu_time_s
        self._clock = clock
        self._cpu0, self._t0 = cpu_time_s(), clock()

    def read_j(self) -> dict[str, float]:
        cpu_s = self._cpu_time_s() - self._cpu0
        elapsed_s = self._clock() - self._t0
        return {"cpu": cpu_s * self.active_w_per_core + elapsed_s * self.idle_w}
