"""Composition arithmetic on hand-made profiles, and the space the study searches."""

import heapq

import numpy as np
import pytest

from sustainable_ipa.config import compose
from sustainable_ipa.errors import UserError
from sustainable_ipa.search import replay
from sustainable_ipa.search.compose import latency_s, predict
from sustainable_ipa.search.objectives import resolve_objectives
from sustainable_ipa.search.profiles import PROFILER_VERSION, ProfileTable, StageProfile
from sustainable_ipa.search.space import PipelineChoice, SearchSpace, StageChoice

REFERENCE = {"detector": {"yolov5n": 45.7}, "classifier": {"resnet18": 69.758}}


def table(detector_b1_s=(0.10,)):
    """Batch latencies as the profiler keeps them: every timed batch (here all alike unless a test says)."""
    rows = [
        StageProfile("detector", "yolov5n", 4, 1, (0.40,) * 20, 2.0, "estimate"),
        StageProfile("detector", "yolov5n", 1, 1, tuple(detector_b1_s), 2.0, "estimate"),
        StageProfile("classifier", "resnet18", 8, 1, (0.20,) * 20, 0.5, "estimate"),
        StageProfile("classifier", "resnet18", 1, 1, (0.05,) * 20, 0.5, "estimate"),
    ]
    return ProfileTable(rows, "cpu", {"detector": (1,), "classifier": (4,)})


def test_prediction_follows_ipa_composition():
    choice = PipelineChoice(detector=StageChoice("yolov5n", 4, 1, 2), classifier=StageChoice("resnet18", 8, 1, 1))
    m = predict(choice, table(), load_rps=5.0, sla_s=5.0, reference_accuracy=REFERENCE, price_usd_per_core_hour=0.036)
    # detector: 2 replicas × 4 / 0.4 s = 20 req/s; classifier: 8 / 0.2 s = 40 crops/s = 10 req/s
    assert m["throughput_rps"] == pytest.approx(10.0)
    # energy per request: 2 J × 1 frame + 0.5 J × 4 crops, replicas do not change it
    assert m["energy_j_per_request"] == pytest.approx(4.0)
    assert m["cost_cores"] == 3 and m["accuracy_reference"] == pytest.approx(0.457 * 0.69758)
    # 3 cores at $0.036/core-hour serve 5 req/s: $0.036 × 3 / 3600 / 5 × 1000 per 1k requests
    assert m["cost_usd_per_1k"] == pytest.approx(0.036 * 3 / 3600 / 5 * 1000)
    assert m["sla_violation_s"] == 0.0 and m["load_shortfall_rps"] == 0.0
    # the first of 4 frames waits for 3 more arrivals (0.6 s on average at 5 req/s), the last for none
    assert 0.4 + 0.2 < m["latency_p50_s"] < m["latency_p99_s"]
    assert "energy_j_per_request_low" not in m  # profiles without a power-model interval: none composed


def test_the_power_models_interval_is_composed_where_every_stage_profile_carries_one():
    from dataclasses import replace

    rows = {k: replace(p, energy_j_per_item_low=p.energy_j_per_item / 2, energy_j_per_item_high=p.energy_j_per_item * 3)
            for k, p in table().rows.items()}
    modelled = ProfileTable(list(rows.values()), "cpu", {"detector": (1,), "classifier": (4,)})
    choice = PipelineChoice(detector=StageChoice("yolov5n", 4, 1, 2), classifier=StageChoice("resnet18", 8, 1, 1))
    m = predict(choice, modelled, load_rps=5.0, sla_s=5.0, reference_accuracy=REFERENCE, price_usd_per_core_hour=0.036)
    assert (m["energy_j_per_request_low"], m["energy_j_per_request"], m["energy_j_per_request_high"]) == \
        pytest.approx((2.0, 4.0, 12.0))
    one_measured = dict(rows)
    key = next(k for k in rows if k[0] == "detector" and k[2] == 4)
    one_measured[key] = replace(rows[key], energy_j_per_item_low=None, energy_j_per_item_high=None)
    mixed = ProfileTable(list(one_measured.values()), "cpu", {"detector": (1,), "classifier": (4,)})
    assert "energy_j_per_request_low" not in predict(choice, mixed, 5.0, 5.0, REFERENCE, 0.036)


