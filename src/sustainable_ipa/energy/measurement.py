"""What a meter returns."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum


class EnergySource(str, Enum):
    """Where an energy figure came from; logged as the tag `energy_source`."""

    RAPL = "rapl"
    PYRAPL = "pyrapl"
    NVML = "nvml"
    CODECARBON = "codecarbon"
    ESTIMATE = "estimate"


@dataclass(frozen=True)
class Measurement:
    """Energy of one window. Domains: `cpu` (packages, cores included), `dram`, `gpu`. Units: J and s.

    A modelled window (the estimate) also carries `static_w`, the power its model draws at no load (the idle
    baseline it implies), the name of its curve (`model`), and `alternatives`: the same window under each power
    curve of the model's interval.
    """

    duration_s: float
    energy_j: dict[str, float] = field(default_factory=dict)
    source: EnergySource = EnergySource.ESTIMATE
    static_w: float | None = None
    alternatives: tuple["Measurement", ...] = ()
    model: str | None = None  # the power curve a modelled figure comes from
    # a curve of a composite's modelled part: how much more static power it draws than the window's central curve
    # (the composite's idle baseline is measured, with the central curve in it)
    static_shift_w: float = 0.0

    @property
    def total_j(self) -> float:
        return float(sum(self.energy_j.values()))

    @property
    def power_w(self) -> float:
        return self.total_j / self.duration_s if self.duration_s > 0 else float("nan")


@dataclass(frozen=True)
class PowerSample:
    """Mean power per domain between the previous sample and `time_s` (time.perf_counter seconds)."""

    time_s: float
    power_w: dict[str, float]
