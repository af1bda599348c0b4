"""Replay a load trace and a carbon trace, deciding every interval, and account for what each decision costs."""

from __future__ import annotations

import time
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np

from sustainable_ipa.adapt.capacity import max_load_rps
from sustainable_ipa.adapt.forecast import Last, Predictor
from sustainable_ipa.adapt.optimizer import Decision, Weights, decide, pipeline_p99_s, stage_options, to_choice
from sustainable_ipa.adapt.switching import (NEW_WORKERS, NO_SWITCH, BringUps, Dwell, serve_interval,
                                             switch_cost, worth_switching)
from sustainable_ipa.adapt.traces import Trace, aggregate
from sustainable_ipa.energy.carbon import emissions_g
from sustainable_ipa.search.compose import energy_range_shares
from sustainable_ipa.search.profiles import ProfileTable


@dataclass(frozen=True)
class Policy:
    name: str
    weights: Weights
    power_budget_w: float | None = None  # adapt.power_budget_w: a cap on active power, every decision
    carbon_budget_g_per_h: float | None = None  # adapt.carbon_budget_g_per_h: a cap on the emissions rate


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
    flagged: bool  # the choice misses the SLA at the predicted load, or nothing fitted the cores or the budget
    decision_ms: float
    load_peak_rps: float = 0.0  # the highest load inside the interval (load_rps is its mean)
    fits: bool = True  # something kept up with the predicted load within the cores (else: the most the space serves)
    forecast_ms: float = 0.0  # the predictor's time, apart from the decision's
    over_budget: bool = False  # served over the policy's power or carbon budget (`over_budget`)
    nothing_within_budget: bool = False  # no configuration fitted the budget at the planned load: the least power
    switch: str = NO_SWITCH  # how the interval's configuration was reached: none | in place | new workers
    switch_energy_j: float = 0.0  # its bring-up, included in energy_j
    # the power model's interval of energy_j where the profiles carry one (the estimate); the bring-up counted as is
    energy_j_low: float | None = None
    energy_j_high: float | None = None

    def row(self) -> dict[str, object]:
        """The interval as a table row: its fields in order, `stages` spread into a column per stage (its name)."""
        out: dict[str, object] = {}
        for name, value in self.__dict__.items():
            if name == "stages":
                out.update(self.stages)
            else:
                out[name] = value
        return out


def precompute_options(profiles: ProfileTable, space: dict, reference: dict, loads: Trace | Iterable[float]) -> float:
    """Replay every stage option's latency at each load the replay will plan for before the first decision (the
    intervals' aggregated loads: all the persistence forecast predicts), as IPA precomputes its latency model: a
    decision is then a lookup and the program. `loads`: those loads, or a trace (its values). Returns the seconds
    it took."""
    began = time.perf_counter()
    for load_rps in sorted({float(v) for v in (loads.values if isinstance(loads, Trace) else loads)}):
        stage_options(profiles, space, load_rps, reference)
    return time.perf_counter() - began


def interval_starts_s(span_s: float, step_s: float) -> np.ndarray:
    """The decision times of a replay of `span_s` seconds: every `step_s` from 0 (the last interval may be shorter)."""
    return np.arange(0.0, span_s - 1e-9, step_s)


def default_span_s(load: Trace, step_s: float) -> float:
    """A load trace's own span: to one usual spacing past its last row (a one-row trace: one step)."""
    return float(load.t_s[-1]) + (load.spacing_s or step_s)


def interval_loads(load: Trace, span_s: float, step_s: float, plan_for: str = "mean") -> list[float]:
    """Each decision interval's load as the SLA is planned for it: its mean or its peak (`adapt.plan_for`)."""
    return [aggregate(load, t, min(step_s, span_s - t))[PLAN_FOR.index(plan_for)]
            for t in interval_starts_s(span_s, step_s)]


PLAN_FOR = ("mean", "peak")  # adapt.plan_for: which aggregate of an interval's load the decision plans for


