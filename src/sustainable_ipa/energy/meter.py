"""The meter interface, and the shared counter machinery: polling, wrap-around, windows, power samples.

A backend that reads cumulative counters implements `CounterReader` (two methods); `CounterMeter` turns it into
a `Meter`. Windows are named and may nest or overlap: each remembers the unwrapped totals at its start.
"""

from __future__ import annotations

import bisect
import math
import threading
import time
from abc import ABC, abstractmethod
from typing import Callable

from sustainable_ipa.energy.measurement import EnergySource, Measurement, PowerSample
from sustainable_ipa.errors import UserError


class MeterUnavailable(UserError):
    """This meter cannot read here (no counters, no permission, no library); the message says why and the fix."""


class Meter(ABC):
    """Named, nestable measurement windows over machine-wide energy.

    `begin_window(name)` starts a window; `end_window(name)` ends it and returns its `Measurement`.
    `samples(start_s, end_s)` gives the power time series recorded in a span (empty for meters that cannot sample).
    `close()` stops any background work. `fallback_reason` is set when this meter stands in for one that could not read.
    """

    source: EnergySource
    concurrent_windows = True  # several windows open at once (the live loop's switch inside its interval)
    fallback_reason: str | None = None
    tags: dict[str, str] = {}  # read-only here; a modelled meter sets its own: power_model, its source, …

    @abstractmethod
    def begin_window(self, name: str) -> None: ...

    @abstractmethod
    def end_window(self, name: str) -> Measurement: ...

    def samples(self, start_s: float = -math.inf, end_s: float = math.inf) -> list[PowerSample]:
        """The power samples taken in (start_s, end_s] (perf_counter seconds), in time order."""
        return []

    def close(self) -> None:
        pass

    def __enter__(self) -> "Meter":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class CounterReader(ABC):
    """A backend's whole job: read cumulative counters. Everything else is shared."""

    source: EnergySource

    @abstractmethod
    def read_j(self) -> dict[str, float]:
        """Cumulative joules per counter since some fixed origin (may wrap).

        Keys are `domain` or `domain/counter` (e.g. `cpu/package-0`): counters wrap independently, so they are
        unwrapped one by one and summed per domain afterwards.
        """

    def wrap_j(self) -> dict[str, float | None]:
        """Per domain, the value at which the counter wraps to 0 (None: it does not wrap)."""
        return {}


class CounterMeter(Meter):
    """Polls a `CounterReader` every `poll_interval_s` so that a window spanning several wraps is still right.

    Each poll adds `(now − last) mod range` per domain to a running total; one wrap between two polls is
    recovered, so the poll interval must be shorter than the fastest wrap (minutes for RAPL at full load).
    """

    def __init__(self, reader: CounterReader, poll_interval_s: float = 1.0,
                 clock: Callable[[], float] = time.perf_counter, start_polling: bool = True):
        self.reader = reader
        self.source = reader.source
        self.poll_interval_s = poll_interval_s
        self._clock = clock
        self._lock = threading.Lock()
        self._ranges = reader.wrap_j()
        self._last = reader.read_j()
        self._total = {d: 0.0 for d in self._last}
        self._last_time = clock()
        self._samples: list[PowerSample] = []
        self._windows: dict[str, tuple[float, dict[str, float]]] = {}
        self._poller = Poller(self.poll, poll_interval_s, f"meter-{self.source.value}") \
            if start_polling and poll_interval_s > 0 else None

    def poll(self) -> dict[str, float]:
        """Read the counters now, fold the deltas into the running totals, record a power sample."""
        with self._lock:
            now_time, now = self._clock(), self.reader.read_j()
            deltas = {}
            for domain, value in now.items():
                delta = value - self._last.get(domain, value)
                span = self._ranges.get(domain)
                if delta < 0 and span:
                    delta %= span  # the counter wrapped (at most once since the last poll)
                elif delta < 0:
                    raise MeterUnavailable(
                        f"the {self.source.value} counter {domain} went backwards ({self._last[domain]:.6g} J, then "
                        f"{value:.6g} J) and it does not wrap: its readings cannot be trusted",
                        "check the counter's driver, or measure with energy.meter=estimate")
                deltas[domain] = delta
            # every counter checked before any is committed: a refused reading leaves the totals as they were
            for domain, delta in deltas.items():
                self._total[domain] = self._total.get(domain, 0.0) + delta
            dt = now_time - self._last_time
            if dt > 0:
                self._samples.append(PowerSample(now_time, by_domain({d: v / dt for d, v in deltas.items()})))
            self._last, self._last_time = now, now_time
            return dict(self._total)

    def begin_window(self, name: str) -> None:
        totals = self.poll()
        self._windows[name] = (self._clock(), totals)

    def end_window(self, name: str) -> Measurement:
        if name not in self._windows:
            raise KeyError(f"no open energy window named {name!r}")
        started, at_start = self._windows.pop(name)
        totals = self.poll()
        return Measurement(self._clock() - started, by_domain({k: totals[k] - at_start.get(k, 0.0) for k in totals}),
                           self.source)

    def samples(self, start_s: float = -math.inf, end_s: float = math.inf) -> list[PowerSample]:
        with self._lock:
            return within(self._samples, start_s, end_s)

    def close(self) -> None:
        """Stop the poller; safe to call twice (a session closes its meter on error and again on exit)."""
        if self._poller is not None:
            self._poller.close()


class Poller:
    """Calls `poll` every `interval_s` in a daemon thread until closed: what keeps a meter's counters unwrapped and
    its samples coming between windows."""

    def __init__(self, poll: Callable[[], object], interval_s: float, name: str):
        self._poll, self._interval_s = poll, interval_s
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name=name, daemon=True)
        self._thread.start()

    def _loop(self) -> None:
        while not self._stop.wait(self._interval_s):
            try:
                self._poll()
            except Exception:  # a transient read error must not end polling; the windows read again
                continue

    def close(self) -> None:
        """Safe to call twice; a poll blocked in a slow read finishes first, the event stops the loop right after."""
        self._stop.set()
        self._thread.join(timeout=5)


def by_domain(per_counter: dict[str, float]) -> dict[str, float]:
    out: dict[str, float] = {}
    for key, value in per_counter.items():
        domain = key.split("/", 1)[0]
        out[domain] = out.get(domain, 0.0) + value
    return out


def within(samples: list, start_s: float, end_s: float) -> list:
    """The samples (sorted by `time_s`) in (start_s, end_s]: found by bisection, not by reading them all (a
    profiling session opens thousands of windows, each asking for its own)."""
    def time_s(sample) -> float:
        return sample.time_s

    return samples[bisect.bisect_right(samples, start_s, key=time_s):bisect.bisect_right(samples, end_s, key=time_s)]
