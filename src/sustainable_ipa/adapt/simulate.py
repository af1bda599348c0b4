"""Replay a load trace and a carbon trace, deciding every interval, and account for what each decision costs."""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np

from sustainable_ipa.adapt.optimizer import Weights, decide, pipeline_p99_s, stage_options
from sustainable_ipa.adapt.traces import Trace
from sustainable_ipa.energy.carbon import emissions_g
from sustainable_ipa.search.profiles import ProfileTable


@dataclass(frozen=True)
class Policy:
    name: str
    weights: Weights


@dataclass(frozen=True)
class Interval:
    t_s: float
    load_rps: float
    predicted_rps: float
    carbon_intensity_g_per_kwh: float
    stages: tuple[tuple[str, str], ...]  # (stage, "variant bN precision/runtime") in pipeline order; "-" when none
    cores: int
    power_w: float
    accuracy: float
    sla_attainment: float
    energy_j: float
    emissions_g: float
    core_s: float
    flagged: bool
    decision_ms: float

    def row(self) -> dict[str, object]:
        """The interval as a table row: its fields in order, `stages` spread into a column per stage (its name)."""
        out: dict[str, object] = {}
        for name, value in self.__dict__.items():
            if name == "stages":
                out.update(self.stages)
            else:
                out[name] = value
        return out


def precompute_options(profiles: ProfileTable, space: dict, reference: dict, load: Trace) -> float:
    """Replay every stage option's latency at each load of the trace before the first decision (the persistence
    forecast predicts no other load), as IPA precomputes its latency model: a decision is then a lookup and the
    program. Returns the seconds it took."""
    began = time.perf_counter()
    for load_rps in sorted({float(v) for v in load.values}):
        stage_options(profiles, space, load_rps, reference)
    return time.perf_counter() - began


def simulate(policy: Policy, profiles: ProfileTable, space: dict, reference: dict, load: Trace, carbon: Trace,
             sla_s: float, max_cores: int, step_s: float, pue: float = 1.0) -> list[Interval]:
    """Every `step_s`: decide for the predicted load (the last interval's, a persistence forecast), then serve the
    actual load. SLA attainment: 1 when the choice meets the SLA and its capacity covers the actual load, the
    served fraction when it falls short, 0 when even the choice's latency misses the SLA."""
    out = []
    predicted = float(load.values[0])
    for t in np.arange(0.0, float(load.t_s[-1]) + step_s, step_s):
        actual, intensity = load.at(t), carbon.at(t)
        began = time.perf_counter()
        decision = decide(stage_options(profiles, space, predicted, reference), sla_s, max_cores, policy.weights,
                          intensity, pipeline_p99_s=pipeline_p99_s(profiles, predicted))
        decision_ms = (time.perf_counter() - began) * 1e3
        if decision.choice is None:
            nothing = tuple((stage, "-") for stage in space)
            out.append(Interval(t, actual, predicted, intensity, nothing, 0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, True,
                                decision_ms))
            predicted = actual
            continue
        capacity = min(o.capacity_rps for o in decision.options)
        served = min(actual, capacity)
        attainment = 0.0 if not decision.meets_sla else (1.0 if actual <= capacity else capacity / actual)
        power = served * sum(o.energy_j_per_request for o in decision.options)
        energy = power * step_s
        chosen = tuple((stage, f"{c.variant} b{c.batch_size} {c.precision}/{c.runtime}")
                       for stage, c in decision.choice.stages().items())
        out.append(Interval(t, actual, predicted, intensity, chosen, decision.cores, power, decision.accuracy,
                            attainment, energy, emissions_g(energy, intensity, pue), decision.cores * step_s,
                            decision.flagged, decision_ms))
        predicted = actual
    return out


def totals(intervals: list[Interval]) -> dict[str, float]:
    load = np.array([i.load_rps for i in intervals])
    weights = load / load.sum() if load.sum() > 0 else np.full(len(load), 1 / len(load))
    return {
        "energy_j": float(sum(i.energy_j for i in intervals)),
        "emissions_g": float(sum(i.emissions_g for i in intervals)),
        "accuracy_mean": float(np.dot(weights, [i.accuracy for i in intervals])),  # weighted by requests
        "sla_attainment": float(np.dot(weights, [i.sla_attainment for i in intervals])),
        "core_hours": float(sum(i.core_s for i in intervals) / 3600),
        "decision_ms_p50": float(np.median([i.decision_ms for i in intervals])),
        "intervals_flagged": float(sum(i.flagged for i in intervals)),
    }


def deferrable_job(carbon: Trace, job_s: float, window_s: float, power_w: float, step_s: float) -> dict[str, float]:
    """A batch job of `job_s` seconds at `power_w` that may start anywhere in the first `window_s` seconds:
    emissions if started at once vs at the cleanest start (flexible start, Dodge et al. 2022)."""
    def emissions_from(start: float) -> float:
        ticks = np.arange(start, start + job_s, step_s)
        return float(sum(emissions_g(power_w * min(step_s, start + job_s - t), carbon.at(t)) for t in ticks))

    starts = np.arange(0.0, max(window_s - job_s, 0.0) + step_s, step_s)
    emissions = [emissions_from(s) for s in starts]
    best = int(np.argmin(emissions))
    return {"job_emissions_now_g": emissions[0], "job_emissions_best_g": emissions[best],
            "job_best_start_s": float(starts[best]),
            "job_saved_fraction": 1 - emissions[best] / emissions[0] if emissions[0] > 0 else 0.0}
