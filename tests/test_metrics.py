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
from sustainable_ipa.metrics.stats import mean_ci95

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


def test_mean_ci95_matches_student_t():
    mean, low, high = mean_ci95([1.0, 2.0, 3.0])
    assert mean == 2.0
    # t(0.975, df=2) = 4.3027; sem = 1/sqrt(3)
    assert high - mean == pytest.approx(4.302653 / np.sqrt(3), rel=1e-5)
    assert mean - low == pytest.approx(high - mean)
    assert np.isnan(mean_ci95([5.0])[1])


def test_aggregate_logs_mean_and_ci_per_metric():
    out = aggregate([{"latency_p99_s": 1.0}, {"latency_p99_s": 3.0}])
    assert out["latency_p99_s_mean"] == 2.0
    assert out["latency_p99_s_ci95_low"] < 2.0 < out["latency_p99_s_ci95_high"]
