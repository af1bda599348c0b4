"""The runner's batching rules replayed on profiled batch latencies: how long requests wait for batches to fill
and for replicas to free up, without running a model.

The rules are those of `pipeline.runner`: a stage cuts the items it receives into batches of B in arrival
order (a batch is ready when its last item has arrived), and its replicas take ready batches in order, each as
soon as one is free. A request leaves the stage when the batch holding its last item is done; a request with no
items for the stage leaves as it enters. Each batch's latency is drawn from the stage's profiled batch latencies
(a bootstrap with a fixed seed per stage position: common random numbers, so two configurations are compared on
the same luck and a configuration always gets the same prediction); arrivals are Poisson with a fixed seed.
"""

from __future__ import annotations

import heapq
from functools import lru_cache

import numpy as np

REQUESTS = 2000  # replayed per prediction; the first and last tenth are left out (start-up, final flush)
SEED = 0

# items per request (cycled), batch size, replicas, profiled batch latencies (s) to draw each batch's from
Stage = tuple[tuple[int, ...], int, int, tuple[float, ...]]


@lru_cache(maxsize=64)
def poisson_arrivals_s(load_rps: float, requests: int = REQUESTS, seed: int = SEED) -> np.ndarray:
    """Arrival times of `requests` Poisson arrivals at `load_rps` (read-only: shared between predictions)."""
    arrivals = np.cumsum(np.random.default_rng(seed).exponential(1.0 / load_rps, requests))
    arrivals.flags.writeable = False
    return arrivals


def batch_latencies_s(samples_s: tuple[float, ...], batches: int, position: int) -> np.ndarray:
    """One latency per batch, drawn from the profiled ones (constant when they are all equal)."""
    values = np.asarray(samples_s, dtype=float)
    if values.min() == values.max():
        return np.full(batches, values[0])
    return np.random.default_rng((SEED, position)).choice(values, batches)


def finish_times_s(ready_s: np.ndarray, service_s: np.ndarray, replicas: int) -> np.ndarray:
    """When each batch is done, when batches start in order, each on the first replica that is free."""
    if replicas == 1 or service_s.min() == service_s.max():
        # finish[k] = max(ready[k], finish[k − r]) + S_k: a Lindley recursion per residue class (with one replica,
        # or equal latencies, batch k runs on the replica batch k − r freed), solved in closed form as
        # finish[k] = C_k + max over i ≤ k of (ready[i] − C_{i−1}), C the running sum of S within the class.
        finish_s = np.empty(len(ready_s))
        for first in range(min(replicas, len(ready_s))):
            ready, service = ready_s[first::replicas], service_s[first::replicas]
            done_before_s = np.cumsum(service) - service  # C_{i−1}
            finish_s[first::replicas] = np.maximum.accumulate(ready - done_before_s) + done_before_s + service
        return finish_s
    # Unequal latencies on several replicas: the next batch goes to whichever replica frees first.
    free_s = [0.0] * replicas
    finish = []
    for ready, service in zip(ready_s.tolist(), service_s.tolist()):
        done = max(ready, heapq.heappop(free_s)) + service
        heapq.heappush(free_s, done)
        finish.append(done)
    return np.asarray(finish)


def serve(enter_s: np.ndarray, items: np.ndarray, batch_size: int, replicas: int, samples_s: tuple[float, ...],
          position: int = 0) -> np.ndarray:
    """When each request leaves a stage, given when it enters and how many items it brings. `position`: the stage's
    place in the pipeline, which seeds its draws of batch latencies.

    Items are batched in the order they enter, as the runner's queue takes them: behind replicas whose batches
    take unequal times, a later request can reach this stage first. A request leaves when the last of its items'
    batches is done (with several replicas a later batch can finish first)."""
    items = np.asarray(items)
    total = int(items.sum())
    if total == 0:
        return np.asarray(enter_s, dtype=float).copy()
    item_enter_s = np.repeat(enter_s, items)
    order = np.argsort(item_enter_s, kind="stable")  # ties keep request order
    batches = -(-total // batch_size)
    # a batch is ready when its last item has entered; the final partial batch when the input ends (a flush)
    ready_s = item_enter_s[order][np.minimum(np.arange(1, batches + 1) * batch_size, total) - 1]
    finish_s = finish_times_s(ready_s, batch_latencies_s(samples_s, batches, position), replicas)
    item_done_s = np.empty(total)
    item_done_s[order] = finish_s[np.arange(total) // batch_size]
    leave_s = np.array(enter_s, dtype=float)  # a request with no items leaves as it enters
    np.maximum.at(leave_s, np.repeat(np.arange(len(items)), items), item_done_s)
    return leave_s


def leave_times_s(stages: tuple[Stage, ...], arrivals_s: np.ndarray) -> np.ndarray:
    """When each request of an arrival trace leaves the last of `stages`."""
    leave_s = arrivals_s
    for position, (items, batch_size, replicas, samples_s) in enumerate(stages):
        leave_s = serve(leave_s, items_of_requests(items, len(arrivals_s)), batch_size, replicas, samples_s, position)
    return leave_s


@lru_cache(maxsize=1024)  # configurations share their first stages: a prefix is replayed once
def poisson_leave_times_s(stages: tuple[Stage, ...], load_rps: float) -> np.ndarray:
    """`leave_times_s` for the fixed Poisson arrivals at `load_rps` (read-only: shared between predictions)."""
    if not stages:
        return poisson_arrivals_s(load_rps)
    items, batch_size, replicas, samples_s = stages[-1]
    leave_s = serve(np.asarray(poisson_leave_times_s(stages[:-1], load_rps)), items_of_requests(items), batch_size,
                    replicas, samples_s, len(stages) - 1)
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
