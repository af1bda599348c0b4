"""The statistics of a report: per-adaptation summaries, correlations with CIs, Pareto sets with and without
energy, and the sensitivity of each configuration energy brings in."""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import stats

from sustainable_ipa.metrics.energy import PER_MODEL
from sustainable_ipa.metrics.stats import interval_text, metric_interval

ENERGY = "energy_j_per_request"
KEYS = ["hardware", "adaptation"]
# Pareto objectives: metric → direction (+1 maximise, −1 minimise)
WITHOUT_ENERGY = {"accuracy_reference": +1, "cost_cores": -1, "latency_p99_s": -1}
WITH_ENERGY = {**WITHOUT_ENERGY, ENERGY: -1}
MEASURED = "run"  # the `evaluator` of a measured run; `profile`: composed from stage profiles
# what kind of figure a row is, and the stages' precision/runtime, kept per configuration
LABELS = ["evaluator", "energy_source", "load", "numerics"]


def summarise(trials: pd.DataFrame, metrics: list[str]) -> pd.DataFrame:
    """One row per hardware × adaptation: n trials, the labels (evaluator, energy source, load) of its trials, and
    mean / CI ends of every metric. Only measured trials get an interval: repeated predictions of one configuration
    are the same number again, not a sample."""
    rows = []
    for (hardware, adaptation), group in trials.groupby(KEYS, sort=True):
        row = {"hardware": hardware, "adaptation": adaptation, "n": len(group)}
        row.update({label: ",".join(sorted(group[label].astype(str).unique())) for label in LABELS if label in group})
        measured = row.get("evaluator", MEASURED) == MEASURED
        if "sla_s" in group:
            row["sla_s"] = float(group["sla_s"].max())  # the SLA the configuration ran under
        for metric in metrics:
            if metric in group:
                interval = metric_interval(metric, group[metric].dropna().tolist())
                low, high = (interval.low, interval.high) if measured else (float("nan"), float("nan"))
                row[metric], row[f"{metric}_ci95_low"], row[f"{metric}_ci95_high"] = interval.mean, low, high
        rows.append(row)
    return pd.DataFrame(rows)


@dataclass(frozen=True)
class Correlation:
    x: str
    n: int
    pearson_r: float
    pearson_ci: tuple[float, float]
    spearman_rho: float
    spearman_ci: tuple[float, float]  # NaN ends where the bootstrap has too few configurations to vary

    def text(self) -> str:
        """`Pearson r=0.81 [0.42 … 0.95], Spearman ρ=0.80 [too few (n = 4)]`"""
        return (f"Pearson r={self.pearson_r:.2f} [{interval_text(*self.pearson_ci, self.n, 2)}], "
                f"Spearman ρ={self.spearman_rho:.2f} [{interval_text(*self.spearman_ci, self.n, 2)}]")


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


@dataclass(frozen=True)
class EnergyEntry:
    """A configuration in the Pareto set with energy but not without it, against every configuration that
    dominates it on accuracy, cost and latency (all of which need more energy on average, or it would not enter)."""

    adaptation: str
    dominated_by: tuple[str, ...]
    energy_ci95_high: float  # NaN: no interval (one trial, or figures that are not measured)
    dominators_ci95_low: float  # the lowest lower end among the dominators' energy intervals
    verdict: str  # DISTINGUISHABLE, OVERLAP or NO_INTERVAL

    @property
    def distinguishable(self) -> bool:
        return self.verdict == DISTINGUISHABLE


DISTINGUISHABLE = "energy distinguishable"
OVERLAP = "energy intervals overlap"
NO_INTERVAL = "no interval"


def energy_entries(summary: pd.DataFrame) -> list[EnergyEntry]:
    """The configurations energy brings into the Pareto set, each with whether the trials can tell its energy apart:
    its interval's upper end below the lower end of every configuration that dominates it otherwise."""
    without, with_energy = pareto_set(summary, WITHOUT_ENERGY), pareto_set(summary, WITH_ENERGY)
    by_name = summary.set_index("adaptation")
    high_of, low_of = (by_name.get(f"{ENERGY}_ci95_{end}", pd.Series(float("nan"), by_name.index))
                       for end in ("high", "low"))
    entries = []
    for name in sorted(with_energy - without):
        dominators = tuple(sorted(o for o in by_name.index if o != name and
                                  _dominates(by_name.loc[o], by_name.loc[name], WITHOUT_ENERGY)))
        high, lows = float(high_of[name]), [float(low_of[o]) for o in dominators]
        low = min(lows) if lows else float("nan")
        if not all(math.isfinite(v) for v in (high, *lows)):
            verdict = NO_INTERVAL
        else:
            verdict = DISTINGUISHABLE if high < low else OVERLAP
        entries.append(EnergyEntry(name, dominators, high, low, verdict))
    return entries


