"""Per-request latency, throughput and SLA attainment."""

from __future__ import annotations

import numpy as np


def latency_percentiles_s(latencies_s: np.ndarray) -> dict[str, float]:
    lat = np.asarray(latencies_s, dtype=float)
    p50, p95, p99 = np.percentile(lat, [50, 95, 99])  # linear interpolation between order statistics
    return {"latency_mean_s": float(lat.mean()), "latency_p50_s": float(p50),
            "latency_p95_s": float(p95), "latency_p99_s": float(p99)}


def sla_attainment(latencies_s: np.ndarray, sla_s: float) -> float:
    """Fraction of requests whose end-to-end latency is within the SLA."""
    return float(np.mean(np.asarray(latencies_s) <= sla_s))


def sla_violation_s(latency_p99_s: float, sla_s: float) -> float:
    """How far the p99 latency overshoots the SLA (0 when it is met): the search's constraint."""
    return max(latency_p99_s - sla_s, 0.0)


def throughput_rps(arrivals_s: np.ndarray, finishes_s: np.ndarray) -> float:
    """Requests served per second, from the first arrival to the last completion."""
    span_s = float(np.max(finishes_s) - np.min(arrivals_s))
    return len(finishes_s) / span_s if span_s > 0 else float("inf")
