"""Summaries over repetitions: the one definition of a metric's 95 % interval, used by the console, the runs, the
study and the report.

A confidence interval intersected with the values a quantity can take is still a 95 % interval for it (the true mean
lies in that range too), so a Student-t interval of the mean is cut to the metric's `domain`: latency, energy, power,
cost and emissions never below 0, proportions (SLA attainment, accuracy, shares) within [0, 1]. With fewer than
`MIN_SAMPLES` values there is no interval: it says "too few (n = 2)" instead.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy import stats

MIN_SAMPLES = 3  # a t interval from 2 values spans ±12.7 standard errors: it says nothing
NON_NEGATIVE = (0.0, math.inf)
PROPORTION = (0.0, 1.0)
UNBOUNDED = (-math.inf, math.inf)
# a quantity in one of these units is never negative (the project's names carry their unit)...
UNITS = {"s", "ms", "j", "w", "g", "kwh", "usd", "rps", "cores", "requests", "items", "1k", "request"}
# ...unless it is a difference or an error
SIGNED = ("saved", "given_up", "_vs_", "error", "delta", "change", "drift", "cosine", "residual")
PROPORTIONS = ("sla_attainment", "accuracy", "_share", "_agreement")


def domain(metric: str) -> tuple[float, float]:
    """The values `metric` can take, from its name: signed differences and errors unbounded, proportions in [0, 1],
    quantities with a unit non-negative, anything else unbounded."""
    if any(word in metric for word in SIGNED):
        return UNBOUNDED
    if any(word in metric for word in PROPORTIONS) and not metric.endswith("_ratio"):
        return PROPORTION
    if UNITS & set(metric.split("_")):
        return NON_NEGATIVE
    return UNBOUNDED


@dataclass(frozen=True)
class Interval:
    """The mean of `n` values and the ends of its 95 % interval (NaN where there are too few values)."""

    mean: float
    low: float
    high: float
    n: int

    @property
    def known(self) -> bool:
        return math.isfinite(self.low) and math.isfinite(self.high)

    def text(self, digits: int = 4) -> str:
        """`0.51 … 1` or `too few (n = 2)`."""
        return interval_text(self.low, self.high, self.n, digits)


def mean_interval(values, bounds: tuple[float, float] = UNBOUNDED) -> Interval:
    """The mean of the finite `values` and its 95 % Student-t interval cut to `bounds` (see the module's docstring)."""
    x = np.asarray([v for v in values if v is not None and math.isfinite(v)], dtype=float)
    nan = float("nan")
    if x.size == 0:
        return Interval(nan, nan, nan, 0)
    mean = float(x.mean())
    if x.size < MIN_SAMPLES:
        return Interval(mean, nan, nan, int(x.size))
    sem = float(stats.sem(x))
    if sem == 0:
        return Interval(mean, mean, mean, int(x.size))
    low, high = stats.t.interval(0.95, df=x.size - 1, loc=mean, scale=sem)
    return Interval(mean, max(float(low), bounds[0]), min(float(high), bounds[1]), int(x.size))


def metric_interval(metric: str, values) -> Interval:
    """`mean_interval` of a named metric, within its `domain`."""
    return mean_interval(values, domain(metric))


def interval_text(low: float | None, high: float | None, n: int, digits: int = 4) -> str:
    """An interval in words: `0.51 … 1`, or `too few (n = 2)` where it has no ends (absent or NaN, as recorded)."""
    if low is None or high is None or not (math.isfinite(low) and math.isfinite(high)):
        return f"too few (n = {n})"
    return f"{low:.{digits}g} … {high:.{digits}g}"
