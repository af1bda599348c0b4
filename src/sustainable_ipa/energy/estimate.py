"""The estimate used when no counter is readable: a power model of the load, not a measurement.

Every `poll_interval_s` the meter samples the load (`LoadSample`): how busy the vCPUs this process may use were
since the last sample, and which share of that was this process and the processes it started (the runner's stage
workers, torch's threads included). A window's energy is its samples' energy under the power curve
(`PowerCurve.energy_j`), and under each curve of the model's interval (`Measurement.alternatives`). Which curves:
`energy/power_reference.py` (reference data for this CPU), or the old constants of `hardware.estimate`.
"""

from __future__ import annotations

import os
import threading
import time
from typing import Callable

import psutil

from sustainable_ipa.energy.measurement import EnergySource, Measurement, PowerSample
from sustainable_ipa.energy.meter import Meter
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


def vcpus_busy_s() -> float:
    """Busy CPU seconds (all but idle and iowait) of the CPUs this process may run on, since boot."""
    allowed = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None
    per_cpu = psutil.cpu_times(percpu=True)
    chosen = [per_cpu[i] for i in allowed if i < len(per_cpu)] if allowed else per_cpu
    return float(sum(sum(t) - t.idle - getattr(t, "iowait", 0.0) for t in chosen))


class EstimateMeter(Meter):
    """Windows of modelled energy over sampled load. Windows may nest and overlap, like the counter meters'."""

    source = EnergySource.ESTIMATE

    def __init__(self, curve: PowerCurve, alternatives: tuple[PowerCurve, ...], vcpus: int,
                 poll_interval_s: float = 1.0, run_cpu_s: Callable[[], float] = process_tree_cpu_s,
                 busy_cpu_s: Callable[[], float] = vcpus_busy_s, clock: Callable[[], float] = time.perf_counter,
                 start_polling: bool = True, tags: dict[str, str] | None = None):
        self.curve, self.alternatives, self.vcpus = curve, alternatives, vcpus
        self.tags = tags or {"power_model": curve.name, "power_model_source": curve.source}
        self._run_cpu_s, self._busy_cpu_s, self._clock = run_cpu_s, busy_cpu_s, clock
        self._lock = threading.Lock()
        self._last = (clock(), run_cpu_s(), busy_cpu_s())
        self._samples: list[LoadSample] = []
        self._windows: dict[str, int] = {}
        self._stop = threading.Event()
        self._thread = None
        if start_polling and poll_interval_s > 0:
            self._thread = threading.Thread(target=self._poll_loop, args=(poll_interval_s,), name="meter-estimate",
                                            daemon=True)
            self._thread.start()

    def poll(self) -> None:
        """Sample the load since the last poll."""
        with self._lock:
            now = (self._clock(), self._run_cpu_s(), self._busy_cpu_s())
            dt_s, run_s, busy_s = (b - a for a, b in zip(self._last, now))
            if dt_s <= 0:
                return
            busy_s = max(busy_s, run_s, 0.0)  # the OS's per-CPU ticks and per-process times differ in granularity
            self._samples.append(LoadSample(now[0], dt_s, min(busy_s / (dt_s * self.vcpus), 1.0),
                                            min(run_s / busy_s, 1.0) if busy_s > 0 else 0.0))
            self._last = now

    def _poll_loop(self, interval_s: float) -> None:
        while not self._stop.wait(interval_s):
            self.poll()

    def begin_window(self, name: str) -> None:
        self.poll()
        with self._lock:
            self._windows[name] = len(self._samples)

    def end_window(self, name: str) -> Measurement:
        if name not in self._windows:
            raise KeyError(f"no open energy window named {name!r}")
        self.poll()
        with self._lock:
            samples = self._samples[self._windows.pop(name):]
        duration_s = sum(s.dt_s for s in samples)

        def measured(curve: PowerCurve) -> Measurement:
            return Measurement(duration_s, curve.energy_j(samples), self.source, static_w=curve.static_w,
                               model=curve.name)

        return Measurement(duration_s, self.curve.energy_j(samples), self.source, static_w=self.curve.static_w,
                           alternatives=tuple(measured(c) for c in self.alternatives), model=self.curve.name)

    def load_samples(self) -> list[LoadSample]:
        """The load as sampled: what any other power curve can be applied to afterwards (`load.csv`)."""
        with self._lock:
            return list(self._samples)

    def samples(self) -> list[PowerSample]:
        """The run's modelled power per sample: static power plus its share of the active power."""
        with self._lock:
            samples = list(self._samples)
        return [PowerSample(s.time_s, {d: j / s.dt_s for d, j in self.curve.energy_j([s]).items()}) for s in samples]

    def close(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None
