"""The adapter's options carry precision and runtime: a lower precision is picked where the energy it saves outweighs
the published accuracy it gives up, and not where accuracy's weight dominates (fake profiles)."""

from __future__ import annotations

import pytest
from omegaconf import OmegaConf

from sustainable_ipa.adapt.optimizer import Weights, decide, pipeline_p99_s, stage_options
from sustainable_ipa.metrics.accuracy import option_accuracies
from sustainable_ipa.search.profiles import ProfileTable, StageProfile
from sustainable_ipa.search.space import NUMERICS

CATALOGUE = OmegaConf.create({
    "detector": {"yolov5n": {"reference_accuracy": 45.7}},
    "classifier": {"resnet18": {"reference_accuracy": 69.758, "precision_change": {
        "int8": {"points": -0.29, "basis": "published", "source": "test"}}}}})
SPACE = {"detector": {"variants": ["yolov5n"], "batch_size": [1], "threads": [1], NUMERICS: (("fp32", "torch"),)},
         "classifier": {"variants": ["resnet18"], "batch_size": [4], "threads": [1],
                        NUMERICS: (("fp32", "torch"), ("int8", "openvino"))}}


def profiles() -> ProfileTable:
    """int8 on OpenVINO: as fast as fp32 on torch here (the same latency and cores), a fifth of its energy per crop."""
    return ProfileTable([
        StageProfile("detector", "yolov5n", 1, 1, (0.05,) * 20, 1.0, "estimate"),
        StageProfile("classifier", "resnet18", 4, 1, (0.04,) * 20, 0.5, "estimate"),
        StageProfile("classifier", "resnet18", 4, 1, (0.04,) * 20, 0.1, "estimate", precision="int8",
                     runtime="openvino"),
    ], "cpu", {"detector": (1,), "classifier": (4,)})


def decision(weights: Weights, load_rps: float = 1.0):
    table = profiles()
    options = stage_options(table, SPACE, load_rps, option_accuracies(CATALOGUE))
    return options, decide(options, sla_s=5.0, max_cores=4, w=weights, pipeline_p99_s=pipeline_p99_s(table, load_rps))


def test_options_carry_precision_runtime_and_the_published_accuracy():
    options, _ = decision(Weights())
    by_numerics = {o.choice.numerics: o for o in options["classifier"] if o.choice.replicas == 1}
    assert by_numerics[("int8", "openvino")].accuracy_pct == pytest.approx(69.758 - 0.29)
    assert by_numerics[("fp32", "torch")].accuracy_pct == pytest.approx(69.758)
    assert by_numerics[("int8", "openvino")].power_w == pytest.approx(by_numerics[("fp32", "torch")].power_w / 5)


def test_int8_is_chosen_when_the_energy_it_saves_outweighs_its_published_accuracy_loss():
    # 4 crops/s × 0.4 J saved per crop = 1.6 W at δ = 1 against α·(loss) = 2 × 0.457 × 0.0029 ≈ 0.003
    _, d = decision(Weights(alpha=2.0, beta=1.0, delta=1.0))
    assert d.meets_sla
    assert (d.choice["classifier"].precision, d.choice["classifier"].runtime) == ("int8", "openvino")
    assert d.power_w == pytest.approx(4 * 0.1 + 1 * 1.0)


def test_fp32_is_kept_when_accuracys_weight_dominates_the_energy_saved():
    # α = 10,000: the loss costs 10,000 × 0.457 × 0.0029 ≈ 13 against 1.6 W saved
    _, d = decision(Weights(alpha=10_000.0, beta=1.0, delta=1.0))
    assert d.choice["classifier"].precision == "fp32" and d.choice["classifier"].runtime == "torch"


def test_ipas_objective_without_energy_keeps_the_more_accurate_precision():
    _, d = decision(Weights(alpha=2.0, beta=1.0, delta=0.0))
    assert d.choice["classifier"].precision == "fp32"


def test_the_sum_form_of_accuracy_weighs_the_published_change_as_well():
    _, d = decision(Weights(alpha=2.0, beta=1.0, delta=1.0, accuracy="sum"))
    assert d.choice["classifier"].precision == "int8"
    _, d = decision(Weights(alpha=10_000.0, beta=1.0, delta=1.0, accuracy="sum"))
    assert d.choice["classifier"].precision == "fp32"