def simulate(policy: Policy, profiles: ProfileTable, space: dict, reference: dict, load: Trace, carbon: Trace,
             sla_s: float, max_cores: int, step_s: float, pue: float = 1.0, predictor: Predictor = Last(),
             plan_for: str = "mean", span_s: float | None = None,
             bring_ups: BringUps | None = None, switch_aware: bool = True) -> list[Interval]:
    """Every `step_s` over `span_s` (default: the load trace's own span): predict the interval's load from the
    loads observed so far (`predictor`, fed each past interval's mean or peak as `plan_for` says; the first
    interval is planned for its own load), decide for it, then serve the trace's actual load over the interval.

    Composed, not measured: energy is the requests served × the chosen options' energy per request; SLA attainment
    is the share of the interval's requests served when the choice meets the SLA at the predicted load (the load
    above the choice's capacity, moment by moment, goes unserved), 0 when even its latency misses the SLA. Carbon
    intensity is the interval's mean. When nothing fits the core budget at the predicted load, the adapter plans
    for the most the space serves (`capacity.max_load_rps`) and that choice is what the interval counts, flagged.

    `bring_ups`: what bringing up each option costs; with them every switch is charged as `adapt/switching.py` says
    and, if `switch_aware`, decided so (a switch that does not pay for itself is not made). None: switches are free
    (counted all the same)."""
    out = []
    span_s = default_span_s(load, step_s) if span_s is None else span_s
    ceiling_rps = None
    observed: list[float] = []
    current: Decision | None = None  # the configuration serving
    dwell = Dwell()  # how long the optimum has lasted
    for t in interval_starts_s(span_s, step_s):
        length_s = min(step_s, span_s - t)
        mean_rps, peak_rps = aggregate(load, t, length_s)
        planned_actual = peak_rps if plan_for == "peak" else mean_rps
        intensity = aggregate(carbon, t, length_s)[0]
        began = time.perf_counter()
        predicted = predictor.predict(observed) if observed else planned_actual
        forecast_ms = (time.perf_counter() - began) * 1e3
        observed.append(planned_actual)
        began = time.perf_counter()
        decision = decide_for(policy, profiles, space, reference, predicted, sla_s, max_cores, intensity)
        decision_ms = (time.perf_counter() - began) * 1e3
        fits = decision.choice is not None
        if not fits:  # nothing keeps up with the prediction within the cores: serve the most the space can
            ceiling_rps = max_load_rps(profiles, space, max_cores) if ceiling_rps is None else ceiling_rps
            decision = decide_at_most(policy, profiles, space, reference, ceiling_rps, sla_s, max_cores, intensity)
        lasted = dwell.update(decision.choice)
        if switch_aware and bring_ups is not None and current is not None and decision.choice is not None:
            decision = held_or_switched(policy, profiles, space, reference, predicted, sla_s, max_cores, intensity,
                                        current, decision, bring_ups, lasted * step_s)
        if decision.choice is None:
            nothing = tuple((stage, "-") for stage in space)
            out.append(Interval(t, mean_rps, predicted, intensity, nothing, 0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, True,
                                decision_ms, peak_rps, fits, forecast_ms, False, decision.nothing_within_budget))
            continue
        cost = switch_cost(current.choice if current else None, decision.choice, bring_ups)
        served = serve_interval(load, t, length_s, current, decision, cost)
        current = decision
        attainment = served.within_sla / served.arrived if served.arrived > 0 else float(decision.meets_sla)
        energy = served.energy_j
        chosen = tuple((stage, f"{c.variant} b{c.batch_size} {c.precision}/{c.runtime}")
                       for stage, c in decision.choice.stages().items())
        over = over_budget(policy, energy / length_s, intensity)
        shares = energy_range_shares(decision.choice, profiles)
        low, high = ((None, None) if shares is None else
                     tuple(cost.energy_j + (energy - cost.energy_j) * share for share in shares))
        out.append(Interval(t, mean_rps, predicted, intensity, chosen, decision.cores, energy / length_s,
                            decision.accuracy, attainment, energy, emissions_g(energy, intensity, pue),
                            decision.cores * length_s, decision.flagged or not fits or over, decision_ms, peak_rps,
                            fits, forecast_ms, over, decision.nothing_within_budget, cost.how, cost.energy_j,
                            low, high))
    return out


