"""Profiling: each stage variant × batch size × threads × precision × runtime measured on its own, the input to
IPA's composition."""

from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass
from itertools import cycle, islice
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from sustainable_ipa.fingerprint import Fingerprint
from sustainable_ipa.search.machine_load import CpuCounters, LoadTally, machine_cores, read_counters, reference_batch_s
from sustainable_ipa.search.profiles import CONTENDED, NOISY, OK, ProfileTable, StageProfile
from sustainable_ipa.search.space import NUMERICS, SearchSpace
from sustainable_ipa.search.workload import Workload

ProfileKey = tuple[str, str, int, int, str, str]  # stage, variant, batch size, threads, precision, runtime
ModelKey = tuple[str, str, str, str, int]  # stage, variant, precision, runtime, threads (0: any): one model build


@dataclass(frozen=True)
class QualityLimits:
    """When a profile is not to be trusted as measured (conf/profiling: max_others_cpu_share, …)."""

    max_others_cpu_share: float = 0.10
    max_steal_share: float = 0.05
    max_p90_over_p50: float = 1.5

    def judge(self, latencies_s: list[float], others_cpu_share: float, steal_share: float) -> str:
        if others_cpu_share > self.max_others_cpu_share or steal_share > self.max_steal_share:
            return CONTENDED
        if np.percentile(latencies_s, 90) > self.max_p90_over_p50 * np.median(latencies_s):
            return NOISY
        return OK


def profile_space(space: SearchSpace, workload: Workload, build: Callable[[str, str, str, str], Callable], repeats: int,
                  energy_window, source: str, hardware: str, cached: ProfileTable | None = None,
                  on_batch: Callable[[ProfileKey], None] | None = None, limits: QualityLimits = QualityLimits(),
                  retries: int = 1, counters: Callable[[], CpuCounters] = lambda: read_counters(time.perf_counter),
                  cores: int | None = None, on_retry: Callable[[int], None] | None = None,
                  reference: Callable[[], float] = reference_batch_s, fingerprint: str = "") -> ProfileTable:
    """Every (stage, variant, batch, threads, precision, runtime) of the space that `cached` lacks, measured in
    rounds on batches cut from `workload`'s items for the stage, whatever the pipeline's stages are. `build(stage,
    variant, precision, runtime)` makes the stage's model once for all its batch sizes and threads.

    Round 0 warms every profile up (first-call allocations, kernel selection); each of the `repeats` rounds
    after it times one batch of every profile. Spreading a profile's batches over the whole run means a burst
    of noise (a neighbour on a shared VM, a background job) spoils one batch of many profiles, not every batch
    of one. Around every batch the machine's CPU counters are read, so each profile knows how much CPU other
    processes and the hypervisor took while it ran; a profile over `limits` is measured again (up to `retries`
    more times, keeping the least contended measurement) and, if it stays over, kept but flagged in its
    `quality`. `energy_window()` is a context manager whose result has `active_j` once it exits
    (idle-subtracted joules over the window). `on_batch` is called after every batch, `on_retry` with the number
    of batches a re-measurement adds. `reference()` times a fixed piece of work before each attempt, recorded with
    the profiles it preceded, so that later runs can tell how far the machine's speed has drifted since.
    `fingerprint`: the key of the machine measuring (`Fingerprint.key`), recorded with the table.
    """
    inputs = workload.inputs
    todo = missing_profiles(space, cached)
    models = {model: build(*model[:4]) for model in dict.fromkeys(model_key(key) for key in todo)}
    batches = {key: list(islice(cycle(inputs[key[0]]), key[2])) for key in todo}
    cores = cores or machine_cores()
    measured: dict[ProfileKey, StageProfile] = {}
    remeasure = todo
    for attempt in range(retries + 1):
        reference_s = reference()
        for key, profile in _measure(remeasure, models, batches, repeats, energy_window, on_batch, counters,
                                     warm_up=attempt == 0).items():
            stage, variant, batch_size, threads, precision, runtime = key
            latencies_s, active_j, tally = profile
            others, steal = tally.shares(cores)
            new = StageProfile(stage, variant, batch_size, threads, tuple(latencies_s),
                               active_j / (repeats * batch_size), source, others, steal,
                               limits.judge(latencies_s, others, steal), reference_s, precision, runtime)
            old = measured.get(key)
            if old is None or (new.others_cpu_share + new.steal_share, new.latency_p90_s / new.latency_p50_s) < \
                    (old.others_cpu_share + old.steal_share, old.latency_p90_s / old.latency_p50_s):
                measured[key] = new
        remeasure = [key for key in todo if measured[key].quality != OK]
        if not remeasure or attempt == retries:
            break
        if on_retry:
            on_retry(len(remeasure) * repeats)
    rows = dict(cached.rows) if cached else {}
    rows.update(measured)
    return ProfileTable(list(rows.values()), hardware, workload.items_per_request(), fingerprint)


