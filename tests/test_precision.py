"""Precision as a stage knob: bf16 through torch.autocast, gated on the CPU's flags, with its fidelity to fp32."""

from __future__ import annotations

import os
from pathlib import Path

import cv2
import pytest
import torch
from ultralytics.utils import ASSETS

from helpers import runs_by_status
from sustainable_ipa.errors import UserError
from sustainable_ipa.fingerprint import Fingerprint, this_machine
from sustainable_ipa.families.resnet import Classifier
from sustainable_ipa.families.yolov5 import Detector
from sustainable_ipa.families.resnet import classifier_fidelity
from sustainable_ipa.families.yolov5 import detector_fidelity
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
    assert fidelity["top1_agreement"] == 1.0
    assert fidelity["logit_cosine_mean"] >= 0.999
    assert fidelity["items"] == 8

    class MisNormalised(Classifier):  # an input path that forgot part of the normalisation, in bf16 only
        def logits(self, x):
            return super().logits(x + 2.0 if self.precision == "bf16" else x)

    broken = MisNormalised("resnet18", None, 224, "cpu", "bf16")
    broken.model = low.model
    assert classifier_fidelity(broken, crops())["logit_cosine_mean"] < 0.99


def test_bf16_detector_runs_in_bf16_and_stays_close_to_fp32():
    torch.manual_seed(0)
    low = Detector("yolov5n", None, 640, device="cpu", precision="bf16")
    x = low.preprocess(frames()[:1])
    from sustainable_ipa.models.fidelity import fp32_twin

    assert not torch.equal(low.infer(x), fp32_twin(low).infer(x))  # autocast took effect: bf16 rounding shows
    fidelity = detector_fidelity(low, frames())
    assert fidelity["box_cosine_mean"] >= 0.999
    assert fidelity["score_cosine_mean"] >= 0.999


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


# int8 and the OpenVINO runtime (the classifier's) ------------------------------------------------------------
@pytest.fixture(scope="module")
def export_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("exports")


def resnet18(precision: str) -> Classifier:
    torch.manual_seed(0)  # the same random weights every time: the same export key
    return Classifier("resnet18", None, 224, "cpu", precision)


def test_an_export_is_made_once_reused_and_remade_when_a_library_changes(export_dir, monkeypatch):
    from sustainable_ipa.models import openvino_runtime

    first = resnet18("int8").use_openvino(export_dir, crops())
    again = resnet18("int8").use_openvino(export_dir, crops())
    assert not first.cached and first.cpu_s > 0 and again.cached and again.xml == first.xml
    assert again.key.calibration_items == 1 and again.key.precision == "int8"  # 8 crops: one batch
    versions = openvino_runtime.library_versions()
    monkeypatch.setattr(openvino_runtime, "library_versions", lambda: {**versions, "nncf": "0.0.1"})
    other = resnet18("int8").use_openvino(export_dir, crops())
    assert not other.cached and other.xml != first.xml
    torch.manual_seed(1)  # other weights: another key (not exported here: the key alone decides)
    assert openvino_runtime.weights_digest(Classifier("resnet18", None, 224, "cpu", "int8").model) != first.key.weights


def test_int8_on_openvino_stays_close_to_fp32_and_a_broken_input_path_would_show(export_dir, monkeypatch):
    low = resnet18("int8")
    low.use_openvino(export_dir, crops())
    fidelity = classifier_fidelity(low, crops())
    assert fidelity["top1_agreement"] == 1.0
    assert fidelity["logit_cosine_mean"] >= 0.999
    compiled = low._openvino
    low._openvino = lambda x: compiled(x + 2.0)  # an export fed a mis-normalised input
    assert classifier_fidelity(low, crops())["logit_cosine_mean"] < 0.99


def test_int8_needs_vnni_or_amx():
    with pytest.raises(UserError, match="adaptation.classifier.precision=int8 needs avx512_vnni or avx_vnni or amx_int8"):
        emulated_stages({"classifier": "int8"}, OLD, allow_emulated=False)
    assert emulated_stages({"classifier": "int8"}, AMD, allow_emulated=False) == []


@pytest.mark.parametrize("overrides,problem", [
    (["adaptation.classifier.precision=int8"], "precision=int8 runs on OpenVINO"),
    (["adaptation.detector.precision=int8"], "adaptation.detector.precision=int8 runs on OpenVINO"),
    (["adaptation.classifier.runtime=onnx"], "adaptation.classifier.runtime='onnx' is not allowed"),
    (["adaptation.classifier.precision=fp8"], "adaptation.classifier.precision='fp8' is not allowed"),
])
def test_knob_combinations_that_cannot_run_are_one_line(overrides, problem):
    from sustainable_ipa.config import compose, validate

    with pytest.raises(UserError, match=problem) as err:
        validate(compose(["hardware.cores=2", *overrides]))
    assert "\n" not in str(err.value) and "Fix:" in str(err.value)


