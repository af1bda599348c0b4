"""Profiling: each stage variant × batch size × threads × precision × runtime measured on its own, the input to
IPA's composition."""

from __future__ import annotations

import ctypes
import gc
import hashlib
import time
from collections import defaultdict
from dataclasses import dataclass, replace
from itertools import cycle, islice
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from sustainable_ipa.fingerprint import Fingerprint
from sustainable_ipa.search.batch_fit import batch_sizes_to_time, fit_batches, mean_known
from sustainable_ipa.search.machine_load import CpuCounters, LoadTally, machine_cores, read_counters, reference_batch_s
from sustainable_ipa.search.profiles import CONTENDED, FITTED, NOISY, OK, ProfileTable, StageProfile
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


@dataclass(frozen=True)
class Reduction:
    """How much of a space is timed (conf/profiling): the defaults time everything `repeats` rounds.

    `timed_batch_sizes`: per (variant, threads, precision, runtime), how many of its batch sizes are timed (the
    smallest, the largest, the rest spread between), the others fitted (`batch_fit`); 0 times all. `tolerance`: a
    profile stops once its mean batch latency is known within ±this share (95 %), after `min_repeats` rounds; 0
    always runs `repeats` rounds."""

    timed_batch_sizes: int = 0
    fit_degree: int = 2
    tolerance: float = 0.0
    min_repeats: int = 0


@dataclass(frozen=True)
class ProfilingPlan:
    """What a job will do about the profiles of its space: which it times, model by model, which it fits from
    those, and how many the cache already has."""

    groups: dict[ModelKey, list[ProfileKey]]  # in the order built: each model's timed profiles
    fitted: list[ProfileKey]
    cached: int  # profiles of the space the cache has

    @property
    def timed(self) -> list[ProfileKey]:
        return [key for keys in self.groups.values() for key in keys]

    @property
    def exports(self) -> int:
        return sum(1 for model in self.groups if model[3] == "openvino")


def plan_profiles(space: SearchSpace, cached: ProfileTable | None, reduction: Reduction = Reduction()) -> ProfilingPlan:
    """The profiles of `space` that `cached` lacks: grouped by the model that times them, and split into those timed
    and those fitted from the timed batch sizes of the same (variant, threads, precision, runtime). A profile is
    fitted only where two or more of those are timed or cached as timed; otherwise it is timed."""
    grid = space.profile_grid()
    missing = missing_profiles(space, cached)
    chosen = {key: key[2] in batch_sizes_to_time(list(grid[key[0]]["batch_size"]), reduction.timed_batch_sizes)
              for key in missing}
    sources = defaultdict(set)  # (stage, variant, threads, precision, runtime) -> timed batch sizes
    for key in [k for k in missing if chosen[k]] + [p.key for p in (cached.rows.values() if cached else ())
                                                    if p.basis != FITTED]:
        sources[_line(key)].add(key[2])
    fitted = [key for key in missing if not chosen[key] and len(sources[_line(key)]) >= 2]
    groups: dict[ModelKey, list[ProfileKey]] = defaultdict(list)
    for key in missing:
        if key not in fitted:
            groups[model_key(key)].append(key)
    return ProfilingPlan(dict(groups), fitted, len(missing_profiles(space, None)) - len(missing))


def _line(key: ProfileKey) -> tuple:
    """What a batch fit is per: (stage, variant, threads, precision, runtime)."""
    stage, variant, _, threads, precision, runtime = key
    return (stage, variant, threads, precision, runtime)


