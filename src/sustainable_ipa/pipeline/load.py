"""Request arrival schedules."""

from __future__ import annotations

import numpy as np

OFFLINE_NOTE = ("every request queued at t = 0, a throughput mode: latency and SLA attainment then measure queue "
                "position and the request count, not service at a request rate")


def load_tags(load: str) -> dict[str, str]:
    """What a run records of its arrival process (its rate is the param trial.rate_rps)."""
    return {"load": load, **({"load_note": OFFLINE_NOTE} if load == "offline" else {})}


def arrival_offsets_s(requests: int, load: str, rate_rps: float | None, seed: int) -> np.ndarray:
    """Seconds after the start at which each request arrives.

    offline: all queued at the start. poisson: exponential gaps at `rate_rps`, the first request at 0.
    """
    if load == "offline":
        return np.zeros(requests)
    if load == "poisson":
        gaps = np.random.default_rng(seed).exponential(1.0 / rate_rps, size=requests)
        return np.concatenate([[0.0], np.cumsum(gaps[:-1])])
    raise ValueError(f"unknown load {load!r}")


def poisson_times_s(rate_rps: float, duration_s: float, rng: np.random.Generator) -> np.ndarray:
    """Arrival times of a Poisson process at `rate_rps` within [0, duration_s) (none at a rate of 0)."""
    if rate_rps <= 0:
        return np.zeros(0)
    gaps = rng.exponential(1.0 / rate_rps, size=int(rate_rps * duration_s * 2 + 20))
    times = np.cumsum(gaps)
    while times[-1] < duration_s:  # rarely: more arrivals than twice the mean
        times = np.concatenate([times, times[-1] + np.cumsum(rng.exponential(1.0 / rate_rps, size=len(times)))])
    return times[times < duration_s]