def held_or_switched(policy: Policy, profiles: ProfileTable, space: dict, reference: dict, load_rps: float,
                     sla_s: float, max_cores: int, intensity_g_per_kwh: float, current: Decision, decision: Decision,
                     bring_ups: BringUps, dwell_s: float) -> Decision:
    """`decision`, or the serving configuration `current` (scored at `load_rps`) where switching needs new workers
    that the gain over `dwell_s` does not pay for. A configuration that would miss the SLA, the cores or a budget at
    the load is never held."""
    cost = switch_cost(current.choice, decision.choice, bring_ups)
    if cost.how != NEW_WORKERS:
        return decision
    serving = current.choice.stages()
    mine = {stage: [o for o in options if to_choice((o,))[stage] == serving[stage]]
            for stage, options in stage_options(profiles, space, load_rps, reference).items()}
    if not all(mine.values()):  # its replica count is no longer among those offered at this load
        return decision
    held = decide(mine, sla_s, max_cores, policy.weights, intensity_g_per_kwh, policy.power_budget_w,
                  policy.carbon_budget_g_per_h, pipeline_p99_s=pipeline_p99_s(profiles, load_rps))
    if held.choice is None or held.flagged:
        return decision
    return decision if worth_switching(decision, held, cost, dwell_s, policy.weights, intensity_g_per_kwh) else held


def over_budget(policy: Policy, power_w: float, intensity_g_per_kwh: float) -> bool:
    """Whether active power `power_w` breaks the policy's power budget or, at the intensity, its carbon budget
    (the rates `decide` constrains). The decision keeps to them at the load it planned for; a load above that
    forecast, or an interval where nothing fits them, is served over them, and this says so."""
    rate_g_per_h = power_w * intensity_g_per_kwh / 1000.0
    return ((policy.power_budget_w is not None and power_w > policy.power_budget_w * (1 + 1e-9))
            or (policy.carbon_budget_g_per_h is not None and rate_g_per_h > policy.carbon_budget_g_per_h * (1 + 1e-9)))


def decide_for(policy: Policy, profiles: ProfileTable, space: dict, reference: dict, load_rps: float, sla_s: float,
               max_cores: int, intensity_g_per_kwh: float) -> Decision:
    """The policy's decision for an interval planned for `load_rps`, its budgets binding: the one the simulator
    and the live loop both take."""
    return decide(stage_options(profiles, space, load_rps, reference), sla_s, max_cores, policy.weights,
                  intensity_g_per_kwh, policy.power_budget_w, policy.carbon_budget_g_per_h,
                  pipeline_p99_s=pipeline_p99_s(profiles, load_rps))


def decide_at_most(policy: Policy, profiles: ProfileTable, space: dict, reference: dict, ceiling_rps: float,
                   sla_s: float, max_cores: int, intensity_g_per_kwh: float) -> Decision:
    """When nothing keeps up with the load within the cores: the decision for the most load the space serves
    (`capacity.max_load_rps`), at that ceiling, else (replicas rounded up past the cores) a little below it."""
    for share in (1.0, 0.99, 0.95, 0.9, 0.75, 0.5):
        decision = decide_for(policy, profiles, space, reference, ceiling_rps * share, sla_s, max_cores,
                              intensity_g_per_kwh)
        if decision.choice is not None:
            return decision
    return decision


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
        "intervals_over_capacity": float(sum(not i.fits for i in intervals)),
        "intervals_over_budget": float(sum(i.over_budget for i in intervals)),
        "intervals_nothing_within_budget": float(sum(i.nothing_within_budget for i in intervals)),
        "switches": float(sum(i.switch != NO_SWITCH for i in intervals)),
        "switch_energy_j": float(sum(i.switch_energy_j for i in intervals)),
        "forecast_ms_p50": float(np.median([i.forecast_ms for i in intervals])),
        "forecast_ms_max": float(max(i.forecast_ms for i in intervals)),
        **model_range(intervals),
    }


def model_range(intervals: list[Interval]) -> dict[str, float]:
    """The totals' power-model interval (`energy_j_low`, `_high`, `emissions_g_low`, `_high`), where every interval
    that served anything has one; an interval that served nothing adds 0 to both ends."""
    served = [i for i in intervals if i.energy_j > 0]
    if not served or any(i.energy_j_low is None for i in served):
        return {}
    out = {}
    for end in ("low", "high"):
        out[f"energy_j_{end}"] = float(sum(getattr(i, f"energy_j_{end}") for i in served))
        # emissions are the interval's energy × its intensity × PUE: the same share of them
        out[f"emissions_g_{end}"] = float(sum(i.emissions_g * getattr(i, f"energy_j_{end}") / i.energy_j
                                              for i in served))
    return out


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
