"""The adapter on a pipeline of three stages (fake profiles): the MILP equals brute force over every combination,
with and without the end-to-end model; and on the two-stage pipeline its decisions are those it made before the
stage list was generalised."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from stage_chain import REFERENCE, STAGES, random_profiles
from test_optimizer import REFERENCE as VIDEO_REFERENCE
from test_optimizer import brute_force, random_instance

from sustainable_ipa.adapt.optimizer import Weights, decide, load_grid_rps, pipeline_p99_s, score, stage_options, to_choice
from sustainable_ipa.adapt.plots import timeline
from sustainable_ipa.adapt.simulate import Policy, simulate, totals
from sustainable_ipa.adapt.traces import Trace, generate_load
from sustainable_ipa.search.compose import predict

WEIGHTS = (Weights(alpha=2.0, beta=1.0, delta=0.0),
           Weights(alpha=50.0, beta=0.5, delta=0.3, objective="power"),
           Weights(alpha=50.0, beta=0.5, delta=0.002, objective="carbon", accuracy="sum"))


@pytest.mark.parametrize("seed,w", [(seed, w) for seed in range(3) for w in WEIGHTS])
def test_the_milp_equals_brute_force_on_three_stages(seed, w):
    profiles, grid = random_profiles(seed, batches=(1, 4), threads=(1,))
    options = stage_options(profiles, grid, load_grid_rps(float(np.random.default_rng(seed).uniform(2, 8))), REFERENCE)
    assert list(options) == list(STAGES)
    decision = decide(options, 1.5, 12, w, intensity_g_per_kwh=350.0)
    best, best_score = brute_force(options, 1.5, 12, w, 350.0)
    assert best is not None and decision.meets_sla and list(decision.choice.stages()) == list(STAGES)
    assert decision.objective == pytest.approx(best_score, rel=1e-9, abs=1e-9)


@pytest.mark.parametrize("seed", range(2))
def test_with_the_end_to_end_model_the_milp_equals_brute_force_on_three_stages(seed):
    # The decision is the best pipeline that the per-stage guide admits and the end-to-end replay accepts
    profiles, grid = random_profiles(seed, batches=(1, 4), threads=(1,))
    load = load_grid_rps(float(np.random.default_rng(seed).uniform(2, 8)))
    options = stage_options(profiles, grid, load, REFERENCE)
    model, w = pipeline_p99_s(profiles, load), Weights(alpha=50.0, beta=0.5, delta=0.3)
    decision = decide(options, 1.0, 12, w, pipeline_p99_s=model)
    admitted = [c for c in itertools.product(*options.values())
                if sum(o.latency_s for o in c) <= 1.0 and sum(o.cores for o in c) <= 12]
    best = next(c for c in sorted(admitted, key=lambda c: -score(c, w, 0.0)) if model(to_choice(c)) <= 1.0)
    assert decision.meets_sla and decision.objective == pytest.approx(score(best, w, 0.0), rel=1e-9)
    study = predict(decision.choice, profiles, load, 1.0, REFERENCE, 0.0)  # the study's verdict is the same
    assert decision.latency_s == study["latency_p99_s"] and study["sla_violation_s"] == 0.0


def test_a_trace_of_three_stages_is_simulated_and_plotted(tmp_path):
    profiles, grid = random_profiles(3, batches=(1, 4), threads=(1,))
    load = generate_load("diurnal", 3600 * 3, 900, 4.0)
    carbon = Trace("flat", np.array([0.0]), np.array([300.0]))
    intervals = simulate(Policy("energy", Weights(alpha=50.0, beta=0.2, delta=1.0)), profiles, grid, REFERENCE, load,
                         carbon, 2.0, 16, 900)
    assert all([s for s, _ in i.stages] == list(STAGES) for i in intervals)
    row = intervals[0].row()
    assert list(row)[3:7] == ["carbon_intensity_g_per_kwh", *STAGES] and row["c"] == dict(intervals[0].stages)["c"]
    assert totals(intervals)["sla_attainment"] > 0
    assert timeline({"energy": intervals}, tmp_path / "t.png").is_file()


def video_instance(seed: int):
    """Two stages, the video pipeline's: batch latencies spread (drawn by the replay), 5, 4, 0, 3 crops per frame."""
    return random_instance(seed, spread=True, crops=(5, 4, 0, 3))


# Computed by the code of commit 1bae866 (two stages by name) on `video_instance`: per seed and weights, the choice
# (variant, batch, threads, replicas per stage), its objective, composed p50 and p99, and the sum of every stage
# option's latency guide. The generalised code must give exactly these figures.

BEFORE = [
    (0, 0, [("yolov5n", 1, 1, 1), ("resnet18", 8, 1, 2)], -2.36241188, 0.6563140585464424, 1.3895490731233908, 194.07984354540335),
    (0, 1, [("yolov5n", 1, 1, 1), ("resnet18", 8, 1, 2)], 9.313795762331146, 0.6563140585464424, 1.3895490731233908, 194.07984354540335),
    (0, 2, [("yolov5m", 1, 1, 4), ("resnet50", 4, 1, 4)], 66.06417894583215, 0.824138808412588, 1.4768009218901, 194.07984354540335),
    (1, 0, [("yolov5n", 4, 1, 1), ("resnet18", 4, 2, 1)], -2.36241188, 0.5332165415258672, 1.3542939835175645, 203.40139859640408),
    (1, 1, [("yolov5s", 2, 2, 1), ("resnet18", 4, 2, 1)], 11.063333556819774, 0.3705983288152481, 0.9757941636709393, 203.40139859640408),
    (1, 2, [("yolov5m", 1, 1, 4), ("resnet50", 1, 2, 2)], 66.06578228359987, 0.5563367988404053, 1.5501389205457041, 203.40139859640408),
    (2, 0, [("yolov5s", 2, 1, 1), ("resnet18", 1, 2, 1)], -2.2075491200000004, 0.6279331184794614, 1.6113953503602472, 273.45171643117857),
    (2, 1, [("yolov5m", 2, 1, 2), ("resnet18", 1, 2, 1)], 13.447269632273343, 0.8096439335790251, 1.6545494294367373, 273.45171643117857),
    (2, 2, [("yolov5m", 1, 1, 2), ("resnet50", 1, 2, 2)], 67.08505301256515, 0.5107916317188739, 1.3012820464337949, 273.45171643117857),
]  # fmt: skip


@pytest.mark.parametrize("seed,weights,choice,objective,p50_s,p99_s,guides_s", BEFORE)
def test_two_stage_decisions_and_figures_are_those_before_the_generalisation(seed, weights, choice, objective, p50_s,
                                                                              p99_s, guides_s):
    profiles, space = video_instance(seed)
    load = load_grid_rps(float(np.random.default_rng(seed).uniform(2, 12)))
    options = stage_options(profiles, space, load, VIDEO_REFERENCE)
    decision = decide(options, 2.0, 12, WEIGHTS[weights], 350.0, pipeline_p99_s=pipeline_p99_s(profiles, load))
    m = predict(decision.choice, profiles, load, 2.0, VIDEO_REFERENCE, 0.036)
    assert [(c.variant, c.batch_size, c.threads, c.replicas) for c in decision.choice.stages().values()] == choice
    assert list(decision.choice.stages()) == ["detector", "classifier"]
    assert (decision.objective, m["latency_p50_s"], m["latency_p99_s"]) == (objective, p50_s, p99_s)
    assert sum(o.latency_s for opts in options.values() for o in opts) == guides_s
