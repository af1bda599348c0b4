"""`python src/adapt.py adapt.mode=live`: the adapter in a closed loop with the real pipeline, next to the simulator.

The trace is served live, `adapt.speedup` times faster than its own clock: an interval of `adapt.step_s` trace
seconds lasts `step_s / speedup` seconds, and its requests arrive as a Poisson process at the interval's rate (in
requests per real second, so latency and throughput are those of that load; only the interval is shorter). At each
interval's start the adapter decides from the load it observed (arrivals counted in the interval before: their mean
rate, or with `adapt.plan_for=peak` the rate in its busiest quarter) and the
running pipeline switches to the decision without losing a request (`pipeline.serving`): the next configuration is
started, loaded and warmed while the current one serves, then takes the arrivals and every queued item no replica
has begun, while the current one finishes the batches it has in flight. A decision that changes batch sizes alone
is switched in place: batch sizes are the parent's queues' business, so the same workers serve it at once.
A switch goes serving → preparing → draining → serving (`adapt.live_serving`, a state machine); a decision taken
while one is under way is deferred to the next interval.
Energy is metered continuously, one meter window per interval; a switch's own window spans its preparation and
the drain. Each policy is simulated over the same trace (`adapt.simulate`), and every interval is recorded live and
as the simulator predicted it, in one MLflow run.

Energy here is active energy: the run's meter minus its idle baseline. On a machine without counters that meter is
the estimate (a power curve of this CPU applied to the sampled load): every figure is then labelled so (tag
energy_source).
"""

from __future__ import annotations

import os
import tempfile
import threading
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import NamedTuple

import numpy as np
import pandas as pd
from mlflow.entities import Metric
from mlflow.tracking import MlflowClient
from omegaconf import DictConfig
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, TextColumn, TimeElapsedColumn

from sustainable_ipa.adapt.adapt_job import (adapt_params, over_budget_line, policies, predictor, replay_traces,
                                             switch_costs)
from sustainable_ipa.adapt.capacity import max_load_rps
from sustainable_ipa.adapt.comparison import against_ipa
from sustainable_ipa.adapt.live_plots import live_timeline
from sustainable_ipa.adapt.live_serving import LiveServing, SwitchTimes
from sustainable_ipa.adapt.optimizer import Decision
from sustainable_ipa.adapt.simulate import (Policy, decide_at_most, decide_for, held_or_switched, interval_loads,
                                            interval_starts_s, over_budget, precompute_options, simulate)
from sustainable_ipa.adapt.switching import IN_PLACE, NEW_WORKERS, Dwell, SwitchCost, bring_up
from sustainable_ipa.adapt.traces import aggregate
from sustainable_ipa.data import load_dataset
from sustainable_ipa.energy.carbon import emissions_g
from sustainable_ipa.energy.session import EnergySession
from sustainable_ipa.errors import UserError
from sustainable_ipa.families import stage_families, worker_modules
from sustainable_ipa.metrics.accuracy import option_accuracies
from sustainable_ipa.metrics.energy import active_energy_j, active_energy_range_j
from sustainable_ipa.metrics.latency import latency_percentiles_s, sla_attainment
from sustainable_ipa.pipeline import replicas
from sustainable_ipa.pipeline.load import poisson_times_s
from sustainable_ipa.pipeline.runner import RequestRecord
from sustainable_ipa.pipeline.serving import ServingPipeline
from sustainable_ipa.pipeline.stage import StageSettings, StageSpec
from sustainable_ipa.progress import progress_bar
from sustainable_ipa.search.profiling_job import build_stage_model, profile_job
from sustainable_ipa.search.space import NUMERICS, PipelineChoice, StageChoice, configured_space
from sustainable_ipa.search.workload import pipeline_workload
from sustainable_ipa.tracking import local_copy
from sustainable_ipa.tracking.links import print_where_to_look
from sustainable_ipa.tracking.runs import BATCH_LIMIT, common_tags, log, tracked_run
from sustainable_ipa.tracking.signals import signals_held
from sustainable_ipa.tracking.store import open_store

# The traces' API, in one place: a decision interval's load and the intervals' starts --------------------------------
def interval_load_rps(load, t_s: float, length_s: float) -> float:
    """The trace's mean load over the interval [t_s, t_s + length_s) (`traces.aggregate`): the live arrivals' rate."""
    return aggregate(load, t_s, length_s)[0]


def interval_starts(span_s: float, step_s: float) -> np.ndarray:
    return interval_starts_s(span_s, step_s)


