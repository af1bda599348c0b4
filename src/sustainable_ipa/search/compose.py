"""IPA's trick: a pipeline configuration's metrics composed from its stages' profiles, without running it.

One latency model serves the study, the adapter, the validation bench and the report: `latency_s`, the runner's
batching rules replayed end to end (`replay`) with each batch's latency drawn from its profile's timed batches.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np

from sustainable_ipa.errors import UserError
from sustainable_ipa.metrics.accuracy import option_accuracy_pct, pipeline_accuracy
from sustainable_ipa.metrics.cost import cost_usd_per_1k
from sustainable_ipa.metrics.latency import sla_violation_s
from sustainable_ipa.search import replay
from sustainable_ipa.search.profiles import ProfileTable, StageProfile
from sustainable_ipa.search.space import PipelineChoice


def predict(choice: PipelineChoice, profiles: ProfileTable, load_rps: float, sla_s: float,
            reference_accuracy: dict[str, dict], price_usd_per_core_hour: float) -> dict[str, float]:
    """Predicted metrics of `choice` under Poisson arrivals of `load_rps` requests per second.

    Per stage: requests per second = replicas × batch ÷ batch latency (p50) ÷ items per request. Latency p50 and
    p99: percentiles of `latency_s`'s end-to-end replay. A pipeline that cannot keep up shows it as latency that
    grows with the queue (and `load_shortfall_rps` says by how much).
    Energy per request = Σ stages idle-subtracted energy per item × items per request; replicas change how
    fast items are served, not how much energy each item takes. Accuracy: PAS of each stage's accuracy in its
    precision (`reference_accuracy`: `option_accuracies`, the fp32 reference plus the published change).
    """
    stages = [(stage, c, profiles.of(stage, c)) for stage, c in choice.stages().items()]
    throughput_rps = min(stage_capacity_rps(p, c.replicas, profiles.mean_items(stage)) for stage, c, p in stages)
    latency_p50_s, latency_p99_s = latency_s(choice, profiles, load_rps)
    return {**predicted_energy_range(stages, profiles), **{
        "accuracy_reference": pipeline_accuracy([option_accuracy_pct(reference_accuracy, stage, c.variant, c.precision)
                                                 for stage, c, _ in stages]),
        "latency_p50_s": latency_p50_s,
        "latency_p99_s": latency_p99_s,
        "throughput_rps": throughput_rps,
        "energy_j_per_request": energy_per_request_j(stages, profiles),
        "cost_cores": float(choice.cores),
        # served at the offered load when the pipeline keeps up, else at its own throughput
        "cost_usd_per_1k": cost_usd_per_1k(price_usd_per_core_hour, choice.cores, 1.0 / min(throughput_rps, load_rps), 1),
        "sla_violation_s": sla_violation_s(latency_p99_s, sla_s),
        "load_shortfall_rps": max(load_rps - throughput_rps, 0.0),
    }}


def energy_range_shares(choice: PipelineChoice, profiles: ProfileTable) -> tuple[float, float] | None:
    """The ends of the power model's interval of `choice`'s energy per request, as shares of its central figure
    (e.g. (0.8, 1.5)); None where a stage profile has no interval (a measurement) or the energy is 0."""
    stages = [(stage, c, profiles.of(stage, c)) for stage, c in choice.stages().items()]
    ends = predicted_energy_range(stages, profiles)
    central = energy_per_request_j(stages, profiles)
    if not ends or central <= 0:
        return None
    return ends["energy_j_per_request_low"] / central, ends["energy_j_per_request_high"] / central


def energy_per_request_j(stages: list, profiles: ProfileTable) -> float:
    """Σ stages idle-subtracted energy per item × items per request (`stages`: (stage, choice, profile))."""
    return sum(p.energy_j_per_item * profiles.mean_items(stage) for stage, _, p in stages)


def predicted_energy_range(stages: list, profiles: ProfileTable) -> dict[str, float]:
    """`energy_j_per_request_low` and `_high`: the energy per request under the least and the most of each stage
    profile's power-model interval, where every stage's profile has one (profiles of the estimate); else nothing."""
    ends = [(p.energy_j_per_item_low, p.energy_j_per_item_high, profiles.mean_items(stage)) for stage, _, p in stages]
    if any(low is None or high is None for low, high, _ in ends):
        return {}
    return {"energy_j_per_request_low": sum(low * items for low, _, items in ends),
            "energy_j_per_request_high": sum(high * items for _, high, items in ends)}


def latency_s(choice: PipelineChoice, profiles: ProfileTable, load_rps: float | None = None,
              arrivals_s: np.ndarray | None = None) -> tuple[float, float]:
    """(p50, p99) end-to-end latency of `choice`: the runner's batching rules replayed through every stage, each
    batch's latency drawn from its profile's timed batches.

    At `load_rps`: the steady state of 2,000 Poisson arrivals with a fixed seed (start-up and final flush left
    out) — what the study, the adapter and the report decide from. With `arrivals_s`: every request of that
    trace, start-up and flush included — what one trial with those arrivals should measure."""
    stages = replay_stages(choice, profiles)
    if arrivals_s is not None:
        waits = replay.leave_times_s(stages, np.asarray(arrivals_s, dtype=float)) - arrivals_s
        return float(np.percentile(waits, 50)), float(np.percentile(waits, 99))
    if load_rps is None:
        raise ValueError("latency_s needs load_rps or arrivals_s")
    return _replayed_percentiles_s(stages, load_rps)


def stage_capacity_rps(p: StageProfile, replicas: int, mean_items_per_request: float) -> float:
    """Requests per second a stage's replicas serve."""
    return (replicas * p.batch_size / p.latency_p50_s / mean_items_per_request if mean_items_per_request > 0
            else float("inf"))


