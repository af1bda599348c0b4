"""Composition arithmetic on hand-made profiles, and the space the study searches."""

import pytest

from sustainable_ipa.config import compose
from sustainable_ipa.errors import UserError
from sustainable_ipa.search.compose import predict
from sustainable_ipa.search.objectives import resolve_objectives
from sustainable_ipa.search.profiles import ProfileTable, StageProfile
from sustainable_ipa.search.space import PipelineChoice, SearchSpace, StageChoice

REFERENCE = {"detector": {"yolov5n": 45.7}, "classifier": {"resnet18": 69.758}}


def table():
    rows = [
        StageProfile("detector", "yolov5n", 4, 1, 0.40, 0.50, 10.0, 2.0, "estimate"),
        StageProfile("classifier", "resnet18", 8, 1, 0.20, 0.30, 40.0, 0.5, "estimate"),
    ]
    return ProfileTable(rows, "cpu", {"detector": 1.0, "classifier": 4.0})


def test_prediction_follows_ipa_composition():
    choice = PipelineChoice(StageChoice("yolov5n", 4, 1, 2), StageChoice("resnet18", 8, 1, 1))
    m = predict(choice, table(), load_rps=5.0, sla_s=2.0, reference_accuracy=REFERENCE, price_usd_per_core_hour=0.036)
    # detector: 2 replicas × 4 / 0.4 s = 20 req/s; classifier: 8 / 0.2 s = 40 crops/s = 10 req/s
    assert m["throughput_rps"] == pytest.approx(10.0)
    # waits for a full batch: detector (4 − 1) / 5 = 0.6 s; classifier: 4 crops per request fill 8 in 2 requests,
    # (8 / 4 − 1) / 5 = 0.2 s
    # waits for a replica (M/D/1 on batches): detector S = 0.4 / 2 = 0.2 s, ρ = 5 / 4 × 0.2 = 0.25 →
    # 0.25 × 0.2 / 1.5; classifier S = 0.2 s, ρ = 20 / 8 × 0.2 = 0.5 → 0.5 × 0.2 / 1
    queue = 0.25 * 0.2 / 1.5 + 0.5 * 0.2 / 1.0
    assert m["latency_p99_s"] == pytest.approx(0.5 + 0.6 + 0.3 + 0.2 + queue)
    assert m["latency_p50_s"] == pytest.approx(0.4 + 0.3 + 0.2 + 0.1 + queue)  # half the batch wait on average
    # energy per request: 2 J × 1 frame + 0.5 J × 4 crops, replicas do not change it
    assert m["energy_j_per_request"] == pytest.approx(4.0)
    assert m["cost_cores"] == 3 and m["accuracy_reference"] == pytest.approx(0.457 * 0.69758)
    # 3 cores at $0.036/core-hour serve 5 req/s: $0.036 × 3 / 3600 / 5 × 1000 per 1k requests
    assert m["cost_usd_per_1k"] == pytest.approx(0.036 * 3 / 3600 / 5 * 1000)
    assert m["sla_violation_s"] == 0.0 and m["load_shortfall_rps"] == 0.0


def test_prediction_flags_sla_and_load():
    choice = PipelineChoice(StageChoice("yolov5n", 4, 1, 1), StageChoice("resnet18", 8, 1, 1))
    m = predict(choice, table(), load_rps=20.0, sla_s=1.0, reference_accuracy=REFERENCE, price_usd_per_core_hour=0.0)
    assert m["load_shortfall_rps"] == pytest.approx(10.0)  # detector serves 10 req/s
    assert m["sla_violation_s"] == pytest.approx(m["latency_p99_s"] - 1.0)


def test_a_missing_profile_names_the_fix():
    choice = PipelineChoice(StageChoice("yolov5n", 2, 1, 1), StageChoice("resnet18", 8, 1, 1))
    with pytest.raises(UserError, match="no profile for detector yolov5n batch 2"):
        predict(choice, table(), 1.0, 1.0, REFERENCE, 0.0)


def test_profile_table_round_trips_through_csv(tmp_path):
    table().save(tmp_path / "p.csv")
    loaded = ProfileTable.load(tmp_path / "p.csv")
    assert loaded.rows == table().rows and loaded.items_per_request == {"detector": 1.0, "classifier": 4.0}


def space_cfg(changes=None):
    cfg = compose()
    space = {"detector": {"variants": ["yolov5n", "yolov5s"], "batch_size": [1, 2], "threads": [1], "replicas": [1, 2]},
             "classifier": {"variants": ["resnet18"], "batch_size": [4], "threads": [1], "replicas": [1]}}
    for (stage, key), value in (changes or {}).items():
        space[stage][key] = value
    from omegaconf import OmegaConf

    return OmegaConf.create(space), cfg.pipeline.variants


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
