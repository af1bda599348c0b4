"""This CPU's power curve measured on its own counters, for every machine with the same CPU model.

On a machine whose package power can be read (RAPL), `src/calibrate.py` holds the vCPUs at a series of loads,
records a (load, W) pair for each from the counter meter, and stores the curve through them keyed by CPU model and
by the fingerprint it was measured on. A VM whose CPU model matches then uses it as its estimate, scaled to its own
vCPUs (W per hardware thread × vCPUs), labelled `power_model=calibrated` with where it was measured.
"""

from __future__ import annotations

import json
import multiprocessing
import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable, Iterator

import numpy as np

from sustainable_ipa.energy.meter import Meter
from sustainable_ipa.energy.power_curve import PowerCurve
from sustainable_ipa.energy.power_reference import PowerModel
from sustainable_ipa.fingerprint import Fingerprint

# Dense near idle, where reference curves bend most (Teads: 12 % of TDP at idle, 32 % at 10 % load).
LOAD_LEVELS = (0.0, 0.05, 0.1, 0.2, 0.3, 0.5, 0.7, 0.85, 1.0)


@dataclass(frozen=True)
class Calibration:
    cpu_model: str
    machine: str  # the fingerprint's key where it was measured
    threads: int  # the vCPUs the curve spans there
    loads: tuple[float, ...]
    watts: tuple[float, ...]
    max_error: float  # largest |measured − curve| ÷ curve over the pairs: the curve's interval
    measured_at: str

    def curve_for(self, vcpus: int, scale: float = 1.0, name: str = "calibrated") -> PowerCurve:
        """Scaled to `vcpus` (package and memory power included: the counters measured both)."""
        share = scale * vcpus / self.threads
        return PowerCurve(name, f"RAPL on {self.machine}, {self.measured_at}", self.loads,
                          tuple(w * share for w in self.watts))

    def model(self, vcpus: int) -> PowerModel:
        """The estimate from this calibration; its interval is the fit's largest error either way."""
        curve = self.curve_for(vcpus)
        return PowerModel(curve, (self.curve_for(vcpus, 1 - self.max_error, "calibrated-low"),
                                  self.curve_for(vcpus, 1 + self.max_error, "calibrated-high")),
                          {"power_model": "calibrated", "power_model_source": curve.source,
                           "power_model_cpu": self.cpu_model,
                           "power_model_range": f"the fit's largest error, {self.max_error:.1%}"})


def fit(pairs: list[tuple[float, float]]) -> tuple[tuple[float, ...], tuple[float, ...], float]:
    """A curve over loads 0…1 through the mean power at each measured load (never falling as the load rises),
    extended linearly to 0 and 1 where no pair reached them; and its error: the largest relative miss at a measured
    load when that load is left out and read from its neighbours (what the curve can be off between its points)."""
    by_load: dict[float, list[float]] = {}
    for load, watts in pairs:
        by_load.setdefault(round(min(max(load, 0.0), 1.0), 4), []).append(watts)
    xs = np.array(sorted(by_load))
    ys = np.maximum.accumulate(np.maximum([np.mean(by_load[x]) for x in xs], 0.0))  # no power falls with the load
    if len(xs) < 2:
        raise ValueError("a power curve needs pairs at two loads at least")
    error = max((abs(np.interp(xs[i], np.delete(xs, i), np.delete(ys, i)) - ys[i]) / max(ys[i], 1e-9)
                 for i in range(1, len(xs) - 1)), default=0.0)
    if xs[0] > 0:
        ys = np.insert(ys, 0, max(ys[0] - xs[0] * (ys[1] - ys[0]) / (xs[1] - xs[0]), 0.0))
        xs = np.insert(xs, 0, 0.0)
    if xs[-1] < 1:
        ys = np.append(ys, ys[-1] + (1 - xs[-1]) * (ys[-1] - ys[-2]) / (xs[-1] - xs[-2]))
        xs = np.append(xs, 1.0)
    return tuple(float(x) for x in xs), tuple(float(y) for y in ys), float(error)


