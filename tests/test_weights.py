"""weights=auto|pretrained|random|<folder>: offline behaviour and loading from a folder."""

import numpy as np
import pytest
import torch

from dataclasses import replace

from sustainable_ipa.errors import UserError
from sustainable_ipa.families.resnet import ResNet, ResNetParams
from sustainable_ipa.families.resnet import weights_file_name as classifier_file_name
from sustainable_ipa.families.yolov5 import YoloV5, YoloV5Params
from sustainable_ipa.families.yolov5 import weights_file_name as detector_file_name
from sustainable_ipa.models import weights
from sustainable_ipa.models.weights import PRETRAINED, RANDOM, plan_weights


@pytest.fixture(autouse=True)
def offline(monkeypatch):
    """No network, whatever this machine has (the library caches are left out by `wanted`)."""
    monkeypatch.setattr(weights, "downloadable", lambda url, timeout_s=2.0: False)


def wanted(detector: str, classifier: str) -> dict:
    """The video stages' weights sources, without the libraries' caches (which this machine may fill)."""
    yolo = YoloV5("detector", YoloV5Params(image_size=640, conf_threshold=0.25, iou_threshold=0.45, max_detections=9))
    resnet = ResNet("classifier", ResNetParams(crop_size=224))
    return {"detector": replace(yolo.weights_source(detector, None), library_cache=()),
            "classifier": replace(resnet.weights_source(classifier, None), library_cache=())}


def test_random_is_random():
    plan = plan_weights("random", "/nowhere", wanted("yolov5n", "resnet18"))
    assert plan.kind == RANDOM and plan.files == {"detector": None, "classifier": None}


def test_auto_offline_falls_back_to_random_and_says_why(tmp_path):
    plan = plan_weights("auto", tmp_path, wanted("yolov5s", "resnet50"))
    assert plan.kind == RANDOM
    assert "yolov5su.pt" in plan.reason and "resnet50-" in plan.reason


def test_a_library_cache_is_used(tmp_path):
    cached = tmp_path / "cache" / "yolov5su.pt"
    cached.parent.mkdir()
    cached.write_bytes(b"x")
    sources = {"detector": replace(wanted("yolov5s", "resnet50")["detector"], library_cache=(cached,))}
    assert plan_weights("auto", tmp_path / "w", sources).files == {"detector": cached}


def test_pretrained_offline_fails_naming_the_files_and_the_fix(tmp_path):
    with pytest.raises(UserError) as err:
        plan_weights("pretrained", tmp_path, wanted("yolov5s", "resnet50"))
    message = str(err.value)
    assert "yolov5su.pt" in message and "https://" in message and "weights=random" in message
    assert "\n" not in message


def test_file_names_are_the_published_ones():
    assert detector_file_name("yolov5x") == "yolov5xu.pt"
    assert classifier_file_name("resnet18") == "resnet18-f37072fd.pth"


def _write_weights(folder):
    """Files with the published names, holding (random) weights in the libraries' own formats."""
    from ultralytics import YOLO
    from torchvision.models import resnet18

    folder.mkdir(exist_ok=True)
    YOLO("yolov5n.yaml").save(folder / detector_file_name("yolov5n"))
    torch.manual_seed(1)
    model = resnet18()
    torch.save(model.state_dict(), folder / classifier_file_name("resnet18"))
    return model


def test_auto_uses_files_found_in_the_weights_folder(tmp_path):
    _write_weights(tmp_path / "w")
    plan = plan_weights("auto", tmp_path / "w", wanted("yolov5n", "resnet18"))
    assert plan.kind == PRETRAINED and plan.files["detector"].name == "yolov5nu.pt"


def test_a_weights_folder_loads_into_both_stages(tmp_path):
    from sustainable_ipa.families.resnet import Classifier
    from sustainable_ipa.families.yolov5 import Detector

    saved = _write_weights(tmp_path / "w")
    plan = plan_weights(str(tmp_path / "w"), tmp_path, wanted("yolov5n", "resnet18"))
    classifier = Classifier("resnet18", plan.files["classifier"])
    assert torch.equal(classifier.model.fc.weight, saved.fc.weight)
    detector = Detector("yolov5n", plan.files["detector"], image_size=320)
    out = detector([np.zeros((240, 320, 3), np.uint8)])
    assert out[0].shape[1] == 6


def test_a_weights_folder_missing_a_file_is_one_clear_line(tmp_path):
    (tmp_path / "w").mkdir()
    with pytest.raises(UserError, match="yolov5nu.pt.*not found in weights folder"):
        plan_weights(str(tmp_path / "w"), tmp_path, wanted("yolov5n", "resnet18"))


def test_weights_of_another_architecture_are_one_line_each(tmp_path):
    from ultralytics import YOLO
    from torchvision.models import resnet34

    from sustainable_ipa.families.resnet import Classifier
    from sustainable_ipa.families.yolov5 import Detector

    folder = tmp_path / "w"
    folder.mkdir()
    torch.save(resnet34().state_dict(), folder / classifier_file_name("resnet18"))  # ResNet-34 under 18's name
    YOLO("yolov5s.yaml").save(folder / detector_file_name("yolov5n"))  # YOLOv5s under n's name
    plan = plan_weights(str(folder), tmp_path, wanted("yolov5n", "resnet18"))
    with pytest.raises(UserError, match="are not resnet18's") as err:
        Classifier("resnet18", plan.files["classifier"])
    assert "\n" not in str(err.value)
    with pytest.raises(UserError, match="another architecture than detector variant yolov5n"):
        Detector("yolov5n", plan.files["detector"], image_size=320)
