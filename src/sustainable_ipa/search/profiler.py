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


def frame_crops(dataset: Dataset) -> list[list[np.ndarray]]:
    """Each frame's ground-truth crops: what the classifier gets from it with random detector weights."""
    return [[c for gt in f.ground_truth if (c := crop(f.image_bgr, gt.box_xyxy)) is not None] for f in dataset.frames]


def stage_inputs(dataset: Dataset) -> dict[str, list[np.ndarray]]:
    return {"detector": [f.image_bgr for f in dataset.frames],
            "classifier": [c for crops in frame_crops(dataset) for c in crops]}


def items_per_request(dataset: Dataset) -> dict[str, tuple[int, ...]]:
    """Per request, in the order requests cycle over the frames: 1 frame; that frame's crops."""
    return {"detector": (1,), "classifier": tuple(len(crops) for crops in frame_crops(dataset))}


ProfileKey = tuple[str, str, int, int]  # stage, variant, batch size, threads


def profile_space(space: SearchSpace, dataset: Dataset, build: Callable[[str, str], Callable], repeats: int,
                  energy_window, source: str, hardware: str, cached: ProfileTable | None = None,
                  on_batch: Callable[[ProfileKey], None] | None = None) -> ProfileTable:
    """Every (stage, variant, batch, threads) of the space that `cached` lacks, measured in rounds.

    Round 0 warms every profile up (first-call allocations, kernel selection); each of the `repeats` rounds
    after it times one batch of every profile. Spreading a profile's batches over the whole run means a burst
    of noise (a neighbour on a shared VM, a background job) spoils one batch of many profiles, not every batch
    of one: the median per profile stays clean. `energy_window()` is a context manager whose result has
    `active_j` once it exits (idle-subtracted joules over the window). `on_batch` is called after every batch.
    """
    inputs = stage_inputs(dataset)
    todo = missing_profiles(space, cached)
    models = {model: build(*model) for model in dict.fromkeys(key[:2] for key in todo)}  # one build per model
    batches = {key: list(islice(cycle(inputs[key[0]]), key[2])) for key in todo}
    latencies: dict[ProfileKey, list[float]] = {key: [] for key in todo}
    active_j: dict[ProfileKey, float] = {key: 0.0 for key in todo}
    for round_ in range(repeats + 1):
        for key in todo:
            model = models[key[:2]]
            torch.set_num_threads(key[3])
            with energy_window() as window:
                began = time.perf_counter()
                model(batches[key])
                elapsed = time.perf_counter() - began
            if round_ > 0:
                latencies[key].append(elapsed)
                active_j[key] += window.active_j
            if on_batch:
                on_batch(key)
    rows = dict(cached.rows) if cached else {}
    for key in todo:
        stage, variant, batch_size, threads = key
        p50 = statistics.median(latencies[key])
        rows[key] = StageProfile(stage, variant, batch_size, threads, p50, float(np.percentile(latencies[key], 99)),
                                 batch_size / p50, active_j[key] / (repeats * batch_size), source)
    return ProfileTable(list(rows.values()), hardware, items_per_request(dataset))


def missing_profiles(space: SearchSpace, cached: ProfileTable | None) -> list[ProfileKey]:
    """(stage, variant, batch, threads) of the space's profile grid that `cached` lacks."""
    return [(stage, v, b, t) for stage, o in space.profile_grid().items() for v in o["variants"]
            for b in o["batch_size"] for t in o["threads"] if cached is None or (stage, v, b, t) not in cached.rows]


def cache_path(cache_dir: str | Path, hardware: str) -> Path:
    return Path(cache_dir) / f"{hardware}.csv"