def load_pairs(meter: Meter, hold_load: Callable[[float], "HeldLoad"], busy_cpu_s: Callable[[], float],
               vcpus: int, dwell_s: float, levels=LOAD_LEVELS,
               on_pair: Callable[[float, float], None] = lambda u, w: None) -> list[tuple[float, float]]:
    """At each level, hold that load for `dwell_s` and measure (the vCPUs' measured load, mean power in W)."""
    pairs = []
    for level in levels:
        with hold_load(level) as held:
            held.settle()
            busy0 = busy_cpu_s()
            meter.begin_window(f"calibrate {level}")
            held.wait(dwell_s)
            measurement = meter.end_window(f"calibrate {level}")
            load = min((busy_cpu_s() - busy0) / (measurement.duration_s * vcpus), 1.0)
        pairs.append((load, measurement.power_w))
        on_pair(load, measurement.power_w)
    return pairs


class HeldLoad:
    """`vcpus` processes each busy for `level` of every 20 ms: a load the OS counts, at a duty cycle."""

    period_s = 0.02

    def __init__(self, level: float, vcpus: int):
        self.level, self.vcpus = level, vcpus
        self._stop = multiprocessing.Event()
        self._workers = [multiprocessing.Process(target=_busy, args=(level, self.period_s, self._stop), daemon=True)
                         for _ in range(vcpus if level > 0 else 0)]

    def __enter__(self) -> "HeldLoad":
        for worker in self._workers:
            worker.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        for worker in self._workers:
            worker.join(timeout=5)

    def settle(self) -> None:
        time.sleep(1.0)  # let the workers start and the package's power follow

    def wait(self, seconds: float) -> None:
        time.sleep(seconds)


def _busy(level: float, period_s: float, stop) -> None:
    while not stop.is_set():
        start = time.perf_counter()
        while time.perf_counter() - start < level * period_s:
            pass
        time.sleep(max(period_s * (1 - level), 0.0))


def save(path: str | os.PathLike, calibration: Calibration) -> None:
    """Add to the store at `path`: one entry per CPU model and fingerprint, the latest kept."""
    path = Path(path)
    store = read_store(path)
    store.setdefault(calibration.cpu_model, {})[calibration.machine] = asdict(calibration)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(f".{os.getpid()}.tmp")
    tmp.write_text(json.dumps(store, indent=1))
    tmp.replace(path)


def read_store(path: Path) -> dict:
    try:
        store = json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return {}
    return store if isinstance(store, dict) else {}


def calibrations(path: str | os.PathLike, warn: Callable[[str], None] | None = None) -> Iterator[Calibration]:
    """The store's calibrations; an entry no calibration could give (another version's, edited by hand) is left
    out, and `warn` told, never fatal: the estimate then takes the reference data."""
    for machines in read_store(Path(path)).values():
        for entry in machines.values() if isinstance(machines, dict) else ():
            try:
                calibration = Calibration(**{**entry, "loads": tuple(entry["loads"]), "watts": tuple(entry["watts"])})
                if not isinstance(calibration.threads, int) or calibration.threads < 1:
                    raise ValueError(f"threads {calibration.threads!r}")
                calibration.model(1)  # a curve it can make: loads 0…1 increasing, no negative watts
            except (TypeError, KeyError, ValueError, ZeroDivisionError) as err:
                if warn:
                    warn(f"a power calibration in {path} is not one this project wrote ({err}); it is ignored")
                continue
            yield calibration


def calibration_for(path: str | os.PathLike, fingerprint: Fingerprint,
                    warn: Callable[[str], None] | None = None) -> Calibration | None:
    """The latest calibration of this CPU model: measured on this very fingerprint if there is one."""
    same_model = [c for c in calibrations(path, warn) if c.cpu_model == fingerprint.cpu_model]
    same_model.sort(key=lambda c: (c.machine == fingerprint.key, c.measured_at))
    return same_model[-1] if same_model else None
