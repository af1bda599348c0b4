"""weights=auto|pretrained|random|<folder>: offline behaviour and loading from a folder."""

import numpy as np
import pytest
import torch

from sustainable_ipa.errors import UserError
from sustainable_ipa.models import weights
from sustainable_ipa.models.weights import PRETRAINED, RANDOM, classifier_file_name, detector_file_name, plan_weights


@pytest.fixture(autouse=True)
def offline(monkeypatch, tmp_path):
    """No network and empty library caches, whatever this machine has."""
    monkeypatch.setattr(weights, "downloadable", lambda url, timeout_s=2.0: False)
    monkeypatch.setattr(weights, "search_dirs", lambda d: [d, tmp_path / "empty-cache"])


def test_random_is_random():
    assert plan_weights("random", "/nowhere", "yolov5n", "resnet18").kind == RANDOM


def test_auto_offline_falls_back_to_random_and_says_why(tmp_path):
    plan = plan_weights("auto", tmp_path, "yolov5s", "resnet50")
    assert plan.kind == RANDOM
    assert "yolov5su.pt" in plan.reason and "resnet50-" in plan.reason


def test_pretrained_offline_fails_naming_the_files_and_the_fix(tmp_path):
    with pytest.raises(UserError) as err:
        plan_weights("pretrained", tmp_path, "yolov5s", "resnet50")
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
    plan = plan_weights("auto", tmp_path / "w", "yolov5n", "resnet18")
    assert plan.kind == PRETRAINED and plan.detector_file.name == "yolov5nu.pt"


def test_a_weights_folder_loads_into_both_stages(tmp_path):
    from sustainable_ipa.models.classifier import Classifier
    from sustainable_ipa.models.detector import Detector

    saved = _write_weights(tmp_path / "w")
    plan = plan_weights(str(tmp_path / "w"), tmp_path, "yolov5n", "resnet18")
    classifier = Classifier("resnet18", plan.classifier_file)
    assert torch.equal(classifier.model.fc.weight, saved.fc.weight)
    detector = Detector("yolov5n", plan.detector_file, image_size=320)
    out = detector([np.zeros((240, 320, 3), np.uint8)])
    assert out[0].shape[1] == 6


def test_a_weights_folder_missing_a_file_is_one_clear_line(tmp_path):
    (tmp_path / "w").mkdir()
    with pytest.raises(UserError, match="yolov5nu.pt.*not found in weights folder"):
        plan_weights(str(tmp_path / "w"), tmp_path, "yolov5n", "resnet18")