def _dominates(a: pd.Series, b: pd.Series, objectives: dict[str, int]) -> bool:
    better = [(a[m] - b[m]) * d for m, d in objectives.items()]
    return all(x >= 0 for x in better) and any(x > 0 for x in better)


def answer(summary: pd.DataFrame) -> tuple[str, str]:
    """(verdict, sentence) for one hardware: does energy change which configuration is best? `yes` only for a
    configuration whose energy the trials tell apart from every configuration that beats it otherwise; entries on
    means alone are `cannot tell`. Where the energy is modelled, the verdict is reached again under each curve of
    the power model's interval (`energy_j_per_request_model_<curve>`): the sentence says whether it holds across
    the model's range or depends on the power model."""
    verdict, sentence = _answer(summary)
    curves = [c for c in summary if c.startswith(PER_MODEL) and not c.endswith(("_ci95_low", "_ci95_high"))]
    if not curves or verdict == "nothing to compare":
        return verdict, sentence
    under = {}
    for column in curves:
        other = summary.copy()
        for end in ("", "_ci95_low", "_ci95_high"):
            other[ENERGY + end] = summary.get(column + end, float("nan"))
        under[column[len(PER_MODEL):]] = _answer(other)[0]
    if all(v == verdict for v in under.values()):
        return verdict, f"{sentence}; this holds across the power model's range ({', '.join(under)} give it too)"
    differ = "; ".join(f"{v} under {curve}" for curve, v in under.items() if v != verdict)
    return "depends on the power model", f"it depends on the power model: {sentence}; but {differ}"


def _answer(summary: pd.DataFrame) -> tuple[str, str]:
    if len(summary) < 2:
        return "nothing to compare", (f"nothing to compare: one configuration ({', '.join(summary['adaptation'])}); "
                                      "run several to ask whether energy changes which is best")
    entries = energy_entries(summary)
    by_name = summary.set_index("adaptation")
    if not entries:
        unsure = summary.get(f"{ENERGY}_ci95_low", pd.Series(float("nan"), summary.index)).isna().any()
        return "no", ("no: the Pareto set over accuracy, cost and latency already holds every energy-optimal "
                      "configuration" + (" (on figures without an interval for some configurations)" if unsure else ""))
    told = [e.adaptation + missed_sla(by_name.loc[e.adaptation]) for e in entries if e.distinguishable]
    untold = [f"{e.adaptation}{missed_sla(by_name.loc[e.adaptation])} ({_why_not(e)}, against "
              f"{', '.join(e.dominated_by)})" for e in entries if not e.distinguishable]
    if told:
        rest = f"; the trials cannot tell for {'; '.join(untold)}" if untold else ""
        return "yes", (f"yes: {', '.join(told)} become Pareto-optimal only when energy counts, with energy "
                       "distinguishable (95 % interval below that of every configuration that beats it on "
                       f"accuracy, cost and latency){rest}")
    return "cannot tell", ("the trials cannot tell: on mean energy per request " + "; ".join(untold) +
                           " would become Pareto-optimal only when energy counts, but no such entry is "
                           "distinguishable from the configurations that beat it otherwise")


def missed_sla(row: pd.Series) -> str:
    """` (misses the SLA: p99 10.8 s against 6.89 s)` for a configuration whose mean p99 is over its SLA, else ``:
    said in the sentence that names it, never only in a side table."""
    p99_s, sla_s = row.get("latency_p99_s", math.nan), row.get("sla_s", math.nan)
    if math.isfinite(p99_s) and math.isfinite(sla_s) and p99_s > sla_s:
        return f" (misses the SLA: p99 {p99_s:.3g} s against {sla_s:.3g} s)"
    return ""


def _why_not(entry: EnergyEntry) -> str:
    if entry.verdict == OVERLAP:
        return f"its energy interval reaches {entry.energy_ci95_high:.4g} J, above {entry.dominators_ci95_low:.4g} J"
    return "no energy interval: one trial per configuration, or figures that are not measured"


