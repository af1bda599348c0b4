"""A synthetic three-stage pipeline a → b → c of fake profiles (no model is built or run): each a item hands b two
items, each b item hands c three, so a request brings a 1 item, b 2 and c 6. For tests that profiling, composition,
replay and the adapter take their stages from `pipeline.stages`, not from the video pipeline's two names."""

from __future__ import annotations

import numpy as np
from omegaconf import DictConfig, OmegaConf

from sustainable_ipa.search.profiles import ProfileTable, StageProfile

STAGES = ("a", "b", "c")
HANDOFFS = {"a": (2,), "b": (3,), "c": ()}  # items the next stage gets per item of this one
ITEMS_PER_REQUEST = {"a": (1,), "b": (2,), "c": (6,)}
REFERENCE = {"a": {"a1": 60.0, "a2": 80.0, "a3": 90.0}, "b": {"b1": 70.0, "b2": 90.0},
             "c": {"c1": 50.0, "c2": 75.0, "c3": 95.0}}  # accuracy (%) per variant


def pipeline_cfg() -> DictConfig:
    return OmegaConf.create({"name": "chain", "stages": list(STAGES),
                             "variants": {s: {v: {"reference_accuracy": a} for v, a in vs.items()}
                                          for s, vs in REFERENCE.items()}})


def random_profiles(seed: int, batches=(1, 2, 4), threads=(1, 2), spread: bool = True):
    """(table, profile grid): per variant × batch × threads a made-up profile, slower and dearer for the more
    accurate variants; with `spread` the 20 batch latencies differ (drawn), else they are all alike."""
    rng = np.random.default_rng(seed)
    rows, grid = [], {}
    for stage in STAGES:
        variants = list(REFERENCE[stage])
        grid[stage] = {"variants": variants, "batch_size": list(batches), "threads": list(threads)}
        for k, v in enumerate(variants):
            for b in batches:
                for t in threads:
                    latency_s = (0.02 + 0.04 * k) * rng.uniform(0.7, 1.3) / t ** 0.8 * b ** 0.85
                    samples_s = tuple(latency_s * rng.uniform(0.8, 1.5, 20)) if spread else (latency_s,) * 20
                    rows.append(StageProfile(stage, v, b, t, samples_s, (0.2 + 0.5 * k) * rng.uniform(0.6, 1.0) / b ** 0.2,
                                             "estimate"))
    return ProfileTable(rows, "cpu", ITEMS_PER_REQUEST), grid
