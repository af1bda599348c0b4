"""The estimate used when no counter is readable: a documented model, not a measurement.

    energy_j = CPU time_s × active_w_per_core + idle_w × elapsed_s

CPU time counts every thread of this process and of the processes it started (the runner's stage workers, torch's
threads included), so a stage using 2 cores for 1 s adds 2 core-seconds. `active_w_per_core` and `idle_w` come from
the hardware config (`hardware.estimate`). The idle term makes the estimate's idle baseline equal `idle_w`, and idle
subtraction leaves the CPU-time term: energy proportional to the work done.
"""

from __future__ import annotations

import os
import time
from typing import Callable

from sustainable_ipa.energy.measurement import EnergySource
from sustainable_ipa.energy.meter import CounterReader


def process_tree_cpu_s() -> float:
    """CPU seconds of this process and its descendants: live ones read from /proc, ended ones as their parents'
    counts of waited-for children (a descendant ending between two reads loses only its last ticks)."""
    parents: dict[int, int] = {}
    ticks: dict[int, int] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:  # ended meanwhile
            continue
        parents[int(entry)] = int(fields[1])
        ticks[int(entry)] = sum(int(v) for v in fields[11:15])  # utime, stime, cutime, cstime
    children: dict[int, list[int]] = {}
    for pid, parent in parents.items():
        children.setdefault(parent, []).append(pid)
    me = os.getpid()
    own = os.times()
    total_s, stack = time.process_time() + own.children_user + own.children_system, list(children.get(me, []))
    while stack:
        pid = stack.pop()
        total_s += ticks[pid] / os.sysconf("SC_CLK_TCK")
        stack.extend(children.get(pid, []))
    return total_s


class EstimateReader(CounterReader):
    source = EnergySource.ESTIMATE

    def __init__(self, active_w_per_core: float, idle_w: float, cpu_time_s: Callable[[], float] = process_tree_cpu_s,
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