def in_trace_time(bring_ups: dict | None, speedup: float) -> dict | None:
    """Bring-ups (real seconds and joules) as the simulator of the compressed trace charges them: a preparation lasts
    `speedup` times longer in trace seconds (the same share of its interval), and its joules are `speedup` times
    more, which the comparison's scaling of simulated energy to the live interval's length gives back."""
    if bring_ups is None:
        return None
    return {key: replace(up, prepare_s=up.prepare_s * speedup, energy_j=up.energy_j * speedup)
            for key, up in bring_ups.items()}


def label(choice: PipelineChoice | None) -> str:
    """`asr s2t-small b1 t1x1 fp32/torch | qa roberta-base-squad2 b4 t1x1 fp32/torch` (threads x replicas)"""
    if choice is None:
        return "-"
    return " | ".join(f"{stage} {c.variant} b{c.batch_size} t{c.threads}x{c.replicas} {c.precision}/{c.runtime}"
                      for stage, c in choice.stages().items())


def simulated_label(stages: tuple[tuple[str, str], ...]) -> str:
    """An interval's stages as the simulator records them, `asr s2t-small b1 fp32/torch | qa …`."""
    return " | ".join(f"{stage} {value}" for stage, value in stages)


def same_label(choice: PipelineChoice | None) -> str:
    """A live decision in the simulator's words (it records no threads or replicas)."""
    return "-" if choice is None else simulated_label(
        tuple((stage, f"{c.variant} b{c.batch_size} {c.precision}/{c.runtime}")
              for stage, c in choice.stages().items()))


PEAK_PARTS = 4  # live, an interval's peak is its busiest quarter: a trace second lasts milliseconds at speedup


def observed_rps(arrivals_s: list[float], start_s: float, length_s: float, plan_for: str) -> float:
    """An interval's observed load as `adapt.plan_for` plans for it: its arrivals ÷ its length (mean), or the rate in
    the busiest of its PEAK_PARTS equal parts (peak)."""
    if plan_for == "mean":
        return len(arrivals_s) / length_s
    parts = np.clip(((np.asarray(arrivals_s) - start_s) * PEAK_PARTS / length_s).astype(int), 0, PEAK_PARTS - 1)
    return float(np.bincount(parts, minlength=PEAK_PARTS).max()) * PEAK_PARTS / length_s


@dataclass(frozen=True)
class Switch:
    """One change of configuration while serving."""

    interval: int
    prepare_s: float  # the next configuration started, loaded and warmed while the current one served
    degraded_s: float  # handover → the previous configuration's batches in flight done (both share the cores); the
    # items it held that no replica had begun moved to the next one at the handover
    energy_j: float  # active energy over preparation and drain (machine-wide: the serving meanwhile included)
    requests_during: int  # requests that arrived while it was under way
    latency_p99_during_s: float  # their p99 latency
    how: str = NEW_WORKERS  # new workers | in place (only batch sizes changed: the same workers, nothing to prepare)
    modelled_prepare_s: float = float("nan")  # new workers, adapt.switch_cost=measured: what the simulator charges
    modelled_energy_j: float = float("nan")


@dataclass
class LiveRun:
    policy: str
    rows: list[dict]
    switches: list[Switch]
    submitted: int
    finished: int
    decision_ms: list[float] = field(default_factory=list)
    switches_deferred: int = 0  # decisions to switch while the switch before was under way (taken again later)

    @property
    def lost(self) -> int:
        return self.submitted - self.finished


class Decided(NamedTuple):
    """An interval's decision, the milliseconds it took (and its thread's CPU milliseconds), the load it planned for."""

    decision: Decision
    ms: float
    cpu_ms: float
    predicted_rps: float


@dataclass
class Adapting:
    """What the loop's decisions carry from one interval to the next."""

    decisions: list[Decided]  # one per interval so far
    held: Decision  # the decision the pipeline serves or prepares
    dwell: Dwell  # how long optima last
    history: list[float] = field(default_factory=list)  # the load observed in each interval ended

    @classmethod
    def first(cls, decided: Decided) -> "Adapting":
        dwell = Dwell()
        dwell.update(decided.decision.choice)
        return cls([decided], decided.decision, dwell)


@dataclass(frozen=True)
class Clock:
    """The live intervals' clock: interval k begins `k * step_s` after `t0` (time.perf_counter)."""

    t0: float
    step_s: float

    def start_s(self, k: int) -> float:
        return self.t0 + k * self.step_s

    def wait_for(self, k: int) -> None:
        """Sleep until interval k begins (the end of the run at k = intervals)."""
        wait = self.start_s(k) - time.perf_counter()
        if wait > 0:
            time.sleep(wait)


class Finished:
    """Requests done, counted from the serving pipelines' threads."""

    def __init__(self):
        self._count, self._lock = 0, threading.Lock()

    def add(self, _request: RequestRecord) -> None:
        with self._lock:
            self._count += 1

    @property
    def count(self) -> int:
        with self._lock:
            return self._count