def profile_space(space: SearchSpace, workload: Workload, build: Callable[[str, str, str, str], Callable], repeats: int,
                  energy_window, source: str, hardware: str, cached: ProfileTable | None = None,
                  on_batch: Callable[[ProfileKey, float, bool], None] | None = None,
                  limits: QualityLimits = QualityLimits(),
                  retries: int = 1, counters: Callable[[], CpuCounters] = lambda: read_counters(time.perf_counter),
                  cores: int | None = None, on_retry: Callable[[int], None] | None = None,
                  reference: Callable[[], float] = reference_batch_s, fingerprint: str = "",
                  reduction: Reduction = Reduction(), on_stop: Callable[[ProfileKey, int], None] | None = None,
                  on_model: Callable[[ModelKey, float], None] | None = None) -> ProfileTable:
    """Every (stage, variant, batch, threads, precision, runtime) of the space that `cached` lacks, timed on batches
    cut from `workload`'s items for the stage, whatever the pipeline's stages are, or fitted (`reduction`).

    One model at a time: `build(stage, variant, precision, runtime)` makes it, its profiles are timed, and it is
    released before the next is built, so memory holds one model, not the space's. Round 0 warms each of the model's
    profiles up (first-call allocations, kernel selection); each round after it times one batch of every profile
    still running, so that a burst of noise spoils one batch of several profiles, not every batch of one. A profile
    stops after `repeats` rounds, or earlier once its mean is known to `reduction.tolerance` (`on_stop(key, rounds
    left unused)`). Around every batch the machine's CPU counters are read, so each profile knows how much CPU other
    processes and the hypervisor took while it ran; a profile over `limits` is measured again (up to `retries` more
    times, keeping the least contended measurement) and, if it stays over, kept but flagged in its `quality`.
    `energy_window()` is a context manager whose result has `active_j` once it exits (idle-subtracted joules over
    the window). `on_batch(key, seconds, timed)` is called after every batch (`timed`: not a warm-up), `on_retry`
    with the number of batches a re-measurement adds, `on_model(model, build_s)` once a model is built.
    `reference()` times a fixed piece of work before each model's profiles, recorded with them, so that later runs
    can tell how far the machine's speed has drifted since. `fingerprint`: the key of the machine measuring
    (`Fingerprint.key`), recorded with the table.
    """
    plan = plan_profiles(space, cached, reduction)
    cores = cores or machine_cores()
    rows = dict(cached.rows) if cached else {}
    for model, keys in plan.groups.items():
        began = time.perf_counter()
        stage_model = build(*model[:4])
        if on_model:
            on_model(model, time.perf_counter() - began)
        batches = {key: list(islice(cycle(workload.inputs[key[0]]), key[2])) for key in keys}
        rows.update(_profile_model(keys, stage_model, batches, repeats, energy_window, source, limits, retries,
                                   counters, cores, reference, reduction, on_batch, on_retry, on_stop))
        del stage_model, batches
        release_memory()
    rows.update(fit_profiles(plan.fitted, rows, reduction.fit_degree))
    return ProfileTable(list(rows.values()), hardware, workload.items_per_request(), fingerprint)


def _profile_model(keys, model, batches, repeats, energy_window, source, limits, retries, counters, cores, reference,
                   reduction, on_batch, on_retry, on_stop) -> dict[ProfileKey, StageProfile]:
    """The profiles of one built model, measured again while any is over `limits` (`retries` times at most)."""
    measured: dict[ProfileKey, StageProfile] = {}
    remeasure = keys
    for attempt in range(retries + 1):
        reference_s = reference()
        timed = _measure(remeasure, model, batches, repeats, energy_window, on_batch, counters, reduction,
                         warm_up=attempt == 0, on_stop=on_stop)
        for key, (latencies_s, active_j, tally, (low_j, high_j)) in timed.items():
            stage, variant, batch_size, threads, precision, runtime = key
            others, steal = tally.shares(cores)
            items = len(latencies_s) * batch_size
            modelled = np.isfinite(low_j) and np.isfinite(high_j)  # the estimate: its power model's interval
            new = StageProfile(stage, variant, batch_size, threads, tuple(latencies_s), active_j / items, source,
                               others, steal, limits.judge(latencies_s, others, steal), reference_s, precision,
                               runtime, energy_j_per_item_low=low_j / items if modelled else None,
                               energy_j_per_item_high=high_j / items if modelled else None)
            old = measured.get(key)
            if old is None or (new.others_cpu_share + new.steal_share, new.latency_p90_s / new.latency_p50_s) < \
                    (old.others_cpu_share + old.steal_share, old.latency_p90_s / old.latency_p50_s):
                measured[key] = new
        remeasure = [key for key in keys if measured[key].quality != OK]
        if not remeasure or attempt == retries:
            break
        if on_retry:
            on_retry(len(remeasure) * repeats)
    return measured


def _measure(keys: list[ProfileKey], model, batches: dict, repeats: int, energy_window, on_batch,
             counters: Callable[[], CpuCounters], reduction: Reduction, warm_up: bool,
             on_stop) -> dict[ProfileKey, tuple[list[float], float, LoadTally]]:
    latencies: dict[ProfileKey, list[float]] = {key: [] for key in keys}
    active_j: dict[ProfileKey, float] = {key: 0.0 for key in keys}
    by_curve_j: dict[ProfileKey, np.ndarray | None] = {key: None for key in keys}  # the power model's other curves
    tallies = {key: LoadTally() for key in keys}
    running = list(keys)
    for round_ in range(0 if warm_up else 1, repeats + 1):
        for key in running:
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
                curves = np.asarray(getattr(window, "active_by_curve_j", ()), dtype=float)
                by_curve_j[key] = curves if by_curve_j[key] is None else by_curve_j[key] + curves
                tallies[key].add(before, after)
            if on_batch:
                on_batch(key, elapsed, round_ > 0)
        if reduction.tolerance > 0 and round_ > 0:
            known = [k for k in running if mean_known(latencies[k], reduction.tolerance, reduction.min_repeats)]
            for key in known:
                running.remove(key)
                if on_stop:
                    on_stop(key, repeats - round_)
        if not running:
            break
    return {key: (latencies[key], active_j[key], tallies[key], _ends(active_j[key], by_curve_j[key])) for key in keys}


