"""Fewer profiles timed: a stage's batch latency modelled against the batch size, and a profile's timing stopped once
its mean is known well enough.

IPA profiles each variant at a few batch sizes and fits latency as a quadratic in the batch size (its
`optimizer/models.py`). Here the fit is a non-negative least-squares one (`scipy.optimize.nnls`) of
`c0 + c1·b (+ c2·b²)`: a fixed cost per batch, a cost per item and, for the quadratic, what grows faster than the
batch. Non-negative coefficients keep a predicted latency increasing with the batch size and never below zero,
which an unconstrained fit through three noisy points does not. Residuals are relative, so that a batch of one
counts as much as a batch of eight.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.optimize import nnls

from sustainable_ipa.metrics.stats import mean_interval


@dataclass(frozen=True)
class BatchFit:
    """`value(b) = Σ coefficients[k]·b^k`, fitted on `timed` batch sizes."""

    coefficients: tuple[float, ...]
    timed: tuple[int, ...]
    residual: float  # relative RMS error at the timed batch sizes (0 where the fit passes through them)

    def __call__(self, batch_size: int) -> float:
        return float(sum(c * batch_size ** k for k, c in enumerate(self.coefficients)))


def fit_batches(batch_sizes: list[int], values: list[float], degree: int = 2) -> BatchFit:
    """The non-negative polynomial of `degree` (1: linear, 2: IPA's quadratic) closest to `values` (latencies or
    energies per batch, all above 0) at `batch_sizes`, in relative terms."""
    b = np.asarray(batch_sizes, dtype=float)
    y = np.asarray(values, dtype=float)
    if len(b) < 2 or len(b) != len(y) or np.any(y <= 0) or not np.all(np.isfinite(y)):
        raise ValueError(f"a batch fit needs two or more positive values, got {values} at {batch_sizes}")
    design = np.vander(b, degree + 1, increasing=True)
    coefficients, _ = nnls(design / y[:, None], np.ones_like(y))  # rows scaled: relative residuals
    predicted = design @ coefficients
    residual = float(np.sqrt(np.mean((predicted / y - 1) ** 2)))
    return BatchFit(tuple(float(c) for c in coefficients), tuple(int(x) for x in batch_sizes), residual)


def batch_sizes_to_time(batch_sizes: list[int], how_many: int) -> list[int]:
    """Which of a profile's `batch_sizes` to time when `how_many` are (0: all): the smallest and the largest, so that
    every other one is interpolated, never extrapolated, and the rest spread evenly on a log scale between them."""
    ordered = sorted(set(batch_sizes))
    if how_many <= 0 or how_many >= len(ordered):
        return ordered
    if how_many == 1:
        return [ordered[0]]
    targets = np.geomspace(ordered[0], ordered[-1], how_many)
    chosen: list[int] = []
    for target in targets:  # nearest not yet chosen, in log distance
        left = [b for b in ordered if b not in chosen]
        chosen.append(min(left, key=lambda b: abs(np.log(b) - np.log(target))))
    return sorted(chosen)


def mean_known(samples: list[float], relative_tolerance: float, min_samples: int) -> bool:
    """Sequential stopping: whether `samples` (batch latencies, in the order timed) pin their mean down to within
    ±`relative_tolerance` of it (the 95 % interval of `metrics/stats.py`), once there are `min_samples` of them."""
    if len(samples) < min_samples:
        return False
    interval = mean_interval(samples)
    return interval.known and (interval.high - interval.low) / 2 <= relative_tolerance * interval.mean