def _measure(keys: list[ProfileKey], models: dict, batches: dict, repeats: int, energy_window, on_batch,
             counters: Callable[[], CpuCounters], warm_up: bool) -> dict[ProfileKey, tuple[list[float], float, LoadTally]]:
    latencies: dict[ProfileKey, list[float]] = {key: [] for key in keys}
    active_j: dict[ProfileKey, float] = {key: 0.0 for key in keys}
    tallies = {key: LoadTally() for key in keys}
    for round_ in range(0 if warm_up else 1, repeats + 1):
        for key in keys:
            model = models[model_key(key)]
            torch.set_num_threads(key[3])
            with energy_window() as window:
                before = counters()
                began = time.perf_counter()
                model(batches[key])
                elapsed = time.perf_counter() - began
                after = counters()
            if round_ > 0:
                latencies[key].append(elapsed)
                active_j[key] += window.active_j
                tallies[key].add(before, after)
            if on_batch:
                on_batch(key)
    return {key: (latencies[key], active_j[key], tallies[key]) for key in keys}


def model_key(key: ProfileKey) -> ModelKey:
    """One build per model, shared by its batch sizes and, on torch, its thread counts (set per batch); OpenVINO
    compiles a model for the threads it first runs with, so there it is one build per thread count."""
    stage, variant, _, threads, precision, runtime = key
    return (stage, variant, precision, runtime, threads if runtime == "openvino" else 0)


def missing_profiles(space: SearchSpace, cached: ProfileTable | None) -> list[ProfileKey]:
    """(stage, variant, batch, threads, precision, runtime) of the space's profile grid that `cached` lacks."""
    return [(stage, v, b, t, p, r) for stage, o in space.profile_grid().items() for v in o["variants"]
            for b in o["batch_size"] for t in o["threads"] for p, r in o[NUMERICS]
            if cached is None or (stage, v, b, t, p, r) not in cached.rows]


def cache_path(cache_dir: str | Path, hardware: str, machine: Fingerprint) -> Path:
    """Where the profiles of `hardware` (its device and settings) measured on `machine` are cached: keyed by the
    machine's fingerprint, never by the hardware config's name alone, since one name runs on other CPUs and cores
    from one day to the next."""
    return Path(cache_dir) / f"{hardware}-{hashlib.sha256(machine.key.encode()).hexdigest()[:12]}.csv"


def read_cache(path: Path, machine: Fingerprint, warn: Callable[[str], None]) -> ProfileTable | None:
    """The cached table at `path` if it was measured on `machine`, else None (`warn` told why): a file copied from
    another machine, or written before tables recorded their machine, is never read as this one's."""
    if not path.is_file():
        return None
    table = ProfileTable.load(path, warn)
    if table.fingerprint != machine.key:
        warn(f"the profile cache {path} was measured on {table.fingerprint or 'an unrecorded machine'}, not on this "
             f"one ({machine.key}): profiling again")
        return None
    return table
