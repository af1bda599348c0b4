"""The runner's batching rules replayed on profiled batch latencies: how long requests wait for batches to fill
and for replicas to free up, without running a model.

The rules are those of `pipeline.runner`: a stage cuts the items it receives into batches of B in arrival
order (a batch is ready when its last item has arrived), and its replicas take ready batches in order, each as
soon as one is free. A request leaves the stage when the batch holding its last item is done; a request with no
items for the stage leaves as it enters. Batch latency is taken as constant (the profile's p50, or its p99 for
the tail), arrivals as Poisson with a fixed seed, so a configuration always gets the same prediction.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np

REQUESTS = 2000  # replayed per prediction; the first and last tenth are left out (start-up, final flush)
SEED = 0


@lru_cache(maxsize=64)
def poisson_arrivals_s(load_rps: float, requests: int = REQUESTS, seed: int = SEED) -> np.ndarray:
    """Arrival times of `requests` Poisson arrivals at `load_rps` (read-only: shared between predictions)."""
    arrivals = np.cumsum(np.random.default_rng(seed).exponential(1.0 / load_rps, requests))
    arrivals.flags.writeable = False
    return arrivals


def serve(enter_s: np.ndarray, items: np.ndarray, batch_size: int, replicas: int, batch_s: float) -> np.ndarray:
    """When each request leaves a stage, given when it enters (non-decreasing) and how many items it brings."""
    done_items = np.cumsum(items)
    total = int(done_items[-1]) if len(done_items) else 0
    if total == 0:
        return enter_s.copy()
    item_enter_s = np.repeat(enter_s, items)
    batches = -(-total // batch_size)
    # a batch is ready when its last item has entered; the final partial batch when the input ends (a flush)
    ready_s = item_enter_s[np.minimum(np.arange(1, batches + 1) * batch_size, total) - 1]
    finish_s = np.empty(batches)
    # Replicas take batches in order and all take batch_s, so batch k runs on the replica batch k − r freed:
    # finish[k] = max(ready[k], finish[k − r]) + S, a Lindley recursion per residue class, solved in closed form
    # as finish[k] = S·(j + 1) + max over i ≤ j of (ready[i] − S·i), j the position within the class.
    for first in range(min(replicas, batches)):
        ready = ready_s[first::replicas]
        earlier_service_s = np.arange(len(ready)) * batch_s  # S·i
        finish_s[first::replicas] = np.maximum.accumulate(ready - earlier_service_s) + earlier_service_s + batch_s
    leave_s = finish_s[np.maximum(done_items - 1, 0) // batch_size]
    return np.where(items > 0, leave_s, enter_s)


Stage = tuple[tuple[int, ...], int, int, float]  # items per request (cycled), batch size, replicas, batch seconds


def leave_times_s(stages: tuple[Stage, ...], arrivals_s: np.ndarray) -> np.ndarray:
    """When each request of an arrival trace leaves the last of `stages`."""
    leave_s = arrivals_s
    for items, batch_size, replicas, batch_s in stages:
        leave_s = serve(leave_s, items_of_requests(items, len(arrivals_s)), batch_size, replicas, batch_s)
    return leave_s


@lru_cache(maxsize=1024)  # configurations share their first stages: a prefix is replayed once
def poisson_leave_times_s(stages: tuple[Stage, ...], load_rps: float) -> np.ndarray:
    """`leave_times_s` for the fixed Poisson arrivals at `load_rps` (read-only: shared between predictions)."""
    if not stages:
        return poisson_arrivals_s(load_rps)
    leave_s = leave_times_s(stages[-1:], np.asarray(poisson_leave_times_s(stages[:-1], load_rps)))
    leave_s.flags.writeable = False
    return leave_s


def steady_state(values: np.ndarray) -> np.ndarray:
    """The requests between start-up (an empty pipeline) and the end (the final partial batches flushed)."""
    cut = len(values) // 10
    return values[cut:len(values) - cut]


@lru_cache(maxsize=64)
def items_of_requests(cycle: tuple[int, ...], requests: int = REQUESTS) -> np.ndarray:
    """Items per request when requests cycle over the dataset's frames (read-only: shared between predictions)."""
    items = np.tile(np.asarray(cycle, dtype=np.int64), -(-requests // len(cycle)))[:requests]
    items.flags.writeable = False
    return items