def stage_latency_p99_s(stage: str, position: int, p: StageProfile, replicas: int, profiles: ProfileTable,
                        load_rps: float) -> float:
    """p99 seconds a request spends in one stage fed straight by the arrivals: the separable per-stage figure an
    integer program can add up. Only a guide for the adapter's search; its SLA verdict is `latency_s`. `position`:
    the stage's place in the pipeline, which seeds its draws as in the end-to-end replay."""
    return _stage_p99_s((profiles.items_per_request[stage], p.batch_size, replicas, p.latency_samples_s), position,
                        load_rps)


@lru_cache(maxsize=65536)
def _stage_p99_s(stage: replay.Stage, position: int, load_rps: float) -> float:
    arrivals_s = replay.poisson_arrivals_s(load_rps)
    items, batch_size, replicas, samples_s = stage
    leave_s = replay.serve(arrivals_s, replay.items_of_requests(items), batch_size, replicas, samples_s, position)
    return float(np.percentile(replay.steady_state(leave_s - arrivals_s), 99))


def replay_stages(choice: PipelineChoice, profiles: ProfileTable) -> tuple[replay.Stage, ...]:
    """Per stage, in pipeline order: (items per request, batch, replicas, timed batch latencies)."""
    return tuple((profiles.items_per_request[stage], c.batch_size, c.replicas,
                  profiles.of(stage, c).latency_samples_s)
                 for stage, c in choice.stages().items())


@lru_cache(maxsize=65536)  # a study and an adaptation trace revisit the same configurations
def _replayed_percentiles_s(stages: tuple[replay.Stage, ...], load_rps: float) -> tuple[float, float]:
    """Steady-state (p50, p99) end-to-end latency through `stages` under Poisson arrivals at `load_rps`."""
    if load_rps <= 0:
        raise UserError(f"cannot compose latency at a load of {load_rps} requests/s",
                        "set search.load_rps (or the trace's load) to a positive rate")
    waits = replay.steady_state(replay.poisson_leave_times_s(stages, load_rps) - replay.poisson_arrivals_s(load_rps))
    return float(np.percentile(waits, 50)), float(np.percentile(waits, 99))
