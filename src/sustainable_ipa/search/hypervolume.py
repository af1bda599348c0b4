"""Hypervolume of a set of objective vectors, via Optuna's implementation."""

from __future__ import annotations

import numpy as np

from sustainable_ipa.compat.optuna_private import compute_hypervolume


def _as_minimisation(values: np.ndarray, directions: list[str]) -> np.ndarray:
    sign = np.array([-1.0 if d == "maximize" else 1.0 for d in directions])
    return np.asarray(values, dtype=float) * sign


def reference_point(values: np.ndarray, directions: list[str], margin: float = 0.1) -> np.ndarray:
    """Slightly worse than the worst value seen in every objective (in minimisation form)."""
    loss = _as_minimisation(values, directions)
    worst, best = loss.max(axis=0), loss.min(axis=0)
    return worst + margin * np.maximum(worst - best, 1e-12)


def hypervolume(values: np.ndarray, directions: list[str], reference: np.ndarray) -> float:
    if len(values) == 0:
        return 0.0
    loss = _as_minimisation(values, directions)
    loss = loss[np.all(loss < reference, axis=1)]
    return float(compute_hypervolume(loss, reference)) if len(loss) else 0.0


def hypervolume_history(values: np.ndarray, feasible: np.ndarray, directions: list[str],
                        reference: np.ndarray) -> list[float]:
    """Hypervolume of the feasible points among the first k trials, for every k."""
    return [hypervolume(values[:k][feasible[:k]], directions, reference) for k in range(1, len(values) + 1)]