def feed(schedule: list[tuple[float, int]], items: list, live: LiveServing, arrived: list[list[RequestRecord]],
         clock: Clock) -> None:
    """The feeder's thread: request i, at its offset from the clock's start, to whoever takes the arrivals, recorded
    under its interval; until the schedule ends or the loop stops."""
    for i, (offset, k) in enumerate(schedule):
        delay = clock.t0 + offset - time.perf_counter()
        if delay > 0 and live.stopped.wait(delay):
            return
        live.submit(RequestRecord(i, items[i % len(items)]), arrived[k])


class LiveLoop:
    """What every policy's live run shares: the profiles, the traces, the models (built once), the cores."""

    def __init__(self, cfg: DictConfig, profiles, stage_space: dict, replay, predictor, console: Console):
        a = cfg.adapt
        self.cfg, self.profiles, self.stage_space, self.console = cfg, profiles, stage_space, console
        self.load, self.carbon, self.predictor, self.plan_for = replay.load, replay.carbon, predictor, a.plan_for
        self.reference = option_accuracies(cfg.pipeline.variants)
        self.step_s = float(a.step_s)
        self.live_step_s = self.step_s / float(a.speedup)
        available = len(interval_starts(replay.span_s, self.step_s))
        self.intervals = available if a.live_intervals is None else int(a.live_intervals)
        if self.intervals > available:
            raise UserError(f"adapt.live_intervals={self.intervals} but the replayed span of the load trace "
                            f"'{self.load.name}' holds {available} intervals of {self.step_s:g} s",
                            f"set adapt.live_intervals to at most {available}, or lengthen adapt.duration_s")
        self.span_s = self.intervals * self.step_s  # whole intervals: the live ones all last step_s / speedup
        own = sorted(os.sched_getaffinity(0))
        # a pipeline with more stages than this process has cores runs one thread per stage on shared cores
        self.max_cores = max(min(int(a.max_cores), len(own)), len(cfg.pipeline.stages))
        self.cores = own[:self.max_cores]
        self.sla_s = float(cfg.trial.sla_s)
        self.pue = float(cfg.hardware.pue)
        # served as profiled: random-weight models handing on the items' references; stages on OpenVINO calibrated
        # on their own inputs
        self.workload = pipeline_workload(stage_families(cfg.pipeline), load_dataset(cfg.dataset))
        self.items = self.workload.inputs[cfg.pipeline.stages[0]]
        self._models: dict[tuple, object] = {}
        self.bring_ups = None  # adapt.switch_cost=measured: each option's bring-up on self.cores (live_job sets it)

    def rate_rps(self, k: int) -> float:
        return interval_load_rps(self.load, k * self.step_s, self.step_s)

    def intensity(self, k: int) -> float:
        return interval_load_rps(self.carbon, k * self.step_s, self.step_s)  # its mean, as the simulator takes it

    def decide(self, policy: Policy, predicted_rps: float, k: int, serving=None, dwell: Dwell | None = None):
        """The adapter's decision for the interval, the milliseconds it took (options and program, as timed in the
        simulator) and the CPU milliseconds of this thread meanwhile (the wall time less the waits for a core the
        serving pipeline holds). With measured switch costs, `serving` (the decision the pipeline serves or
        prepares) is held where the switch does not pay for itself over the optimum's `dwell`, as simulated."""
        began, cpu = time.perf_counter(), time.thread_time()
        decision = decide_for(policy, self.profiles, self.stage_space, self.reference, predicted_rps, self.sla_s,
                              self.max_cores, self.intensity(k))
        decision_ms, cpu_ms = (time.perf_counter() - began) * 1e3, (time.thread_time() - cpu) * 1e3
        if decision.choice is None:  # as simulated: nothing fits the cores, so plan for the most the space serves
            decision = self._when_nothing_fits(policy, k)
        lasted = dwell.update(decision.choice) if dwell else 1
        if self.bring_ups is not None and serving is not None and decision.choice is not None:
            decision = held_or_switched(policy, self.profiles, self.stage_space, self.reference, predicted_rps,
                                        self.sla_s, self.max_cores, self.intensity(k), serving, decision,
                                        self.bring_ups, lasted * self.live_step_s)
        return decision, decision_ms, cpu_ms

    def _when_nothing_fits(self, policy: Policy, k: int) -> Decision:
        """The simulator's answer when nothing keeps up with the prediction within the cores: plan for the most the
        space serves (`capacity.max_load_rps`)."""
        ceiling = max_load_rps(self.profiles, self.stage_space, self.max_cores)
        return decide_at_most(policy, self.profiles, self.stage_space, self.reference, ceiling, self.sla_s,
                              self.max_cores, self.intensity(k))

    def precompute(self) -> float:
        """Every stage option's latency replayed, before the first decision, at each load the loop can observe (an
        interval's arrival count ÷ its length: multiples of 1 / length, up to twice the trace's busiest interval and
        more) and at the trace's interval loads, as IPA precomputes its latency model. Returns the seconds it
        took."""
        rates = [self.rate_rps(k) for k in range(self.intervals)]
        counts = np.arange(0, int(max(rates) * self.live_step_s * 2) + 11)
        return precompute_options(self.profiles, self.stage_space, self.reference,
                                  [*(counts / self.live_step_s), *rates])

    def simulated(self, policy: Policy) -> list:
        """The simulator's intervals for the same policy, traces, span, predictor, cores and switch costs."""
        return simulate(policy, self.profiles, self.stage_space, self.reference, self.load, self.carbon, self.sla_s,
                        self.max_cores, self.step_s, self.pue, self.predictor, self.plan_for, self.span_s,
                        in_trace_time(self.bring_ups, self.step_s / self.live_step_s))

    def _model(self, stage: str, c):
        key = (stage, c.variant, c.precision, c.runtime)
        if key not in self._models:
            self._models[key] = build_stage_model(self.cfg, self.workload)(stage, c.variant, c.precision, c.runtime)
        return self._models[key]

    def build_models(self) -> float:
        """Every model the space offers, built now (random weights, as profiled), not while the loop serves.
        Returns the seconds it took."""
        began = time.perf_counter()
        for stage, o in self.stage_space.items():
            for variant in o["variants"]:
                for precision, runtime in o.get(NUMERICS, (("fp32", "torch"),)):
                    self._model(stage, StageChoice(variant, 1, 1, 1, precision, runtime))
        return time.perf_counter() - began

    def serving(self, choice: PipelineChoice, on_done) -> ServingPipeline:
        """`choice` started, loaded and warmed, ready to take requests."""
        specs = [StageSpec(stage, self._model(stage, c), StageSettings(c.batch_size, c.threads, c.replicas))
                 for stage, c in choice.stages().items()]
        pipeline = ServingPipeline(specs, self.cores, on_done)
        try:
            pipeline.start(self.items)
        except BaseException:
            pipeline.close()
            raise
        return pipeline

    def run(self, policy: Policy, energy: EnergySession, seed: int, advance=lambda: None) -> LiveRun:
        """Serve the trace live under `policy`; every interval measured and set beside the simulator's.

        Three threads: this one keeps the intervals' clock and decides, the feeder submits the arrivals, a switch
        prepares the next configuration and drains the last (`LiveServing` holds the states a switch goes through)."""
        schedule = self._schedule(seed)
        arrived: list[list[RequestRecord]] = [[] for _ in range(self.intervals)]
        finished = Finished()
        first = self._first_decision(policy)
        live = LiveServing(first.decision.choice, lambda choice: self.serving(choice, finished.add), energy.meter,
                           energy.idle_power_w, policy.name)
        clock = Clock(time.perf_counter(), self.live_step_s)
        feeder = threading.Thread(target=feed, args=(schedule, self.items, live, arrived, clock), name="live-feeder",
                                  daemon=True)
        adapting = Adapting.first(first)
        try:
            windows = self._serve(policy, adapting, live, arrived, clock, energy.meter, feeder, advance)
        finally:
            live.close()
        live.raise_pipeline_errors()
        switches = self._switches(live.timeline, arrived, adapting.decisions)
        rows = self._rows(policy, arrived, windows, energy, adapting.decisions, switches, clock)
        return LiveRun(policy.name, rows, sorted(switches, key=lambda s: s.interval), sum(len(a) for a in arrived),
                       finished.count, [d.ms for d in adapting.decisions], live.deferred)

    def _schedule(self, seed: int) -> list[tuple[float, int]]:
        """Every request's arrival (seconds from the start, its interval): Poisson at each interval's rate."""
        rng, dur = np.random.default_rng(seed), self.live_step_s
        return [(k * dur + t, k) for k in range(self.intervals) for t in poisson_times_s(self.rate_rps(k), dur, rng)]

    def _first_decision(self, policy: Policy) -> Decided:
        """The first interval's decision, for its load read from the trace (nothing observed yet)."""
        first_rps = interval_loads(self.load, self.step_s, self.step_s, self.plan_for)[0]
        decision, decision_ms, cpu_ms = self.decide(policy, first_rps, 0)
        if decision.choice is None:
            raise UserError(f"no configuration of the space fits in {self.max_cores} cores",
                            "offer smaller threads or replicas in search.space, or give the process more cores")
        return Decided(decision, decision_ms, cpu_ms, first_rps)

    def _serve(self, policy: Policy, adapting: Adapting, live: LiveServing, arrived: list[list[RequestRecord]],
               clock: Clock, meter, feeder: threading.Thread, advance) -> list:
        """The intervals in this thread: at each one's start its meter window opened and the adapter's decision acted
        on; at the end, the last configuration drained. Returns the intervals' windows (the last requests' tail in
        the last)."""
        windows = []
        meter.begin_window(f"{policy.name}-0")
        feeder.start()
        for k in range(self.intervals):
            if k > 0:
                clock.wait_for(k)
                windows.append(meter.end_window(f"{policy.name}-{k - 1}"))
                meter.begin_window(f"{policy.name}-{k}")
                live.raise_error()
                self._adapt(policy, k, adapting, live, arrived[k - 1], clock)
            advance()
        clock.wait_for(self.intervals)
        feeder.join()
        live.finish()
        windows.append(meter.end_window(f"{policy.name}-{self.intervals - 1}"))
        return windows

    def _adapt(self, policy: Policy, k: int, adapting: Adapting, live: LiveServing, last: list[RequestRecord],
               clock: Clock) -> None:
        """Interval k's decision, from the load observed in the interval before (`last`'s arrivals), acted on."""
        adapting.history.append(observed_rps([r.arrival_s for r in last], clock.start_s(k - 1), clock.step_s,
                                             self.plan_for))
        predicted = self.predictor.predict(adapting.history)
        decision, decision_ms, cpu_ms = self.decide(policy, predicted, k, adapting.held, adapting.dwell)
        adapting.decisions.append(Decided(decision, decision_ms, cpu_ms, predicted))
        if live.take(decision.choice, k) in (IN_PLACE, NEW_WORKERS):
            adapting.held = decision

    def _switches(self, timeline: list[SwitchTimes], arrived: list[list[RequestRecord]],
                  decisions: list[Decided]) -> list[Switch]:
        """Each switch as measured (every request is done by now), beside what the bring-ups model for it."""
        switches = []
        for t in timeline:
            during = [r.latency_s for rs in arrived for r in rs if t.began_s <= r.arrival_s <= t.drained_s]
            modelled = bring_up(decisions[t.interval].decision.choice, self.bring_ups) \
                if self.bring_ups and t.how == NEW_WORKERS else SwitchCost(t.how, float("nan"), float("nan"))
            switches.append(Switch(t.interval, t.prepared_s - t.began_s, t.drained_s - t.handover_s, t.energy_j,
                                   len(during), float(np.percentile(during, 99)) if during else float("nan"), t.how,
                                   modelled.prepare_s, modelled.energy_j))
        return switches

    def _rows(self, policy: Policy, arrived: list[list[RequestRecord]], windows: list, energy: EnergySession,
              decisions: list[Decided], switches: list[Switch], clock: Clock) -> list[dict]:
        """Every interval live, beside the simulator's prediction for it."""
        predicted_intervals = self.simulated(policy)
        rows = []
        for k in range(self.intervals):
            row = self._row(policy, k, arrived[k], windows[k], energy, decisions[k], predicted_intervals[k],
                            any(s.interval == k for s in switches))
            rows.append({**row, "observed_peak_rps": observed_rps([r.arrival_s for r in arrived[k]], clock.start_s(k),
                                                                  clock.step_s, "peak")})
        return rows

    def _row(self, policy: Policy, k: int, requests: list[RequestRecord], m, energy: EnergySession, decided,
             sim, switched: bool) -> dict:
        decision, decision_ms, decision_cpu_ms, predicted = decided
        latencies = np.array([r.latency_s for r in requests])
        live_j = active_energy_j(m.total_j, energy.idle_power_w, m.duration_s)
        live_low_j, live_high_j = active_energy_range_j(m, energy.idle_power_w)  # NaN: measured by a counter
        scale = self.live_step_s / self.step_s  # the simulator's interval lasts step_s; the live one step_s/speedup
        sim_j = sim.energy_j * scale
        intensity = self.intensity(k)
        return {
            "policy": policy.name, "interval": k, "t_s": k * self.step_s, "load_rps": self.rate_rps(k),
            "observed_rps": len(requests) / self.live_step_s, "predicted_rps": predicted,
            "carbon_intensity_g_per_kwh": intensity, "configuration": label(decision.choice),
            "decision": same_label(decision.choice), "accuracy": decision.accuracy, "sim_accuracy": sim.accuracy,
            "switched": switched, "over_budget": over_budget(policy, live_j / m.duration_s, intensity),
            "nothing_within_budget": decision.nothing_within_budget, "sim_over_budget": sim.over_budget,
            "decision_ms": decision_ms, "decision_cpu_ms": decision_cpu_ms,
            "requests": len(requests),
            **served(latencies, self.sla_s),
            "energy_j": live_j, "energy_j_low": live_low_j, "energy_j_high": live_high_j, "window_s": m.duration_s,
            "emissions_g": emissions_g(live_j, intensity, self.pue),
            "sim_decision": simulated_label(sim.stages),
            "sim_sla_attainment": sim.sla_attainment, "sim_energy_j": sim_j,
            "sim_emissions_g": emissions_g(sim_j, intensity, self.pue),
            **per_request(live_j, len(requests), sim_j, self.rate_rps(k) * self.live_step_s),
        }