def test_a_failed_export_is_one_line_and_leaves_no_cache_entry(tmp_path, monkeypatch):
    import openvino

    def half_written(model, path, *args, **kwargs):  # the IR's first file lands, then the disk fills
        Path(path).write_text("<?xml")
        raise RuntimeError("disk full")

    monkeypatch.setattr(openvino, "convert_model", lambda *args, **kwargs: object())  # skip the slow trace
    monkeypatch.setattr(openvino, "save_model", half_written)
    with pytest.raises(UserError, match="exporting resnet18 to OpenVINO fp32 failed: RuntimeError: disk full"):
        resnet18("fp32").use_openvino(tmp_path, crops())
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(UserError, match="needs calibration inputs"):
        resnet18("int8").use_openvino(tmp_path, [])


# The detector on OpenVINO: ultralytics' export, quantised by NNCF with the head in float ----------------------------
def yolov5n(precision: str, informative: bool = True) -> Detector:
    """yolov5n with fixed random weights. `informative`: variance-preserving convolutions without biases, so that
    the head's output depends on the frame (ultralytics' own random init gives a near-constant function of the input,
    against which any export, broken or not, agrees with fp32)."""
    torch.manual_seed(0)
    detector = Detector("yolov5n", None, 640, device="cpu", precision=precision)
    if informative:
        generator = torch.Generator().manual_seed(0)
        for name, module in detector.model.named_modules():
            if isinstance(module, torch.nn.Conv2d) and ".dfl" not in name:  # the DFL's fixed arange stays
                fan_in = module.weight[0].numel()
                module.weight.copy_(torch.randn(module.weight.shape, generator=generator) * (2 / fan_in) ** 0.5)
                if module.bias is not None:
                    module.bias.zero_()
    return detector


def _cosine(a, b) -> float:
    return float(torch.nn.functional.cosine_similarity(torch.as_tensor(a).flatten().double(),
                                                       torch.as_tensor(b).flatten().double(), dim=0))


def test_the_detector_on_openvino_fp32_finds_torch_fp32s_detections_at_every_batch_shape(export_dir):
    import openvino

    from sustainable_ipa.models.fidelity import fp32_twin

    detector = yolov5n("fp32")
    made = detector.use_openvino(export_dir, frames())
    assert made.key.calibration_items == 0 and dict(made.key.versions)["ultralytics"]
    inputs = openvino.Core().read_model(made.xml).inputs[0].partial_shape
    assert inputs[0].is_dynamic and inputs[2].is_dynamic and inputs[3].is_dynamic  # batch, H, W
    batches = [frames(), [frames()[1]] * 3]  # a portrait and a landscape rectangle; a batch of 3
    for batch in batches:
        ours, reference = detector(batch), fp32_twin(detector)(batch)
        for det, ref in zip(ours, reference):
            assert len(det) == len(ref) > 0  # the informative weights find boxes: NMS sees real work
            assert _cosine(det[:, :4], ref[:, :4]) >= 0.999 and _cosine(det[:, 4], ref[:, 4]) >= 0.999
    fidelity = detector_fidelity(detector, frames())
    assert fidelity["box_cosine_mean"] >= 0.999
    assert fidelity["score_correlation_mean"] >= 0.9999


def test_the_detector_in_int8_is_exported_once_and_stays_close_and_a_broken_export_would_show(export_dir):
    low = yolov5n("int8")
    first = low.use_openvino(export_dir, frames())
    assert not first.cached and first.cpu_s > 0 and first.key.precision == "int8" and first.key.calibration_items == 2
    again = yolov5n("int8").use_openvino(export_dir, frames())
    assert again.cached and again.xml == first.xml
    fidelity = detector_fidelity(low, frames())
    assert fidelity["box_cosine_mean"] >= 0.999
    assert fidelity["score_correlation_mean"] >= 0.99  # measured 0.994-0.998 on these frames
    compiled = low._openvino
    low._openvino = lambda x: compiled(x.flip(1))  # an export fed BGR instead of RGB
    assert detector_fidelity(low, frames())["score_correlation_mean"] < 0.99
    low._openvino = lambda x: compiled(x + 0.1)  # ... or an input off by a tenth of its range
    assert detector_fidelity(low, frames())["score_correlation_mean"] < 0.99


