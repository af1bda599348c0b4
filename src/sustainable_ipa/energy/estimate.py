"""The estimate used when no counter is readable: a power model of the load, not a measurement.

Every `poll_interval_s` the meter samples the load (`LoadSample`): how busy the vCPUs this process may use were
since the last sample, and which share of that was this process and the processes it started (the runner's stage
workers, torch's threads included). A window's energy is its samples' energy under the power curve
(`PowerCurve.energy_j`), and under each curve of the model's interval (`Measurement.alternatives`). Which curves:
`energy/power_reference.py` (reference data for this CPU), or the old constants of `hardware.estimate`.
"""

from __future__ import annotations

import math
import os
import threading
import time
from typing import Callable

import psutil

from sustainable_ipa.energy.measurement import EnergySource, Measurement, PowerSample
from sustainable_ipa.energy.meter import Meter, Poller, within
from sustainable_ipa.energy.power_curve import LoadSample, PowerCurve


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


def watched_cpus() -> list[int]:
    """The CPUs this process may run on (all of them where affinity is not known)."""
    if hasattr(os, "sched_getaffinity"):
        return sorted(os.sched_getaffinity(0))
    return list(range(os.cpu_count() or 1))


def vcpus_busy_s(cpus: list[int] | None = None) -> float:
    """Busy CPU seconds of `cpus` (default: the watched ones) since boot: all but idle, iowait and steal (time the
    hypervisor gave to another guest); guest time is already inside user time, so it is not added again."""
    per_cpu = psutil.cpu_times(percpu=True)
    chosen = [per_cpu[i] for i in (cpus if cpus is not None else watched_cpus()) if i < len(per_cpu)]
    not_busy = ("idle", "iowait", "steal", "guest", "guest_nice")
    return float(sum(sum(t) - sum(getattr(t, name, 0.0) for name in not_busy) for t in chosen))


class EstimateMeter(Meter):
    """Windows of modelled energy over sampled load. Windows may nest and overlap, like the counter meters'."""

    source = EnergySource.ESTIMATE

    def __init__(self, curve: PowerCurve, alternatives: tuple[PowerCurve, ...], vcpus: int,
                 poll_interval_s: float = 1.0, run_cpu_s: Callable[[], float] = process_tree_cpu_s,
                 busy_cpu_s: Callable[[], float] = vcpus_busy_s, clock: Callable[[], float] = time.perf_counter,
                 start_polling: bool = True, tags: dict[str, str] | None = None, watched: int | None = None):
        """`vcpus`: what the curve spans; `watched`: how many CPUs `busy_cpu_s` sums over (default `vcpus`), the
        load's denominator."""
        self.curve, self.alternatives, self.vcpus = curve, alternatives, vcpus
        self.watched = watched or vcpus
        self.tags = tags or {"power_model": curve.name, "power_model_source": curve.source}
        self._run_cpu_s, self._busy_cpu_s, self._clock = run_cpu_s, busy_cpu_s, clock
        self._lock = threading.Lock()
        self._last = (clock(), run_cpu_s(), busy_cpu_s())
        self._samples: list[LoadSample] = []
        self._power: list[PowerSample] = []  # each sample's modelled power, made once as it is taken
        self._windows: dict[str, int] = {}
        self._poller = Poller(self.poll, poll_interval_s, "meter-estimate") \
            if start_polling and poll_interval_s > 0 else None

    def poll(self) -> None:
        """Sample the load since the last poll."""
        with self._lock:
            self._poll_locked()

    def _poll_locked(self) -> None:
        now = (self._clock(), self._run_cpu_s(), self._busy_cpu_s())
        dt_s, run_s, busy_s = (b - a for a, b in zip(self._last, now))
        if dt_s <= 0:
            return
        # a child reaped between two reads is counted once too often, then once too few: never a negative share
        run_s = max(run_s, 0.0)
        busy_s = max(busy_s, run_s)  # the OS's per-CPU ticks and per-process times differ in granularity
        sample = LoadSample(now[0], dt_s, min(busy_s / (dt_s * self.watched), 1.0),
                            min(run_s / busy_s, 1.0) if busy_s > 0 else 0.0)
        self._samples.append(sample)
        self._power.append(PowerSample(sample.time_s, {d: j / dt_s for d, j in self.curve.energy_j([sample]).items()}))
        self._last = now

    def begin_window(self, name: str) -> None:
        with self._lock:  # one acquisition: no background sample lands between the poll and the window's start
            self._poll_locked()
            self._windows[name] = len(self._samples)

    def end_window(self, name: str) -> Measurement:
        with self._lock:
            if name not in self._windows:
                raise KeyError(f"no open energy window named {name!r}")
            self._poll_locked()
            samples = self._samples[self._windows.pop(name):]
        duration_s = sum(s.dt_s for s in samples)

        def measured(curve: PowerCurve) -> Measurement:
            return Measurement(duration_s, curve.energy_j(samples), self.source, static_w=curve.static_w,
                               model=curve.name)

        return Measurement(duration_s, self.curve.energy_j(samples), self.source, static_w=self.curve.static_w,
                           alternatives=tuple(measured(c) for c in self.alternatives), model=self.curve.name)

    def load_samples(self, start_s: float = -math.inf, end_s: float = math.inf) -> list[LoadSample]:
        """The load as sampled between two times: what any other power curve can be applied to afterwards."""
        with self._lock:
            return within(self._samples, start_s, end_s)

    def samples(self, start_s: float = -math.inf, end_s: float = math.inf) -> list[PowerSample]:
        """The run's modelled power per sample (static power plus its share of the active power), in a span."""
        with self._lock:
            return within(self._power, start_s, end_s)

    def close(self) -> None:
        if self._poller is not None:
            self._poller.close()