def per_request(live_j: float, requests: int, sim_j: float, sim_requests: float) -> dict[str, float]:
    """Active energy per request live and as simulated: free of the Poisson noise in how many requests an interval
    brings (a few per interval at compressed time), which the interval's energy carries in full. The simulated
    figure divides by the trace's requests (above the choice's capacity it served fewer: then it is low)."""
    return {"energy_j_per_request": live_j / requests if requests else float("nan"),
            "sim_energy_j_per_request": sim_j / sim_requests if sim_requests > 0 else float("nan")}


def relative_error(live: pd.Series, predicted: pd.Series) -> pd.Series:
    """|live − predicted| ÷ predicted, where the prediction is above 0 and the live figure exists."""
    keep = (predicted > 0) & live.notna()
    return ((live[keep] - predicted[keep]).abs() / predicted[keep]).astype(float)


def summary(run: LiveRun) -> dict[str, float]:
    frame = pd.DataFrame(run.rows)
    weights = frame["requests"] / max(frame["requests"].sum(), 1)
    degraded = [s.degraded_s for s in run.switches if s.how == NEW_WORKERS]
    return {
        "accuracy_mean": float((frame["accuracy"] * weights).sum()),  # the decisions' (catalogue), per request
        "sim_accuracy_mean": float(np.average(frame["sim_accuracy"], weights=frame["load_rps"] + 1e-12)),
        "sla_attainment": float((frame["sla_attainment"].fillna(0) * weights).sum()),
        "sim_sla_attainment": float(np.average(frame["sim_sla_attainment"], weights=frame["load_rps"] + 1e-12)),
        "energy_j": float(frame["energy_j"].sum()), "sim_energy_j": float(frame["sim_energy_j"].sum()),
        # the estimate's power-model interval of the live energy (NaN, and not logged, where a counter measured it)
        "energy_j_low": float(frame["energy_j_low"].sum(skipna=False)),
        "energy_j_high": float(frame["energy_j_high"].sum(skipna=False)),
        "emissions_g": float(frame["emissions_g"].sum()), "sim_emissions_g": float(frame["sim_emissions_g"].sum()),
        "sla_median_rel_error": float(relative_error(frame["sla_attainment"], frame["sim_sla_attainment"]).median()),
        "energy_median_rel_error": float(relative_error(frame["energy_j"], frame["sim_energy_j"]).median()),
        "energy_per_request_median_rel_error": float(relative_error(frame["energy_j_per_request"],
                                                                    frame["sim_energy_j_per_request"]).median()),
        "same_decision_share": float((frame["decision"] == frame["sim_decision"]).mean()),
        "requests": float(run.submitted), "requests_lost": float(run.lost), "switches": float(len(run.switches)),
        "switches_deferred": float(run.switches_deferred),
        "intervals_over_budget": float(frame["over_budget"].sum()),
        "intervals_nothing_within_budget": float(frame["nothing_within_budget"].sum()),
        "sim_intervals_over_budget": float(frame["sim_over_budget"].sum()),
        "switches_in_place": float(sum(s.how == IN_PLACE for s in run.switches)),
        "switch_degraded_s_max": max(degraded) if degraded else 0.0,
        "switch_degraded_s_median": float(np.median(degraded)) if degraded else 0.0,
        "switch_prepare_s_median": float(np.median(prepared)) if (prepared := [
            s.prepare_s for s in run.switches if s.how == NEW_WORKERS]) else 0.0,
        "switch_energy_j": float(sum(s.energy_j for s in run.switches)),
        # what the bring-ups measured beforehand model for the same switches (NaN without adapt.switch_cost=measured)
        "switch_energy_j_modelled": float(sum(s.modelled_energy_j for s in run.switches if s.how == NEW_WORKERS)),
        "switch_prepare_s_modelled_median": float(np.median(modelled)) if (modelled := [
            s.modelled_prepare_s for s in run.switches if s.how == NEW_WORKERS]) else 0.0,
        "decision_ms_p50": float(np.median(run.decision_ms)), "decision_ms_max": float(max(run.decision_ms)),
    }


