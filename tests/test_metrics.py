"""Metric definitions on hand-made inputs."""

import json

import numpy as np
import pytest

from sustainable_ipa.config import PROJECT_ROOT
from sustainable_ipa.families.resnet import coco_to_imagenet, mapped_top1
from sustainable_ipa.metrics.accuracy import coco_map, pipeline_accuracy
from sustainable_ipa.metrics.cost import cost_cores, cost_usd_per_1k
from sustainable_ipa.metrics.latency import latency_percentiles_s, sla_attainment, throughput_rps
from sustainable_ipa.metrics.record import aggregate
from sustainable_ipa.metrics.stats import (NON_NEGATIVE, PROPORTION, UNBOUNDED, domain, mean_interval,
                                           metric_interval)

SAMPLE_GT = PROJECT_ROOT / "data" / "sample" / "instances.json"


def test_latency_percentiles_interpolate_between_order_statistics():
    lat = np.arange(1, 101, dtype=float)  # 1 … 100 s
    p = latency_percentiles_s(lat)
    assert p["latency_mean_s"] == pytest.approx(50.5)
    assert p["latency_p50_s"] == pytest.approx(50.5)
    assert p["latency_p95_s"] == pytest.approx(95.05)
    assert p["latency_p99_s"] == pytest.approx(99.01)


def test_sla_attainment_counts_requests_within_the_sla_inclusive():
    assert sla_attainment(np.array([0.5, 1.0, 1.5, 3.0]), 1.0) == 0.5


def test_throughput_spans_first_arrival_to_last_finish():
    assert throughput_rps(np.array([0.0, 1.0, 2.0, 3.0]), np.array([1.0, 2.0, 3.0, 4.0])) == pytest.approx(1.0)


def test_pipeline_accuracy_is_the_product_of_stage_fractions():
    assert pipeline_accuracy([56.8, 76.13]) == pytest.approx(0.568 * 0.7613)
    assert pipeline_accuracy([100.0, 100.0]) == 1.0


def test_cost():
    assert cost_cores([(2, 3), (1, 4)]) == 10
    # 4 cores × 0.5 h × $0.04 per core-hour = $0.08 for 200 requests → $0.40 per 1k
    assert cost_usd_per_1k(0.04, 4, 1800.0, 200) == pytest.approx(0.40)


def _ground_truth_as_results(shift_px: float = 0.0):
    doc = json.loads(SAMPLE_GT.read_text())
    return [{"image_id": a["image_id"], "category_id": a["category_id"], "score": 0.9,
             "bbox": [a["bbox"][0] + shift_px, a["bbox"][1] + shift_px, a["bbox"][2], a["bbox"][3]]}
            for a in doc["annotations"]]


def test_map_is_one_when_predictions_equal_ground_truth():
    map50, map50_95 = coco_map(SAMPLE_GT, [1, 2], _ground_truth_as_results())
    assert map50 == pytest.approx(1.0) and map50_95 == pytest.approx(1.0)


def test_map_drops_when_boxes_shift():
    exact = coco_map(SAMPLE_GT, [1, 2], _ground_truth_as_results())
    shifted = coco_map(SAMPLE_GT, [1, 2], _ground_truth_as_results(shift_px=30))
    assert shifted[1] < exact[1]
    assert shifted[0] <= exact[0]


def test_map_is_zero_without_detections():
    assert coco_map(SAMPLE_GT, [1, 2], []) == (0.0, 0.0)


def test_coco_to_imagenet_names_exist_in_torchvision_categories():
    from torchvision.models import ResNet18_Weights

    categories = set(ResNet18_Weights.IMAGENET1K_V1.meta["categories"])
    coco = {c["name"] for c in json.loads(SAMPLE_GT.read_text())["categories"]}
    for coco_name, imagenet_names in coco_to_imagenet().items():
        assert coco_name in coco
        assert set(imagenet_names) <= categories, coco_name


def test_mapped_top1_scores_only_mapped_categories():
    names = ["school bus", "Windsor tie", "tabby"]
    # bus → school bus (hit), tie → tabby (miss), person → not scored
    top1, n = mapped_top1(["bus", "tie", "person"], [0, 2, 1], names)
    assert (top1, n) == (0.5, 2)


def test_the_interval_of_the_mean_is_student_t_where_it_stays_inside_the_possible():
    interval = mean_interval([1.0, 2.0, 3.0])
    assert interval.mean == 2.0 and interval.n == 3
    # t(0.975, df=2) = 4.3027; sem = 1/sqrt(3)
    assert interval.high - interval.mean == pytest.approx(4.302653 / np.sqrt(3), rel=1e-5)
    assert interval.mean - interval.low == pytest.approx(interval.high - interval.mean)


