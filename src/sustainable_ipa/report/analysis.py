"""The statistics of a report: per-adaptation summaries, correlations with CIs, Pareto sets with and without
energy, and the sensitivity of each configuration energy brings in."""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import stats

from sustainable_ipa.metrics.stats import mean_ci95

ENERGY = "energy_j_per_request"
KEYS = ["hardware", "adaptation"]
# Pareto objectives: metric → direction (+1 maximise, −1 minimise)
WITHOUT_ENERGY = {"accuracy_reference": +1, "cost_cores": -1, "latency_p99_s": -1}
WITH_ENERGY = {**WITHOUT_ENERGY, ENERGY: -1}


def summarise(trials: pd.DataFrame, metrics: list[str]) -> pd.DataFrame:
    """One row per hardware × adaptation: n trials, energy source(s), and mean / CI ends of every metric."""
    rows = []
    for (hardware, adaptation), group in trials.groupby(KEYS, sort=True):
        row = {"hardware": hardware, "adaptation": adaptation, "n": len(group),
               "energy_source": ",".join(sorted(group["energy_source"].astype(str).unique()))}
        for metric in metrics:
            if metric in group:
                mean, low, high = mean_ci95(group[metric].dropna().tolist())
                row[metric], row[f"{metric}_ci95_low"], row[f"{metric}_ci95_high"] = mean, low, high
        rows.append(row)
    return pd.DataFrame(rows)


@dataclass(frozen=True)
class Correlation:
    x: str
    n: int
    pearson_r: float
    pearson_ci: tuple[float, float]
    spearman_rho: float
    spearman_ci: tuple[float, float]


def correlation(summary: pd.DataFrame, x: str, y: str = ENERGY, seed: int = 0) -> Correlation | None:
    """Across configurations (per-adaptation means). Pearson CI: Fisher z (scipy); Spearman CI: percentile
    bootstrap over configurations (scipy.stats.bootstrap)."""
    data = summary[[x, y]].dropna()
    n = len(data)
    if n < 4 or data[x].nunique() < 2 or data[y].nunique() < 2:
        return None
    pearson = stats.pearsonr(data[x], data[y])
    ci = pearson.confidence_interval(0.95)
    rho = stats.spearmanr(data[x], data[y]).statistic
    with warnings.catch_warnings():  # a resample drawing one configuration only has no defined ρ: scipy warns
        warnings.simplefilter("ignore")
        boot = _bootstrap_spearman(data[x].to_numpy(), data[y].to_numpy(), seed)
    low, high = boot.confidence_interval
    return Correlation(x, n, float(pearson.statistic), (float(ci.low), float(ci.high)), float(rho),
                       (float(low), float(high)))


def _bootstrap_spearman(x, y, seed: int):
    return stats.bootstrap((x, y),
                           lambda a, b: stats.spearmanr(a, b).statistic, paired=True, vectorized=False,
                           confidence_level=0.95, n_resamples=2000, method="percentile", random_state=seed)


def pareto_set(summary: pd.DataFrame, objectives: dict[str, int]) -> set[str]:
    """Adaptations no other adaptation beats on every objective (and strictly on one)."""
    data = summary.dropna(subset=list(objectives))
    values = np.column_stack([data[m].to_numpy() * direction for m, direction in objectives.items()])
    names = data["adaptation"].tolist()
    keep = set()
    for i, v in enumerate(values):
        dominated = np.any(np.all(values >= v, axis=1) & np.any(values > v, axis=1))
        if not dominated:
            keep.add(names[i])
    return keep


@dataclass(frozen=True)
class Tradeoff:
    """An adaptation that is Pareto-optimal only once energy counts, against the best-accuracy configuration
    that beat it without energy."""

    adaptation: str
    versus: str
    energy_saved_j_per_request: float
    accuracy_given_up: float
    latency_p99_given_up_s: float
    cost_cores_difference: float


def pareto_change(summary: pd.DataFrame) -> tuple[set[str], set[str], list[Tradeoff]]:
    """(Pareto set without energy, with energy, trade-offs of the configurations energy brings in)."""
    without, with_energy = pareto_set(summary, WITHOUT_ENERGY), pareto_set(summary, WITH_ENERGY)
    by_name = summary.set_index("adaptation")
    tradeoffs = []
    for name in sorted(with_energy - without):
        me = by_name.loc[name]
        dominators = [other for other in without if all(
            (by_name.loc[other][m] - me[m]) * d >= 0 for m, d in WITHOUT_ENERGY.items())]
        if not dominators:
            continue
        best = max(dominators, key=lambda o: by_name.loc[o]["accuracy_reference"])
        them = by_name.loc[best]
        tradeoffs.append(Tradeoff(name, best, float(them[ENERGY] - me[ENERGY]),
                                  float(them["accuracy_reference"] - me["accuracy_reference"]),
                                  float(me["latency_p99_s"] - them["latency_p99_s"]),
                                  float(me["cost_cores"] - them["cost_cores"])))
    return without, with_energy, tradeoffs


def distinguishable(summary: pd.DataFrame, metric: str) -> list[tuple[str, str, bool]]:
    """Neighbours in the ordering by `metric`: (lower, higher, whether their 95 % intervals are disjoint).
    Overlapping intervals are never called an ordering."""
    data = summary.dropna(subset=[metric]).sort_values(metric)
    rows = data.to_dict("records")
    out = []
    for a, b in zip(rows, rows[1:]):
        low_b, high_a = b.get(f"{metric}_ci95_low"), a.get(f"{metric}_ci95_high")
        known = low_b is not None and high_a is not None and np.isfinite(low_b) and np.isfinite(high_a)
        out.append((a["adaptation"], b["adaptation"], bool(known and high_a < low_b)))
    return out


def mixed_energy_sources(trials: pd.DataFrame) -> list[str]:
    """The warning to show when one comparison holds energy figures from different meters."""
    warnings = []
    for hardware, group in trials.groupby("hardware"):
        sources = sorted(group["energy_source"].astype(str).unique())
        if len(sources) > 1:
            warnings.append(f"hardware {hardware}: energy from different meters ({', '.join(sources)}) is compared "
                            "below; meters can disagree by up to 2×, so treat cross-meter differences with care")
    return warnings
