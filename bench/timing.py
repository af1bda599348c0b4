"""Timing shared by the benchmarks: the median of repeated calls after one warm-up call."""

from __future__ import annotations

import statistics
import time
from typing import Callable


def median_call_s(call: Callable[[], object], reps: int) -> float:
    call()  # warm-up: first-call allocations and kernel selection
    times = []
    for _ in range(reps):
        began = time.perf_counter()
        call()
        times.append(time.perf_counter() - began)
    return statistics.median(times)