def served(latencies_s: np.ndarray, sla_s: float) -> dict[str, float]:
    """An interval's latency p50/p99 and SLA attainment, as metrics/latency.py defines them (NaN with no request)."""
    if not len(latencies_s):
        return {"latency_p50_s": float("nan"), "latency_p99_s": float("nan"), "sla_attainment": float("nan")}
    percentiles = latency_percentiles_s(latencies_s)
    return {"latency_p50_s": percentiles["latency_p50_s"], "latency_p99_s": percentiles["latency_p99_s"],
            "sla_attainment": sla_attainment(latencies_s, sla_s)}


INTERVAL_METRICS = ("sla_attainment", "sim_sla_attainment", "energy_j", "sim_energy_j", "energy_j_per_request",
                    "sim_energy_j_per_request", "emissions_g", "sim_emissions_g", "latency_p50_s", "latency_p99_s",
                    "observed_rps", "observed_peak_rps", "load_rps", "decision_ms", "decision_cpu_ms", "switched",
                    "over_budget")


def log_intervals(client: MlflowClient, run_id: str, run: LiveRun) -> None:
    """Per interval (MLflow step = interval), live and as simulated, under the policy's name."""
    now_ms = int(time.time() * 1000)
    metrics = [Metric(f"{run.policy}_interval_{name}", float(row[name]), now_ms, int(row["interval"]))
               for row in run.rows for name in INTERVAL_METRICS if np.isfinite(float(row[name]))]
    local_copy.logged(run_id, metrics, [], [])  # kept, should the store stop answering before the run ends
    with signals_held():
        for i in range(0, len(metrics), BATCH_LIMIT):
            client.log_batch(run_id, metrics=metrics[i:i + BATCH_LIMIT])


