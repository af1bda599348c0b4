"""IPA's trick: a pipeline configuration's metrics composed from its stages' profiles, without running it."""

from __future__ import annotations

from sustainable_ipa.metrics.accuracy import pipeline_accuracy
from sustainable_ipa.metrics.cost import cost_usd_per_1k
from sustainable_ipa.metrics.latency import sla_violation_s
from sustainable_ipa.search.profiles import ProfileTable, StageProfile
from sustainable_ipa.search.space import PipelineChoice


def predict(choice: PipelineChoice, profiles: ProfileTable, load_rps: float, sla_s: float,
            reference_accuracy: dict[str, dict[str, float]], price_usd_per_core_hour: float) -> dict[str, float]:
    """Predicted metrics of `choice` under `load_rps` requests per second.

    Per stage: requests per second = replicas × batch ÷ batch latency (p50) ÷ items per request; latency =
    batch latency + the wait for a batch to fill + the wait for a free replica. The first item of a batch waits
    for the requests that fill it: (B ÷ items per request − 1) ÷ λ (IPA's (B − 1) ÷ λ when each request brings one
    item; used for p99); an item waits half that on average (p50).
    The wait for a replica treats full batches as Poisson arrivals at a server of service time latency ÷
    replicas (M/D/1: ρ·S ÷ 2(1 − ρ)); at ρ ≥ 1 the stage cannot keep up and `load_shortfall_rps` says by how much.
    Energy per request = Σ stages idle-subtracted energy per item × items per request; replicas change how
    fast items are served, not how much energy each item takes.
    """
    throughput, latency_p50, latency_p99, energy, accuracies = [], 0.0, 0.0, 0.0, []
    for stage, c in choice.stages().items():
        p = profiles.get(stage, c.variant, c.batch_size, c.threads)
        items = profiles.items_per_request[stage]
        throughput.append(stage_capacity_rps(p, c.replicas, items))
        p50, p99 = stage_latency_s(p, c.replicas, items, load_rps)
        latency_p50 += p50
        latency_p99 += p99
        energy += p.energy_j_per_item * items
        accuracies.append(reference_accuracy[stage][c.variant])
    throughput_rps = min(throughput)
    return {
        "accuracy_reference": pipeline_accuracy(accuracies),
        "latency_p50_s": latency_p50,
        "latency_p99_s": latency_p99,
        "throughput_rps": throughput_rps,
        "energy_j_per_request": energy,
        "cost_cores": float(choice.cores),
        # served at the offered load when the pipeline keeps up, else at its own throughput
        "cost_usd_per_1k": cost_usd_per_1k(price_usd_per_core_hour, choice.cores, 1.0 / min(throughput_rps, load_rps), 1),
        "sla_violation_s": sla_violation_s(latency_p99, sla_s),
        "load_shortfall_rps": max(load_rps - throughput_rps, 0.0),
    }


def stage_capacity_rps(p: StageProfile, replicas: int, items_per_request: float) -> float:
    """Requests per second a stage's replicas serve."""
    return replicas * p.batch_size / p.latency_p50_s / items_per_request if items_per_request > 0 else float("inf")


def stage_latency_s(p: StageProfile, replicas: int, items_per_request: float, load_rps: float) -> tuple[float, float]:
    """(p50, p99) seconds a request spends in a stage: batch latency, batch-fill wait, wait for a replica."""
    # Items come in groups of `items_per_request` (a frame's crops): a batch fills after B ÷ items requests.
    fill_s = max(p.batch_size / items_per_request - 1, 0.0) / load_rps if load_rps > 0 and items_per_request > 0 else 0.0
    service_s = p.latency_p50_s / replicas
    rho = load_rps * items_per_request / p.batch_size * service_s
    queue_s = rho * service_s / (2 * (1 - rho)) if rho < 1 else 0.0
    return p.latency_p50_s + fill_s / 2 + queue_s, p.latency_p99_s + fill_s + queue_s
