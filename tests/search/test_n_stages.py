"""A pipeline of three stages is profiled, searched and composed from `pipeline.stages` alone (fake profiles)."""

from contextlib import contextmanager
from types import SimpleNamespace

import numpy as np
import optuna
import pytest
from omegaconf import OmegaConf
from stage_chain import HANDOFFS, ITEMS_PER_REQUEST, REFERENCE, STAGES, pipeline_cfg

from sustainable_ipa.search import replay
from sustainable_ipa.search.compose import latency_s, predict, replay_stages
from sustainable_ipa.search.profiler import profile_space
from sustainable_ipa.search.profiles import ProfileTable, StageProfile
from sustainable_ipa.search.space import PipelineChoice, SearchSpace, StageChoice
from sustainable_ipa.search.study import describe, suggest
from sustainable_ipa.search.workload import Workload, fan_out


def test_items_per_request_follow_the_fan_out_of_each_stage():
    assert fan_out((1,), (5, 4)) == (5, 4)  # the video pipeline: a frame each, its crops (bus.jpg, zidane.jpg)
    # requests bringing 5 and 4 items whose items hand on 1, 2, 0, 1, 2 | 0, 1, 2, 0: then both cycles close
    assert fan_out((5, 4), (1, 2, 0)) == (6, 3)
    workload = Workload({s: [s] for s in STAGES}, HANDOFFS)
    assert workload.items_per_request() == ITEMS_PER_REQUEST


def space_cfg(**changes):
    space = {stage: {"variants": list(REFERENCE[stage])[:2], "batch_size": [1, 2], "threads": [1, 2],
                     "replicas": [1, 2]} for stage in STAGES}
    for key, value in changes.items():
        stage, knob = key.split("_", 1)
        space[stage][knob] = value
    return OmegaConf.create(space)


def test_the_space_has_the_stages_of_the_pipeline_in_its_order():
    space = SearchSpace.from_config(space_cfg(), pipeline_cfg(), max_cores=None)
    choices = space.all_choices()
    assert len(choices) == (2 * 2 * 2 * 2) ** 3 and list(space.stages) == list(STAGES)
    assert all(list(c.stages()) == list(STAGES) for c in choices)
    choice = choices[5]
    assert choice["c"] == choice.stages()["c"] and choice.cores == sum(s.threads * s.replicas
                                                                       for s in choice.stages().values())
    assert list(choice.params())[:4] == ["a.variant", "a.batch_size", "a.threads", "a.replicas"]
    assert space.choice_from_params(choice.params()) == choice


def test_a_study_of_three_stages_suggests_only_what_fits():
    space = SearchSpace.from_config(space_cfg(), pipeline_cfg(), max_cores=5)
    assert space.cores_bind
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    picked = []
    study.optimize(lambda trial: picked.append(suggest(trial, space)) or 0.0, n_trials=20)
    assert all(c.cores <= 5 and list(c.stages()) == list(STAGES) for c in picked)
    assert describe(picked[0]).count(" + ") == 2


def constant_table(spread_c: bool = False) -> ProfileTable:
    """a: batches of 1 or 2 in 0.4 s; b: of 2 or 4 in 0.2 s; c: of 3 in 0.1 s (or drawn from a spread)."""
    c_samples = tuple(np.linspace(0.05, 0.3, 20)) if spread_c else (0.1,) * 20
    return ProfileTable([StageProfile("a", "a1", 1, 1, (0.4,) * 20, 1.0, "estimate"),
                         StageProfile("a", "a1", 2, 1, (0.4,) * 20, 1.0, "estimate"),
                         StageProfile("b", "b1", 2, 1, (0.2,) * 20, 0.5, "estimate"),
                         StageProfile("b", "b1", 4, 1, (0.2,) * 20, 0.5, "estimate"),
                         StageProfile("c", "c1", 3, 1, c_samples, 0.1, "estimate")], "cpu", ITEMS_PER_REQUEST)


CHAIN = PipelineChoice(a=StageChoice("a1", 2, 1, 1), b=StageChoice("b1", 4, 1, 1), c=StageChoice("c1", 3, 1, 2))