def live_job(cfg: DictConfig, console: Console | None = None, seed: int | None = None) -> pd.DataFrame:
    """Every policy of `adapt.live_policies` served live on the same trace, one MLflow run; returns per policy its
    live and simulated totals (`summary`), and the intervals as `.attrs["intervals"]`."""
    console = console or Console(stderr=True)
    a = cfg.adapt
    compared = [p for p in policies(a) if p.name in list(a.live_policies)]
    replay = replay_traces(cfg)
    for line in replay.reports():
        console.print(line)
    loop = ready_loop(cfg, replay, console)
    say_what_is_served(cfg, loop, len(compared), console)
    with console.status("live: the options' latencies at every load the loop can observe"):
        precompute_s = loop.precompute()
    with console.status("live: building every model of the space"):
        models_build_s = loop.build_models()
    seed = int(cfg.trial.seed) if seed is None else seed
    experiment_id = open_store(cfg.tracking.uri, cfg.tracking.experiment, cfg.tracking.artifact_root)
    client = MlflowClient(tracking_uri=cfg.tracking.uri)
    with EnergySession(cfg.energy, cfg.hardware, lambda line: console.print(f"[yellow]warning[/]: {line}")) as energy:
        if not energy.meter.concurrent_windows:  # a switch's window opens inside its interval's
            raise UserError(f"the live loop measures each switch inside its interval, and the {energy.source_tag} "
                            "meter measures one window at a time", "pass energy.meter=rapl or energy.meter=estimate")
        with tracked_run(client, experiment_id, f"adapt-live-{replay.load.name}-{replay.carbon.name}",
                         tags=run_tags(energy, replay, loop.profiles)) as run_id:
            log(client, run_id, tags=replay.tags(),
                params={**adapt_params(a), "live.seed": seed, "live.cores": loop.max_cores},
                metrics={"options_precompute_s": precompute_s, "models_build_s": models_build_s})
            runs = serve_policies(loop, compared, energy, seed, client, run_id, console)
            table = log_comparison(client, run_id, runs, cfg, loop.intervals, console, energy.source_tag)
    table.attrs["run_id"] = run_id
    console.print(table[[c for c in SHOWN if c in table.columns]].T.to_string(float_format=lambda v: f"{v:.4g}"))
    print_where_to_look(console, cfg.tracking.uri, cfg.tracking.experiment, experiment_id, run_id)
    return table