def test_both_stages_on_openvino_int8_run_end_to_end_and_log_each_export(make_cfg, client, tmp_path):
    from sustainable_ipa.experiment import run_job

    overrides = [f"adaptation.{stage}.{knob}" for stage in ("detector", "classifier")
                 for knob in ("precision=int8", "runtime=openvino")]
    overrides += [f"export_dir={tmp_path}/exports", "trial.requests=2", "trial.warmup=0"]
    if not {"avx512_vnni", "avx_vnni", "amx_int8"} & set(this_machine().flags):
        overrides.append("hardware.allow_emulated=true")
    run = client.get_run(run_job(make_cfg(*overrides)).run_id)
    assert run.info.status == "FINISHED"
    for stage in ("detector", "classifier"):
        assert run.data.tags[f"export_{stage}"] == "built"
        assert run.data.params[f"adaptation.{stage}.runtime"] == "openvino"
        assert run.data.metrics[f"export_{stage}_cpu_s"] > 0 and run.data.metrics[f"export_{stage}_wall_s"] > 0
        # its energy, by the run's meter, apart from the run's figures (the estimate here: no RAPL on CI)
        assert run.data.metrics[f"export_{stage}_energy_j"] > 0
        assert run.data.metrics[f"calibration_{stage}_items"] > 0
    assert run.data.metrics["calibration_detector_items"] == 2  # the embedded sample's frames
    assert run.data.tags["export_energy_source"] == run.data.tags["energy_source"]
    assert run.data.metrics["fidelity_detector_box_cosine_mean"] >= 0.999
    assert run.data.metrics["fidelity_classifier_logit_cosine_mean"] >= 0.999


def test_low_precision_detections_are_scored_against_fp32s_by_cocoeval():
    from sustainable_ipa.families.yolov5 import map_against_fp32

    # informative weights: fp32 finds boxes to score against (100 a frame, their scores near-ties around 0.52,
    # so that bf16's rounding reorders which survive NMS: it scores 0.33 here, where pretrained weights' confident
    # boxes would not move)
    same = map_against_fp32(yolov5n("fp32"), frames())
    assert same["map50_vs_fp32"] == pytest.approx(1.0, abs=0.01)  # fp32 against itself
    bf16 = map_against_fp32(yolov5n("bf16"), frames())
    assert 0 < bf16["map50_vs_fp32"] <= 1 and 0 < bf16["map_vs_fp32"] <= 1

    class Mirrored(Detector):  # a broken input path: frames flipped left-right before the low-precision model
        def infer(self, x):
            return super().infer(x.flip(3) if self.precision != "fp32" else x)

    broken = yolov5n("bf16")
    broken.__class__ = Mirrored
    assert map_against_fp32(broken, frames())["map50_vs_fp32"] < \
        bf16["map50_vs_fp32"]
    assert map_against_fp32(yolov5n("bf16", informative=False), frames()) == {}  # nothing to score


SIGNAL_AFTER_OPENVINO = """
import os, signal, sys, torch
import os
from pathlib import Path
from sustainable_ipa.models.openvino_runtime import CompiledStage, ExportKey, convert_torch, export

folder = Path(sys.argv[1])
model, x = torch.nn.Conv2d(3, 4, 3), torch.rand(1, 3, 8, 8)
made = export(ExportKey("tiny", "fp32", "w", "", 0, ()), folder, convert_torch(model, x, "fp32", []))
first, second = CompiledStage(made.xml, "fp32"), CompiledStage(made.xml, "fp32")
first(x), second(x)
del first  # compiled models released in the order they came, not the reverse
del second
signal.signal(signal.SIGTERM, lambda *_: print("handled", flush=True))
os.kill(os.getpid(), signal.SIGTERM)
"""


@pytest.mark.slow
def test_a_signal_after_openvino_models_come_and_go_reaches_its_handler(tmp_path):
    """OpenVINO's CPU plugin leaves the alternate signal stack Python's handlers run on in freed memory when its Cores
    go out of order: Ctrl-C or SIGTERM then crashed a job (SIGSEGV) instead of ending its run KILLED."""
    import subprocess
    import sys

    out = subprocess.run([sys.executable, "-c", SIGNAL_AFTER_OPENVINO, str(tmp_path)], capture_output=True, text=True,
                         timeout=120, cwd=Path(__file__).parents[1], env={**os.environ,
                                                                            "PYTHONPATH": "src"})
    assert out.returncode == 0 and out.stdout.strip() == "handled", (out.returncode, out.stderr[-2000:])


def test_an_export_keeps_the_libraries_output_in_its_log_and_says_one_line(tmp_path, capfd):
    from sustainable_ipa.models.openvino_runtime import ExportKey, convert_torch, export

    model, x = torch.nn.Conv2d(3, 4, 3), torch.rand(1, 3, 8, 8)
    capfd.readouterr()
    made = export(ExportKey("tiny", "int8", "w", "c", 2, ()), tmp_path,
                  convert_torch(model, x, "int8", [x.numpy(), x.numpy()]))
    printed = capfd.readouterr()
    assert printed.out == "" and printed.err == ""  # NNCF's progress bars and INFO lines went to the log
    log = made.xml.parent / "export.log"
    assert log.is_file() and "Statistics collection" in log.read_text()  # NNCF calibrating
    line = made.line("classifier")
    assert line.startswith("OpenVINO: exported classifier tiny int8 in ") and str(log) in line and "\n" not in line
