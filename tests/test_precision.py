"""Precision as a stage knob: bf16 through torch.autocast, gated on the CPU's flags, with its fidelity to fp32."""

from __future__ import annotations

import cv2
import pytest
import torch
from ultralytics.utils import ASSETS

from helpers import runs_by_status
from sustainable_ipa.errors import UserError
from sustainable_ipa.fingerprint import Fingerprint, this_machine
from sustainable_ipa.models.classifier import Classifier
from sustainable_ipa.models.detector import Detector
from sustainable_ipa.models.fidelity import classifier_fidelity, detector_fidelity
from sustainable_ipa.models.precision import emulated_stages

AMD = Fingerprint("AMD EPYC", ("avx2", "avx512f", "avx512_vnni", "avx512_bf16"), 2)
INTEL_AMX = Fingerprint("Intel Xeon", ("avx2", "avx512f", "amx_bf16", "amx_int8"), 2)
OLD = Fingerprint("Intel Xeon E5", ("avx2",), 2)


def frames():
    return [cv2.imread(str(ASSETS / "bus.jpg")), cv2.imread(str(ASSETS / "zidane.jpg"))]


def crops():
    return [f[i * 50:i * 50 + 200, i * 60:i * 60 + 180] for f in frames() for i in range(4)]


def test_bf16_runs_where_the_cpu_has_it_and_is_refused_or_tagged_where_not():
    assert emulated_stages({"detector": "bf16", "classifier": "fp32"}, AMD, allow_emulated=False) == []
    assert emulated_stages({"detector": "bf16"}, INTEL_AMX, allow_emulated=False) == []
    with pytest.raises(UserError) as err:
        emulated_stages({"detector": "fp32", "classifier": "bf16"}, OLD, allow_emulated=False)
    line = str(err.value)
    assert "adaptation.classifier.precision=bf16 needs avx512_bf16 or amx_bf16" in line and "\n" not in line
    assert "hardware.allow_emulated=true" in line and "adaptation.classifier.precision=fp32" in line
    assert emulated_stages({"detector": "bf16", "classifier": "bf16"}, OLD, allow_emulated=True) == \
        ["detector", "classifier"]


def test_bf16_classifier_agrees_with_fp32_and_a_broken_input_path_would_show():
    torch.manual_seed(0)
    low = Classifier("resnet18", None, 224, "cpu", "bf16")
    fidelity = classifier_fidelity(low, crops())
    assert fidelity["fidelity_classifier_top1_agreement"] == 1.0
    assert fidelity["fidelity_classifier_logit_cosine_mean"] >= 0.999
    assert fidelity["fidelity_classifier_items"] == 8

    class MisNormalised(Classifier):  # an input path that forgot part of the normalisation, in bf16 only
        def logits(self, x):
            return super().logits(x + 2.0 if self.precision == "bf16" else x)

    broken = MisNormalised("resnet18", None, 224, "cpu", "bf16")
    broken.model = low.model
    assert classifier_fidelity(broken, crops())["fidelity_classifier_logit_cosine_mean"] < 0.99


def test_bf16_detector_runs_in_bf16_and_stays_close_to_fp32():
    torch.manual_seed(0)
    low = Detector("yolov5n", None, 640, device="cpu", precision="bf16")
    x = low.preprocess(frames()[:1])
    from sustainable_ipa.models.fidelity import fp32_twin

    assert not torch.equal(low.infer(x), fp32_twin(low).infer(x))  # autocast took effect: bf16 rounding shows
    fidelity = detector_fidelity(low, frames())
    assert fidelity["fidelity_detector_box_cosine_mean"] >= 0.999
    assert fidelity["fidelity_detector_score_cosine_mean"] >= 0.999


def test_a_bf16_adaptation_runs_end_to_end_and_records_its_fidelity(make_cfg, client):
    from sustainable_ipa.experiment import run_job

    native = any(flag in this_machine().flags for flag in ("avx512_bf16", "amx_bf16"))
    outcome = run_job(make_cfg("adaptation=default-bf16", "trial.requests=2", "trial.warmup=0",
                               f"hardware.allow_emulated={str(not native).lower()}"))
    run = client.get_run(outcome.run_id)
    assert run.info.status == "FINISHED"
    assert run.data.params["adaptation.detector.precision"] == "bf16"
    assert run.data.params["adaptation.classifier.precision"] == "bf16"
    assert run.data.metrics["fidelity_classifier_logit_cosine_mean"] >= 0.999
    assert run.data.metrics["fidelity_detector_score_cosine_mean"] >= 0.999
    assert run.data.tags["machine"] == this_machine().key
    assert run.data.tags.get("emulated") == (None if native else "true")


def test_a_precision_the_cpu_lacks_is_refused_before_any_run(make_cfg, client, monkeypatch):
    from sustainable_ipa import experiment

    monkeypatch.setattr(experiment, "this_machine", lambda: OLD)
    with pytest.raises(UserError, match="needs avx512_bf16 or amx_bf16"):
        experiment.run_job(make_cfg("adaptation=default-bf16"))
    assert not runs_by_status(client, "RUNNING") and not runs_by_status(client, "FINISHED")