def test_composed_latency_of_three_stages_is_the_replay_worked_by_hand():
    # Requests at 0, 1 and 2 s. a: items of requests 0 and 1 make a batch ready at 1 s (1.0-1.4 s), request 2's is
    # flushed at 2 s (2.0-2.4). b: 2 items each; requests 0 and 1 fill a batch at 1.4 (1.4-1.6), request 2's two
    # are flushed at 2.4 (2.4-2.6). c: 6 items each, batches of 3 on 2 replicas: requests 0 and 1 make 4 batches
    # at 1.6 (two at 1.6-1.7, two at 1.7-1.8; request 0 holds the first two), request 2 two more at 2.6-2.7.
    arrivals_s = np.array([0.0, 1.0, 2.0])
    leave_s = replay.leave_times_s(replay_stages(CHAIN, constant_table()), arrivals_s)
    assert leave_s.tolist() == pytest.approx([1.7, 1.8, 2.7])
    p50, p99 = latency_s(CHAIN, constant_table(), arrivals_s=arrivals_s)
    assert p50 == pytest.approx(0.8) and p99 == pytest.approx(np.percentile([1.7, 0.8, 0.7], 99))


def test_at_a_trickle_a_request_meets_each_stage_alone():
    # one request at a time: a runs its batch of 1 (0.4 s), b a batch of its 2 items (0.2 s), c its 6 items in 2
    # batches of 3 on its 2 replicas side by side (0.1 s)
    alone = PipelineChoice(a=StageChoice("a1", 1, 1, 1), b=StageChoice("b1", 2, 1, 1), c=StageChoice("c1", 3, 1, 2))
    m = predict(alone, constant_table(), load_rps=0.001, sla_s=1.0, reference_accuracy=REFERENCE,
                price_usd_per_core_hour=0.0)
    assert m["latency_p50_s"] == pytest.approx(0.7) and m["latency_p99_s"] == pytest.approx(0.7)
    # a: 1 / 0.4 = 2.5 req/s; b: 2 / 0.2 / 2 = 5 req/s; c: 2 × 3 / 0.1 / 6 = 10 req/s
    assert m["throughput_rps"] == pytest.approx(2.5)
    assert m["energy_j_per_request"] == pytest.approx(1.0 * 1 + 0.5 * 2 + 0.1 * 6)
    assert m["accuracy_reference"] == pytest.approx(0.6 * 0.7 * 0.5) and m["cost_cores"] == 4


def test_each_stage_draws_its_batch_latencies_by_its_place_in_the_pipeline():
    # c's batches are drawn from a spread, seeded by c's position (2): the composition is the chain of serves
    arrivals_s = np.cumsum(np.random.default_rng(1).exponential(0.3, 200))
    table = constant_table(spread_c=True)
    leave_s = arrivals_s
    for position, (stage, c) in enumerate(CHAIN.stages().items()):
        p = table.get(stage, c.variant, c.batch_size, c.threads)
        leave_s = replay.serve(leave_s, np.full(len(arrivals_s), ITEMS_PER_REQUEST[stage][0]), c.batch_size,
                               c.replicas, p.latency_samples_s, position)
    p50, p99 = latency_s(CHAIN, table, arrivals_s=arrivals_s)
    assert (p50, p99) == (np.percentile(leave_s - arrivals_s, 50), np.percentile(leave_s - arrivals_s, 99))


def test_three_stages_are_profiled_with_their_fan_out_and_cached(tmp_path):
    space = SearchSpace.from_config(space_cfg(a_threads=[1], b_threads=[1], c_threads=[1]), pipeline_cfg(), None)
    workload = Workload({"a": ["frame"], "b": ["part", "part"], "c": ["piece"]}, HANDOFFS)
    builds, batches = [], []

    def build(stage, variant, precision, runtime):
        builds.append((stage, variant))
        return lambda batch: batches.append(list(batch))

    @contextmanager
    def energy_window():  # 1 J above idle per batch
        yield SimpleNamespace(active_j=1.0)

    table = profile_space(space, workload, build, 2, energy_window, "estimate", "cpu", retries=0)
    assert builds == [(s, v) for s in STAGES for v in list(REFERENCE[s])[:2]]
    assert len(table.rows) == 3 * 2 * 2 and table.items_per_request == ITEMS_PER_REQUEST
    assert ["piece", "piece"] in batches and ["frame", "frame"] in batches  # each stage's own items, cycled
    assert table.rows[("c", "c2", 2, 1, "fp32", "torch")].energy_j_per_item == pytest.approx(2 * 1.0 / (2 * 2))
    table.save(tmp_path / "chain.csv")
    loaded = ProfileTable.load(tmp_path / "chain.csv")
    assert loaded.rows == table.rows and loaded.items_per_request == ITEMS_PER_REQUEST
