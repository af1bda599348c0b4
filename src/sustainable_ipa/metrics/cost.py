"""IPA's cost: CPU cores, and what they cost per thousand requests."""

from __future__ import annotations


def cost_cores(stage_threads_replicas: list[tuple[int, int]]) -> int:
    """Σ over stages of replicas × threads (cores per replica)."""
    return sum(threads * replicas for threads, replicas in stage_threads_replicas)


def cost_usd_per_1k(price_usd_per_core_hour: float, cores: int, duration_s: float, requests: int) -> float:
    return price_usd_per_core_hour * cores * (duration_s / 3600.0) / requests * 1000.0