def _ends(central_j: float, by_curve_j: np.ndarray | None) -> tuple[float, float]:
    """The least and most of a profile's summed energy over the curves of the power model (NaN: none, measured)."""
    if by_curve_j is None or by_curve_j.size == 0:
        return np.nan, np.nan
    return float(min(central_j, by_curve_j.min())), float(max(central_j, by_curve_j.max()))


def fit_profiles(fitted: list[ProfileKey], rows: dict[ProfileKey, StageProfile],
                 degree: int) -> dict[ProfileKey, StageProfile]:
    """A profile for each of `fitted`, from the timed profiles of the same (stage, variant, threads, precision,
    runtime) in `rows`: its median batch latency and energy per batch from the batch fit, its batch latencies those
    of the nearest timed batch size scaled to that median (the replay draws from them), its `fit_residual` the fit's
    error at the timed batch sizes."""
    out = {}
    for key in fitted:
        stage, variant, batch_size, threads, precision, runtime = key
        timed = sorted((p for p in rows.values() if _line(p.key) == _line(key) and p.basis != FITTED),
                       key=lambda p: p.batch_size)
        sizes = [p.batch_size for p in timed]
        fit_degree = min(degree, len(sizes) - 1)  # a quadratic through two points is any of many (28 % off: RESULTS)
        latency = fit_batches(sizes, [p.latency_p50_s for p in timed], fit_degree)
        energies = [p.energy_j_per_item * p.batch_size for p in timed]
        energy_per_batch = fit_batches(sizes, energies, fit_degree)(batch_size) if all(e > 0 for e in energies) else 0.0
        nearest = min(timed, key=lambda p: abs(np.log(p.batch_size) - np.log(batch_size)))
        scale = latency(batch_size) / nearest.latency_p50_s
        energy_j_per_item = energy_per_batch / batch_size
        # the power model's interval as wide, relatively, as the nearest timed profile's
        share = energy_j_per_item / nearest.energy_j_per_item if nearest.energy_j_per_item > 0 else 0.0
        low, high = nearest.energy_j_per_item_low, nearest.energy_j_per_item_high
        out[key] = replace(nearest, batch_size=batch_size,
                           latency_samples_s=tuple(s * scale for s in nearest.latency_samples_s),
                           energy_j_per_item=energy_j_per_item, basis=FITTED, fit_residual=latency.residual,
                           energy_j_per_item_low=None if low is None else low * share,
                           energy_j_per_item_high=None if high is None else high * share)
    return out


def release_memory() -> None:
    """What a released model held goes back: Python's cycles collected, and glibc's free heap returned to the system
    (`malloc_trim`), which otherwise keeps the pages of every model built so far resident. Not glibc: nothing to do."""
    gc.collect()
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass


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


def import_profiles(source: str, machine: Fingerprint, path: Path, hardware: str) -> int:
    """Adds the profiles at `source` (a file, or an MLflow artifact URI such as `runs:/<run id>/profiles.csv`) to the
    cache at `path`, those the cache has already kept as they are; returns how many were added. Refused in one line
    when they were measured on another machine than this one (their fingerprint)."""
    from sustainable_ipa.db_driver import without_password
    from sustainable_ipa.errors import UserError

    shown = without_password(source)  # an artifact URI may carry a tracking server's credentials
    local = Path(source)
    if not local.is_file() and ":" in source:
        import mlflow

        try:
            local = Path(mlflow.artifacts.download_artifacts(artifact_uri=source))
        except Exception as error:  # noqa: BLE001 - MLflow raises several kinds for a URI it cannot read
            raise UserError(f"profiling.import_from={shown} cannot be read ({type(error).__name__})",
                            "pass a profile table file or an MLflow artifact URI such as runs:/<run id>/profiles.csv")
    if not local.is_file():
        raise UserError(f"profiling.import_from={shown} is no file", "pass a profile table written by "
                        "profiling.export_to, or a profiling run's artifact runs:/<run id>/profiles.csv")
    table = ProfileTable.load(local)
    if table.fingerprint != machine.key:
        raise UserError(f"the profiles in {shown} were measured on {table.fingerprint or 'an unrecorded machine'}, "
                        f"this machine is {machine.key}", "import profiles of this machine type, or profile here "
                        "(python src/profiling.py)")
    ours = ProfileTable.load(path) if path.is_file() else None
    rows = {**table.rows, **(ours.rows if ours else {})}
    items = {**table.items_per_request, **(ours.items_per_request if ours else {})}
    ProfileTable(list(rows.values()), hardware, items, machine.key).save(path)
    return len(rows) - (len(ours.rows) if ours else 0)
