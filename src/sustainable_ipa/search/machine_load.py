"""How much of the machine others took while we measured: CPU time of other processes and the hypervisor's steal.

A profile is only worth its batches' latencies if the stage had its cores to itself. On a shared VM a neighbour's
job or the hypervisor can slow a batch by several times, and nothing in the latency itself says so; these counters
(psutil's system-wide CPU times, and our own process's) do.
"""

from __future__ import annotations

import statistics
import time
from dataclasses import dataclass

import psutil
import torch


@dataclass(frozen=True)
class CpuCounters:
    busy_s: float  # machine-wide CPU seconds spent running anything (all processes, the kernel, interrupts)
    steal_s: float  # machine-wide CPU seconds the hypervisor gave to other guests
    own_s: float  # CPU seconds of this process (all its threads)
    wall_s: float


def read_counters(clock) -> CpuCounters:
    machine = psutil.cpu_times()
    own = psutil.Process().cpu_times()
    busy = machine.user + machine.nice + machine.system + getattr(machine, "irq", 0.0) + getattr(machine, "softirq", 0.0)
    return CpuCounters(busy, getattr(machine, "steal", 0.0), own.user + own.system, clock())


@dataclass
class LoadTally:
    """Others' CPU time and steal summed over the windows a profile's batches ran in."""

    others_cpu_s: float = 0.0
    steal_s: float = 0.0
    wall_s: float = 0.0

    def add(self, before: CpuCounters, after: CpuCounters) -> None:
        self.others_cpu_s += max((after.busy_s - before.busy_s) - (after.own_s - before.own_s), 0.0)
        self.steal_s += max(after.steal_s - before.steal_s, 0.0)
        self.wall_s += after.wall_s - before.wall_s

    def shares(self, machine_cores: int) -> tuple[float, float]:
        """(others' CPU, steal) as shares of what the machine's cores could give over the windows."""
        capacity_s = self.wall_s * machine_cores
        return (self.others_cpu_s / capacity_s, self.steal_s / capacity_s) if capacity_s > 0 else (0.0, 0.0)


def machine_cores() -> int:
    """Cores the system-wide counters add up over (all of the machine's, not only those this process may use)."""
    return psutil.cpu_count() or 1


def reference_batch_s(rounds: int = 5) -> float:
    """The median time of a fixed piece of work (one-thread fp32 matmuls, the bulk of a stage's batch): timed when
    profiles are taken and again beside a run, it tells the machine's drift apart from the model's error (these VMs
    change speed by tens of percent over minutes)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        a = torch.randn(256, 256, generator=torch.Generator().manual_seed(0))
        times = []
        for _ in range(rounds + 1):  # the first warms the kernels up
            began = time.perf_counter()
            for _ in range(20):
                a @ a
            times.append(time.perf_counter() - began)
        return statistics.median(times[1:])
    finally:
        torch.set_num_threads(threads)