def ready_loop(cfg: DictConfig, replay, console: Console) -> LiveLoop:
    """The loop over the space as profiled (the profiles the cache lacks measured first), with its switch costs."""
    replicas.prestart(worker_modules(stage_families(cfg.pipeline)))
    profiles = profile_job(cfg, console, configured_space(cfg, int(cfg.adapt.max_cores)))
    space = configured_space(cfg, int(cfg.adapt.max_cores))  # as profiling left it (profiling.budget_s)
    loop = LiveLoop(cfg, profiles, space.profile_grid(), replay, predictor(cfg), console)
    loop.bring_ups = switch_costs(cfg, loop.stage_space, loop.cores, console)
    return loop


def say_what_is_served(cfg: DictConfig, loop: LiveLoop, policies_compared: int, console: Console) -> None:
    """What the live run plans for, on how many cores, for how long."""
    a = cfg.adapt
    if a.plan_for == "peak":
        console.print(f"live: adapt.plan_for=peak plans for each interval's busiest {PEAK_PARTS}th of its arrivals "
                      f"(an interval lasts {loop.live_step_s:.3g} s; a trace second {1e3 / float(a.speedup):.3g} ms, "
                      "too short to count arrivals in)")
    if loop.max_cores < int(a.max_cores):
        console.print(f"live: the adapter allocates at most {loop.max_cores} cores (this process may use "
                      f"{len(loop.cores)}; adapt.max_cores={a.max_cores}), and so does the simulation beside it")
    if loop.max_cores > len(loop.cores):
        console.print(f"live: pipeline '{cfg.pipeline.name}' has {loop.max_cores} stages and this process may use "
                      f"{len(loop.cores)} cores: one thread per stage, its stage workers sharing cores")
    console.print(f"live: {loop.intervals} intervals of {loop.step_s:g} trace seconds, {loop.live_step_s:.3g} s each "
                  f"at speedup {a.speedup:g} ({loop.intervals * loop.live_step_s * policies_compared:.0f} s of "
                  "serving)")