@pytest.mark.parametrize("replicas,latency", [(1, 0.10 + 4 * 0.05), (2, 0.10 + 2 * 0.05), (4, 0.10 + 0.05)])
def test_latency_at_a_trickle_is_the_batches_in_a_row(replicas, latency):
    # at 0.01 req/s requests never meet: a frame (0.1 s), then its 4 crops one batch each on `replicas` replicas
    choice = PipelineChoice(detector=StageChoice("yolov5n", 1, 1, 1),
                            classifier=StageChoice("resnet18", 1, 1, replicas))
    m = predict(choice, table(), load_rps=0.01, sla_s=5.0, reference_accuracy=REFERENCE, price_usd_per_core_hour=0.0)
    assert m["latency_p50_s"] == pytest.approx(latency) and m["latency_p99_s"] == pytest.approx(latency)


def test_p50_and_p99_are_percentiles_of_the_replay_not_every_batch_at_its_worst():
    # 1 detector batch in 20 takes 1 s instead of 0.1 s. At a trickle each request meets one detector batch:
    # about 5 % of requests see the slow one, so the p50 stays fast and the p99 is slow. The old model ran every
    # batch at the profile's "p99" (here 0.83 s) and so called the median request slow too.
    choice = PipelineChoice(detector=StageChoice("yolov5n", 1, 1, 1), classifier=StageChoice("resnet18", 1, 1, 1))
    p50, p99 = latency_s(choice, table(detector_b1_s=(0.10,) * 19 + (1.0,)), load_rps=0.01)
    assert p50 == pytest.approx(0.10 + 4 * 0.05) and p99 == pytest.approx(1.0 + 4 * 0.05)


def test_a_trace_is_replayed_start_up_and_final_flush_included():
    # 3 frames at 0, 1, 2 s into detector batches of 4: the queue closes after the third, so the partial batch
    # runs at 2 s (0.4 s); its 12 crops make a batch of 8 (2.4–2.6 s) and a flushed batch of 4 (2.6–2.8 s)
    choice = PipelineChoice(detector=StageChoice("yolov5n", 4, 1, 1), classifier=StageChoice("resnet18", 8, 1, 1))
    p50, p99 = latency_s(choice, table(), arrivals_s=np.array([0.0, 1.0, 2.0]))
    assert p50 == pytest.approx(1.6)  # latencies 2.6, 1.6, 0.8
    assert p99 == pytest.approx(np.percentile([2.6, 1.6, 0.8], 99))


def test_prediction_flags_sla_and_load():
    choice = PipelineChoice(detector=StageChoice("yolov5n", 4, 1, 1), classifier=StageChoice("resnet18", 8, 1, 1))
    m = predict(choice, table(), load_rps=20.0, sla_s=1.0, reference_accuracy=REFERENCE, price_usd_per_core_hour=0.0)
    assert m["load_shortfall_rps"] == pytest.approx(10.0)  # detector serves 10 req/s
    assert m["sla_violation_s"] == pytest.approx(m["latency_p99_s"] - 1.0)
    assert m["latency_p50_s"] > 10  # the queue grows for as long as the load lasts


def test_replay_by_hand():
    # 5, 4, 0 and 3 items into batches of 4 taking 1.5 s: batch 0 = items 0-3 (ready at 0), batch 1 = 4-7
    # (ready when request 1 enters, 0.2), batch 2 = 8-11 (ready at 0.6); request 2 brings nothing
    enter_s, items = np.array([0.0, 0.2, 0.4, 0.6]), np.array([5, 4, 0, 3])
    one = replay.serve(enter_s, items, 4, 1, (1.5,))  # batches run 0-1.5, 1.5-3.0, 3.0-4.5
    assert one.tolist() == pytest.approx([3.0, 4.5, 0.4, 4.5])
    two = replay.serve(enter_s, items, 4, 2, (1.5,))  # 0-1.5 and 0.2-1.7 side by side, then 1.5-3.0
    assert two.tolist() == pytest.approx([1.7, 3.0, 0.4, 3.0])


