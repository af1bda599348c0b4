"""Profiling: each stage variant × batch size × threads measured on its own, the input to IPA's composition."""

from __future__ import annotations

import statistics
import time
from itertools import cycle, islice
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from sustainable_ipa.data import Dataset
from sustainable_ipa.models.classifier import crop
from sustainable_ipa.search.profiles import ProfileTable, StageProfile
from sustainable_ipa.search.space import SearchSpace


def stage_inputs(dataset: Dataset) -> dict[str, list[np.ndarray]]:
    """Frames for the detector; ground-truth crops for the classifier (what it gets on this dataset)."""
    crops = [c for f in dataset.frames for gt in f.ground_truth if (c := crop(f.image_bgr, gt.box_xyxy)) is not None]
    return {"detector": [f.image_bgr for f in dataset.frames], "classifier": crops}


def items_per_request(dataset: Dataset) -> dict[str, float]:
    return {"detector": 1.0, "classifier": float(np.mean([len(f.ground_truth) for f in dataset.frames]))}


def percentile(values: list[float], q: float) -> float:
    return float(np.percentile(values, q))


def profile_stage(model: Callable[[list[np.ndarray]], object], stage: str, variant: str, batch_size: int,
                  threads: int, items: list[np.ndarray], repeats: int, energy_window, source: str) -> StageProfile:
    """Time `repeats` batches after one warm-up batch; `energy_window()` is a context manager whose result has
    `active_j` once it exits (idle-subtracted joules over the window)."""
    torch.set_num_threads(threads)
    batch = list(islice(cycle(items), batch_size))
    model(batch)  # warm-up: first-call allocations and kernel selection
    latencies = []
    with energy_window() as window:
        for _ in range(repeats):
            began = time.perf_counter()
            model(batch)
            latencies.append(time.perf_counter() - began)
    p50 = statistics.median(latencies)
    return StageProfile(stage, variant, batch_size, threads, p50, percentile(latencies, 99), batch_size / p50,
                        window.active_j / (repeats * batch_size), source)


def profile_space(space: SearchSpace, dataset: Dataset, build: Callable[[str, str], Callable], repeats: int,
                  energy_window, source: str, hardware: str, cached: ProfileTable | None = None,
                  on_profile: Callable[[StageProfile], None] | None = None) -> ProfileTable:
    """Every (stage, variant, batch, threads) of the space, reusing rows already in `cached`."""
    inputs = stage_inputs(dataset)
    rows = dict(cached.rows) if cached else {}
    by_model: dict[tuple[str, str], list[tuple[int, int]]] = {}
    for stage, variant, batch_size, threads in missing_profiles(space, cached):
        by_model.setdefault((stage, variant), []).append((batch_size, threads))
    for (stage, variant), todo in by_model.items():
        model = build(stage, variant)  # once per model, not per batch size
        for batch_size, threads in todo:
            profile = profile_stage(model, stage, variant, batch_size, threads, inputs[stage], repeats,
                                    energy_window, source)
            rows[profile.key] = profile
            if on_profile:
                on_profile(profile)
    return ProfileTable(list(rows.values()), hardware, items_per_request(dataset))


def missing_profiles(space: SearchSpace, cached: ProfileTable | None) -> list[tuple[str, str, int, int]]:
    """(stage, variant, batch, threads) of the space's profile grid that `cached` lacks."""
    return [(stage, v, b, t) for stage, o in space.profile_grid().items() for v in o["variants"]
            for b in o["batch_size"] for t in o["threads"] if cached is None or (stage, v, b, t) not in cached.rows]


def cache_path(cache_dir: str | Path, hardware: str) -> Path:
    return Path(cache_dir) / f"{hardware}.csv"
