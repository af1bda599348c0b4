"""IPA's trick: a pipeline configuration's metrics composed from its stages' profiles, without running it."""

from __future__ import annotations

from functools import lru_cache

import numpy as np

from sustainable_ipa.errors import UserError
from sustainable_ipa.metrics.accuracy import pipeline_accuracy
from sustainable_ipa.metrics.cost import cost_usd_per_1k
from sustainable_ipa.metrics.latency import sla_violation_s
from sustainable_ipa.search import replay
from sustainable_ipa.search.profiles import ProfileTable, StageProfile
from sustainable_ipa.search.space import PipelineChoice


def predict(choice: PipelineChoice, profiles: ProfileTable, load_rps: float, sla_s: float,
            reference_accuracy: dict[str, dict[str, float]], price_usd_per_core_hour: float) -> dict[str, float]:
    """Predicted metrics of `choice` under Poisson arrivals of `load_rps` requests per second.

    Per stage: requests per second = replicas × batch ÷ batch latency (p50) ÷ items per request. Latency: the
    runner's batching rules replayed through both stages on the profiled batch latencies (`replay`): the wait
    for a batch to fill, for a replica, and the batch itself, per request, end to end; p50 with every batch
    taking its p50 latency, p99 with every batch taking its p99. A pipeline that cannot keep up shows it as
    latency that grows with the queue (and `load_shortfall_rps` says by how much).
    Energy per request = Σ stages idle-subtracted energy per item × items per request; replicas change how
    fast items are served, not how much energy each item takes.
    """
    stages = [(stage, c, profiles.get(stage, c.variant, c.batch_size, c.threads)) for stage, c in choice.stages().items()]
    throughput_rps = min(stage_capacity_rps(p, c.replicas, profiles.mean_items(stage)) for stage, c, p in stages)
    latency_p50_s, latency_p99_s = _replayed_latency_s(_replay_stages(choice, profiles), load_rps)
    return {
        "accuracy_reference": pipeline_accuracy([reference_accuracy[stage][c.variant] for stage, c, _ in stages]),
        "latency_p50_s": latency_p50_s,
        "latency_p99_s": latency_p99_s,
        "throughput_rps": throughput_rps,
        "energy_j_per_request": sum(p.energy_j_per_item * profiles.mean_items(stage) for stage, _, p in stages),
        "cost_cores": float(choice.cores),
        # served at the offered load when the pipeline keeps up, else at its own throughput
        "cost_usd_per_1k": cost_usd_per_1k(price_usd_per_core_hour, choice.cores, 1.0 / min(throughput_rps, load_rps), 1),
        "sla_violation_s": sla_violation_s(latency_p99_s, sla_s),
        "load_shortfall_rps": max(load_rps - throughput_rps, 0.0),
    }


def stage_capacity_rps(p: StageProfile, replicas: int, mean_items_per_request: float) -> float:
    """Requests per second a stage's replicas serve."""
    return (replicas * p.batch_size / p.latency_p50_s / mean_items_per_request if mean_items_per_request > 0
            else float("inf"))


def stage_latency_p99_s(p: StageProfile, replicas: int, items_per_request: tuple[int, ...], load_rps: float) -> float:
    """p99 seconds a request spends in one stage fed straight by the arrivals (IPA's per-stage view, which a
    separable optimiser needs)."""
    return _replayed_percentile_s(((items_per_request, p.batch_size, replicas, p.latency_p99_s),), load_rps, 99)


def trace_latency_s(choice: PipelineChoice, profiles: ProfileTable, arrivals_s: np.ndarray) -> tuple[float, float]:
    """(p50, p99) over every request of one arrival trace, start-up and final flush included: what one trial
    with these arrivals should measure (the validation's like-for-like prediction)."""
    out = []
    for q, which in ((50, 3), (99, 4)):
        stages = tuple((s[0], s[1], s[2], s[which]) for s in _replay_stages(choice, profiles))
        out.append(float(np.percentile(replay.leave_times_s(stages, arrivals_s) - arrivals_s, q)))
    return out[0], out[1]


def _replay_stages(choice: PipelineChoice, profiles: ProfileTable) -> tuple:
    """Per stage: (items per request, batch, replicas, p50 batch s, p99 batch s)."""
    out = []
    for stage, c in choice.stages().items():
        p = profiles.get(stage, c.variant, c.batch_size, c.threads)
        out.append((profiles.items_per_request[stage], c.batch_size, c.replicas, p.latency_p50_s, p.latency_p99_s))
    return tuple(out)


def _replayed_latency_s(stages: tuple[tuple[tuple[int, ...], int, int, float, float], ...],
                        load_rps: float) -> tuple[float, float]:
    """Steady-state p50 and p99 end-to-end latency through `stages` under Poisson arrivals at `load_rps`: every
    batch at its p50 latency for the p50, at its p99 for the p99."""
    return (_replayed_percentile_s(tuple((s[0], s[1], s[2], s[3]) for s in stages), load_rps, 50),
            _replayed_percentile_s(tuple((s[0], s[1], s[2], s[4]) for s in stages), load_rps, 99))


@lru_cache(maxsize=65536)  # a study and an adaptation trace revisit the same configurations
def _replayed_percentile_s(stages: tuple[replay.Stage, ...], load_rps: float, q: float) -> float:
    """The q-th percentile of steady-state end-to-end latency through `stages` under Poisson arrivals."""
    if load_rps <= 0:
        raise UserError(f"cannot compose latency at a load of {load_rps} requests/s",
                        "set search.load_rps (or the trace's load) to a positive rate")
    leave_s = replay.poisson_leave_times_s(stages, load_rps)
    return float(np.percentile(replay.steady_state(leave_s - replay.poisson_arrivals_s(load_rps)), q))