def event_simulation(enter_s, items, batch_size, replicas, batch_s):
    """The runner's rules played out one batch at a time: items queue in the order they enter (a request's items
    together), a batch is taken when full (the last one at the end), each batch on the first free replica, and a
    request is done when all its items are."""
    stream = sorted(((t, r) for r, (t, n) in enumerate(zip(enter_s, items)) for _ in range(n)), key=lambda x: x[0])
    batches = [stream[i:i + batch_size] for i in range(0, len(stream), batch_size)]
    free, done = [0.0] * replicas, {}
    for batch, service_s in zip(batches, batch_s):
        finish = max(batch[-1][0], heapq.heappop(free)) + service_s
        heapq.heappush(free, finish)
        for _, r in batch:
            done[r] = max(done.get(r, 0.0), finish)
    return [done.get(r, t) for r, t in enumerate(enter_s)]


@pytest.mark.parametrize("seed", range(12))
def test_replay_equals_an_event_simulation(seed):
    # even seeds: every batch alike (the closed form per replica); odd: drawn from a spread of latencies; from
    # seed 4 on the requests enter out of order, as they reach a stage behind replicas of unequal batch times
    rng = np.random.default_rng(seed)
    enter_s = np.cumsum(rng.exponential(0.3, 300))
    if seed >= 4:
        enter_s = enter_s + rng.uniform(0, 2.0, 300)
    items = rng.integers(0, 7, 300)
    batch_size, replicas = int(rng.integers(1, 9)), int(rng.integers(1, 4))
    samples_s = tuple(rng.uniform(0.1, 1.0, 1 if seed % 2 == 0 else 20))
    drawn_s = replay.batch_latencies_s(samples_s, -(-int(items.sum()) // batch_size), position=0)
    assert replay.serve(enter_s, items, batch_size, replicas, samples_s).tolist() == \
        pytest.approx(event_simulation(enter_s, items, batch_size, replicas, drawn_s))


def test_behind_replicas_of_unequal_batch_times_no_request_leaves_before_it_enters():
    # two detector replicas whose batches take 0.1 s or 2 s: later frames overtake earlier ones into the classifier
    rng = np.random.default_rng(0)
    arrivals_s = np.cumsum(rng.exponential(0.5, 400))
    detector = ((1,), 1, 2, (0.1,) * 10 + (2.0,) * 10)
    classifier = ((3,), 4, 1, (0.2,) * 20)
    after_detector = replay.leave_times_s((detector,), arrivals_s)
    assert np.any(np.diff(after_detector) < 0)  # the overtaking this test is about does happen
    leave_s = replay.leave_times_s((detector, classifier), arrivals_s)
    assert np.all(leave_s >= after_detector) and np.all(after_detector >= arrivals_s)
    drawn_s = replay.batch_latencies_s(classifier[3], -(-3 * 400 // 4), position=1)
    assert leave_s.tolist() == pytest.approx(event_simulation(after_detector, np.full(400, 3), 4, 1, drawn_s))


def test_a_missing_profile_names_the_fix():
    choice = PipelineChoice(detector=StageChoice("yolov5n", 2, 1, 1), classifier=StageChoice("resnet18", 8, 1, 1))
    with pytest.raises(UserError, match="no profile for detector yolov5n batch 2"):
        predict(choice, table(), 1.0, 1.0, REFERENCE, 0.0)


def test_profile_table_round_trips_through_csv(tmp_path):
    from dataclasses import replace

    table().save(tmp_path / "p.csv")
    loaded = ProfileTable.load(tmp_path / "p.csv")
    assert loaded.rows == table().rows and loaded.items_per_request == {"detector": (1,), "classifier": (4,)}
    # with the estimate's power-model interval, exactly (a profile without one keeps None)
    rows = [replace(p, energy_j_per_item_low=p.energy_j_per_item / 3, energy_j_per_item_high=p.energy_j_per_item * 1.7)
            for p in table().rows.values()]
    ProfileTable(rows, "cpu", {"detector": (1,), "classifier": (4,)}).save(tmp_path / "m.csv")
    assert list(ProfileTable.load(tmp_path / "m.csv").rows.values()) == rows


def test_a_missing_profile_cache_names_the_profiling_job(tmp_path):
    with pytest.raises(UserError, match=r"no stage profiles at .*python src/profiling.py"):
        ProfileTable.load(tmp_path / "cpu.csv")


def test_a_profile_cache_of_an_older_profiler_names_the_refresh(tmp_path):
    path = tmp_path / "p.csv"
    table().save(path)
    header, *rows = path.read_text().splitlines()
    assert header.startswith("profiler_version,")
    path.write_text("\n".join(line.split(",", 1)[1] for line in [header, *rows]) + "\n")  # as version 1 wrote it
    with pytest.raises(UserError, match=rf"measured by profiler version 1, this one is {PROFILER_VERSION}.*profiling.refresh=true"):
        ProfileTable.load(path)


def test_a_profile_cache_of_version_3_without_precision_and_runtime_is_not_read(tmp_path):
    """Version 3 measured every stage in fp32 on torch and keyed rows without the numerics: refused, not read as
    fp32/torch rows of this version."""
    path = tmp_path / "p.csv"
    table().save(path)
    header, *rows = path.read_text().splitlines()
    columns = header.split(",")
    drop = [columns.index("precision"), columns.index("runtime")]
    old = [",".join(v for i, v in enumerate(line.split(",")) if i not in drop) for line in [header, *rows]]
    old = [old[0]] + [line.replace(f"{PROFILER_VERSION},", "3,", 1) for line in old[1:]]
    path.write_text("\n".join(old) + "\n")
    with pytest.raises(UserError, match=rf"measured by profiler version 3, this one is {PROFILER_VERSION}"):
        ProfileTable.load(path)


def test_the_profile_key_holds_precision_and_runtime(tmp_path):
    rows = [StageProfile("classifier", "resnet18", 8, 1, (0.20,) * 20, 0.5, "estimate"),
            StageProfile("classifier", "resnet18", 8, 1, (0.05,) * 20, 0.1, "estimate", precision="int8",
                         runtime="openvino")]
    t = ProfileTable(rows, "cpu", {"detector": (1,), "classifier": (4,)})
    assert set(t.rows) == {("classifier", "resnet18", 8, 1, "fp32", "torch"),
                           ("classifier", "resnet18", 8, 1, "int8", "openvino")}
    t.save(tmp_path / "p.csv")
    loaded = ProfileTable.load(tmp_path / "p.csv")
    assert loaded.get("classifier", "resnet18", 8, 1, "int8", "openvino").energy_j_per_item == 0.1
    assert loaded.get("classifier", "resnet18", 8, 1).energy_j_per_item == 0.5  # fp32 on torch by default
    with pytest.raises(UserError, match="no profile for classifier resnet18 batch 8 threads 1 bf16/torch"):
        loaded.get("classifier", "resnet18", 8, 1, "bf16", "torch")


def test_a_profile_cache_of_another_dataset_names_the_refresh(tmp_path):
    from sustainable_ipa.fingerprint import this_machine
    from sustainable_ipa.search.profiler import cache_path
    from sustainable_ipa.search.profiling_job import profile_job

    cfg = compose([f"profiling.cache_dir={tmp_path}"])
    cached = table()
    cached.fingerprint = this_machine().key  # measured here, on another dataset: 4 crops per frame; the sample has 5, 4
    cached.save(cache_path(cfg.profiling.cache_dir, cfg.hardware.name, this_machine()))
    with pytest.raises(UserError, match=r"other classifier items per request \(4\) than dataset 'sample' \(5 4\)"):
        profile_job(cfg)


def space_cfg(changes=None):
    cfg = compose()
    space = {"detector": {"variants": ["yolov5n", "yolov5s"], "batch_size": [1, 2], "threads": [1], "replicas": [1, 2]},
             "classifier": {"variants": ["resnet18"], "batch_size": [4], "threads": [1], "replicas": [1]}}
    for (stage, key), value in (changes or {}).items():
        space[stage][key] = value
    from omegaconf import OmegaConf

    return OmegaConf.create(space), cfg.pipeline


def test_space_enumerates_choices_within_the_core_budget():
    space = SearchSpace.from_config(*space_cfg(), max_cores=2)
    assert len(space.all_choices(check_cores=False)) == 8
    assert all(c.cores <= 2 for c in space.all_choices()) and len(space.all_choices()) == 4


@pytest.mark.parametrize("change,problem", [
    ({("detector", "variants"): []}, "search.space.detector.variants is empty"),
    ({("classifier", "variants"): ["resnet9"]}, "unknown resnet9"),
    ({("detector", "batch_size"): [0, 2]}, "non-positive"),
])
def test_bad_spaces_are_one_clear_line(change, problem):
    with pytest.raises(UserError, match=problem):
        SearchSpace.from_config(*space_cfg(change), max_cores=None)


def test_a_space_that_cannot_fit_the_cores():
    with pytest.raises(UserError, match="no configuration of search.space fits in 1 cores"):
        SearchSpace.from_config(*space_cfg(), max_cores=1)


def test_objectives():
    assert [o.direction for o in resolve_objectives(["accuracy", "energy_per_request", "cost"])] == \
        ["maximize", "minimize", "minimize"]
    with pytest.raises(UserError, match="unknown objective joy"):
        resolve_objectives(["accuracy", "joy"])


def test_profiling_builds_each_model_once_and_times_its_profiles_round_after_round():
    from contextlib import contextmanager
    from types import SimpleNamespace

    from sustainable_ipa.data import load_dataset
    from sustainable_ipa.families import stage_families
    from sustainable_ipa.search.profiler import missing_profiles, profile_space
    from sustainable_ipa.search.workload import pipeline_workload

    cfg = compose()
    space = SearchSpace.from_config(*space_cfg({("detector", "variants"): ["yolov5n"],
                                                ("classifier", "batch_size"): [2, 4]}), max_cores=None)
    builds, batches = [], []

    def build(stage, variant, precision, runtime):
        builds.append((stage, variant))
        return lambda batch: None

    @contextmanager
    def energy_window():  # 1 J above idle per batch
        yield SimpleNamespace(active_j=1.0)

    table = profile_space(space, pipeline_workload(stage_families(cfg.pipeline), load_dataset(cfg.dataset)), build, 3, energy_window, "estimate", "cpu",
                          on_batch=lambda key, _s, _timed: batches.append(key), retries=0)
    assert builds == [("detector", "yolov5n"), ("classifier", "resnet18")]
    # one model at a time; its profiles round after round (a warm-up round + 3 timed rounds), one batch each in turn
    keys = missing_profiles(space, None)
    detector, classifier = [k for k in keys if k[0] == "detector"], [k for k in keys if k[0] == "classifier"]
    assert batches == detector * (3 + 1) + classifier * (3 + 1) and len(set(batches)) == 4
    assert table.rows[("classifier", "resnet18", 4, 1, "fp32", "torch")].energy_j_per_item == pytest.approx(3 * 1.0 / (3 * 4))
    assert table.items_per_request == {"detector": (1,), "classifier": (5, 4)}  # bus.jpg, zidane.jpg