def distinguishable(summary: pd.DataFrame, metric: str) -> list[tuple[str, str, bool | None]]:
    """Neighbours in the ordering by `metric`: (lower, higher, whether their 95 % intervals are disjoint; None
    where one has no interval). Overlapping or missing intervals are never called an ordering."""
    data = summary.dropna(subset=[metric]).sort_values(metric)
    rows = data.to_dict("records")
    out: list[tuple[str, str, bool | None]] = []
    for a, b in zip(rows, rows[1:]):
        low_b, high_a = b.get(f"{metric}_ci95_low"), a.get(f"{metric}_ci95_high")
        known = low_b is not None and high_a is not None and np.isfinite(low_b) and np.isfinite(high_a)
        out.append((a["adaptation"], b["adaptation"], bool(high_a < low_b) if known else None))
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


def machines(trials: pd.DataFrame) -> pd.DataFrame:
    """Each hardware label of the report and the machine (fingerprint) its figures were measured on."""
    return trials[["hardware", "machine"]].drop_duplicates().sort_values("hardware").reset_index(drop=True)


def several_machines(trials: pd.DataFrame) -> list[str]:
    """The warning to show when the runs come from more than one machine: each is reported apart, never mixed."""
    found = machines(trials)
    if found["machine"].nunique() < 2:
        return []
    return [f"these runs were measured on {found['machine'].nunique()} machines: each is reported apart, as "
            f"{', '.join(found['hardware'])}; no Pareto set, correlation or ordering below mixes them (see "
            "'Where the figures were measured')"]


# Pipeline types: does a request of a text pipeline need less energy than one of a video pipeline? ---------------
PIPELINE_TYPES = {"frame": "video", "speech": "audio", "text": "text"}  # by what a request brings the first stage


def energy_by(trials: pd.DataFrame, key: str) -> pd.DataFrame:
    """Per hardware and `key` (`pipeline`, or `type`: video, audio, text): energy per request over every trial of
    its configurations, mean and 95 % interval of the mean (`metrics/stats.py`, the one interval of every figure:
    inside [0, ∞), "too few" under 3 trials), with how many configurations and trials it pools. The pool is the
    configurations that ran: another choice of them moves the figure."""
    data = trials.dropna(subset=[ENERGY]).assign(type=lambda t: t["pipeline_input"].map(PIPELINE_TYPES).fillna("other"))
    rows = []
    for (hardware, value), group in data.groupby(["hardware", key], sort=True):
        interval = metric_interval(ENERGY, group[ENERGY].tolist())
        rows.append({"hardware": hardware, key: value, "pipelines": ", ".join(sorted(group["pipeline"].unique())),
                     "configurations": group["adaptation"].nunique(), "trials": interval.n,
                     ENERGY: interval.mean, f"{ENERGY}_ci95_low": interval.low, f"{ENERGY}_ci95_high": interval.high})
    return pd.DataFrame(rows)


def type_answer(by_type: pd.DataFrame) -> str:
    """The proposal's hypothesis on one hardware, `by_type` its rows of `energy_by(trials, "type")`: text
    pipelines need less energy per request than video ones, told only by disjoint intervals."""
    rows = {r["type"]: r for r in by_type.to_dict("records")}

    def shown(name: str, row: dict) -> str:
        interval = interval_text(row[f"{ENERGY}_ci95_low"], row[f"{ENERGY}_ci95_high"], row["trials"], 3)
        return f"{name} {row[ENERGY]:.3g} J [{interval}]"

    ordered = " < ".join(shown(t, r) for t, r in sorted(rows.items(), key=lambda item: item[1][ENERGY]))
    if "text" not in rows or "video" not in rows:
        return f"{ordered}; the hypothesis compares text with video, and these runs lack one of them"
    text, video = rows["text"], rows["video"]
    if not all(np.isfinite([text[f"{ENERGY}_ci95_high"], video[f"{ENERGY}_ci95_low"]])):
        return f"{ordered}; cannot tell: too few trials for an interval"
    if text[f"{ENERGY}_ci95_high"] < video[f"{ENERGY}_ci95_low"]:
        verdict = "holds: text pipelines need less energy per request than video ones (95 % intervals disjoint)"
    elif text[f"{ENERGY}_ci95_low"] > video[f"{ENERGY}_ci95_high"]:
        verdict = "does not hold: text pipelines need more energy per request than video ones (intervals disjoint)"
    else:
        verdict = "cannot tell: the text and video intervals overlap"
    return f"{ordered}; the hypothesis {verdict}"