@pytest.mark.parametrize("metric,values,low,high", [
    # the cases: 3 repetitions whose t interval leaves the possible
    ("latency_p99_s", [0.5, 0.6, 10.8], 0.0, None),
    ("energy_j_total", [5.0, 6.0, 800.0], 0.0, None),
    ("cost_usd_per_1k", [0.001, 0.002, 0.09], 0.0, None),
    ("sla_attainment", [0.7, 1.0, 1.0], None, 1.0),
    ("accuracy_reference", [0.0, 0.0, 0.3], 0.0, None),
    ("emissions_g_per_1k", [0.1, 0.1, 9.0], 0.0, None),
    # a difference may be negative: left as it is
    ("energy_saved_fraction_vs_ipa", [-1.0, 0.5, 3.0], None, None),
])
def test_an_interval_never_leaves_the_values_its_metric_can_take(metric, values, low, high):
    interval = metric_interval(metric, values)
    raw = mean_interval(values)
    assert interval.low == (low if low is not None else raw.low)
    assert interval.high == (high if high is not None else raw.high)
    if low is not None:
        assert raw.low < low  # the cut mattered
    if high is not None:
        assert raw.high > high


@pytest.mark.parametrize("values,text", [
    ([], "too few (n = 0)"), ([5.0], "too few (n = 1)"), ([5.0, 7.0], "too few (n = 2)"),
    ([4.0, 4.0, 4.0], "4 … 4"),  # all equal: no spread, no width
    ([1.0, 1.0, 1.0, float("nan")], "1 … 1"),  # a missing value is not a sample
])
def test_too_few_values_say_so_instead_of_an_interval(values, text):
    assert metric_interval("latency_p99_s", values).text() == text


@pytest.mark.parametrize("metric,values", [("sla_attainment", [0.0, 0.0, 0.0]), ("sla_attainment", [1.0, 1.0, 1.0]),
                                           ("sla_attainment", [0.0, 1.0, 1.0, 1.0]),
                                           ("accuracy_reference", [0.0, 0.02, 0.0])])
def test_a_proportion_at_0_or_1_keeps_its_interval_within_0_and_1(metric, values):
    interval = metric_interval(metric, values)
    assert 0.0 <= interval.low <= interval.mean <= interval.high <= 1.0


def test_each_metric_the_record_keeps_has_the_domain_its_unit_says():
    assert domain("latency_p99_s") == domain("energy_j_per_request") == domain("power_w_mean") == NON_NEGATIVE
    assert domain("throughput_rps") == domain("cost_cores") == domain("sla_violation_s") == NON_NEGATIVE
    assert domain("sla_attainment") == domain("accuracy_measured") == domain("fidelity_classifier_top1_agreement") \
        == PROPORTION
    assert domain("energy_saved_fraction_vs_ipa") == domain("fidelity_classifier_logit_cosine") == UNBOUNDED
    assert domain("codecarbon_to_ours_ratio") == UNBOUNDED  # a ratio of two meters: above 1 as often as below


def test_aggregate_logs_mean_and_ci_per_metric():
    out = aggregate([{"latency_p99_s": 1.0}, {"latency_p99_s": 3.0}, {"latency_p99_s": 2.0}])
    assert out["latency_p99_s_mean"] == 2.0
    assert out["latency_p99_s_ci95_low"] < 2.0 < out["latency_p99_s_ci95_high"]


def test_the_record_and_the_console_keep_intervals_inside_the_possible_and_say_when_there_are_too_few():
    from rich.console import Console

    from sustainable_ipa.experiment import summary_table

    reps = [{"latency_p99_s": p99, "sla_attainment": share} for p99, share in [(0.5, 0.7), (0.6, 1.0), (10.8, 1.0)]]
    three = aggregate(reps)
    assert three["latency_p99_s_ci95_low"] == 0.0 and three["sla_attainment_ci95_high"] == 1.0
    two = aggregate(reps[:2])
    assert "latency_p99_s_ci95_low" not in two and two["latency_p99_s_mean"] == pytest.approx(0.55)
    console = Console(record=True, width=200)
    console.print(summary_table("default", two, 2, "random"))
    console.print(summary_table("default", three, 3, "random"))
    text = console.export_text()
    assert "too few (n = 2)" in text and "0 … " in text and "… 1 " in text
    assert "-" not in "".join(line.split("│")[-2] for line in text.splitlines() if line.count("│") >= 3)


def test_the_console_shows_the_power_models_range_beside_a_modelled_figure_and_says_it_is_not_measured():
    from rich.console import Console

    from sustainable_ipa.experiment import summary_table

    reps = [{"energy_j_per_request": e, "energy_j_per_request_low": e * 0.8, "energy_j_per_request_high": e * 1.5}
            for e in (1.0, 1.2, 1.1)]
    console = Console(record=True, width=200)
    console.print(summary_table("default", aggregate(reps), 3, "random"))
    console.print(summary_table("default", reps[0], 1, "random"))
    text = console.export_text()
    assert "model range" in text and "0.88 … 1.65" in text and "0.8 … 1.5" in text
    assert " ".join(text.split()).count("by a power model") == 2  # the caption wraps