def run_tags(energy: EnergySession, replay, profiles) -> dict[str, str]:
    return {**common_tags("adapt-live", "random"), **energy.tags(), "adapt_mode": "live",
            "load_trace": replay.load.name, "carbon_trace": replay.carbon.name,
            "profiles_fingerprint": profiles.fingerprint or "unknown",
            "energy_kind": "active (meter - idle baseline)" + (
                ", estimate: a power model of the load" if energy.meter.source.value == "estimate" else ""),
            "sim_kind": "composed prediction (profiles, adapt.simulate)"}


def serve_policies(loop: LiveLoop, compared: list[Policy], energy: EnergySession, seed: int, client: MlflowClient,
                   run_id: str, console: Console) -> list[LiveRun]:
    """Each policy served live in turn, its intervals logged as it ends."""
    runs = []
    with progress_bar(console, TextColumn("live {task.description}"), BarColumn(), MofNCompleteColumn(),
                      TextColumn("intervals"), TimeElapsedColumn()) as progress:
        for policy in compared:
            task = progress.add_task(policy.name, total=loop.intervals)
            run = loop.run(policy, energy, seed, lambda task=task: progress.advance(task))
            runs.append(run)
            log_intervals(client, run_id, run)
    return runs


def log_comparison(client: MlflowClient, run_id: str, runs: list[LiveRun], cfg: DictConfig, intervals_per_run: int,
                   console: Console, energy_source: str) -> pd.DataFrame:
    """The policies' totals live and simulated (against IPA's where it ran), logged with the intervals, the switches
    and the timeline; the intervals and switches also as the table's `.attrs`."""
    table = pd.DataFrame({run.policy: summary(run) for run in runs}).T
    over = over_budget_line(cfg.adapt, table, intervals_per_run)
    if over:
        console.print(f"live: {over}")
    if "ipa" in table.index:  # as the simulation compares them
        for prefix in ("", "sim_"):
            against_ipa(table, prefix)
    intervals = pd.DataFrame([row for run in runs for row in run.rows])
    switches = pd.DataFrame([{"policy": run.policy, **s.__dict__} for run in runs for s in run.switches])
    log(client, run_id, metrics={f"{p}_{m}": v for p, row in table.iterrows() for m, v in row.items()
                                 if np.isfinite(v)})
    client.log_text(run_id, table.to_csv(), "live_comparison.csv")
    client.log_text(run_id, intervals.to_csv(index=False), "live_intervals.csv")
    client.log_text(run_id, switches.to_csv(index=False), "live_switches.csv")
    with tempfile.TemporaryDirectory() as folder:
        client.log_artifact(run_id, str(live_timeline(intervals, Path(folder) / "live_timeline.png", energy_source)))
    table.attrs["intervals"] = intervals
    table.attrs["switches"] = switches
    return table


SHOWN = ["sla_attainment", "sim_sla_attainment", "sla_median_rel_error", "energy_j", "sim_energy_j",
         "energy_median_rel_error", "energy_saved_fraction_vs_ipa", "sim_energy_saved_fraction_vs_ipa", "requests_lost",
         "switches", "switch_degraded_s_max", "decision_ms_p50"]
