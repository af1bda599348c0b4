"""The stage models' own pre- and post-processing, on real (random-weight) models."""

import threading

import numpy as np
import pytest
import torch

from sustainable_ipa.families.resnet import Classifier, crop
from sustainable_ipa.families.yolov5 import Detector


@pytest.fixture(scope="module")
def detector():
    return Detector("yolov5n", None)


def test_batch_input_shape_is_the_smallest_stride_aligned_rectangle(detector):
    assert detector.input_shape([(1080, 810)]) == (640, 480)  # bus.jpg, portrait
    assert detector.input_shape([(720, 1280)]) == (384, 640)  # zidane.jpg, landscape
    assert detector.input_shape([(1080, 810), (720, 1280)]) == (640, 640)  # mixed batch: the square


def test_boxes_come_back_in_frame_pixels(detector):
    frame_shape, input_shape = (720, 1280), (384, 640)  # scale 0.5, 12 px of padding top and bottom
    raw = torch.zeros(1, 84, 2)
    raw[0, :4, 0] = torch.tensor([320.0, 192.0, 100.0, 50.0])  # cx, cy, w, h in input pixels
    raw[0, 4 + 5, 0] = 0.9  # class 5 (bus)
    [det] = detector.postprocess(raw, input_shape, [frame_shape])
    assert det.shape == (1, 6)
    np.testing.assert_allclose(det[0, :4], [540, 310, 740, 410], atol=1.0)  # (cx ± w/2) / 0.5, (cy − 12 ± h/2) / 0.5
    assert det[0, 5] == 5 and det[0, 4] == pytest.approx(0.9)


def test_detector_runs_a_mixed_batch(detector):
    frames = [np.zeros((1080, 810, 3), np.uint8), np.zeros((720, 1280, 3), np.uint8)]
    assert [d.shape[1] for d in detector(frames)] == [6, 6]


def test_a_mixed_batch_runs_each_orientation_at_its_own_rectangle_and_keeps_frame_order(detector, monkeypatch):
    shapes_seen = []

    def one_box_at_the_centre(x):  # a box centred in each input: it maps back to the centre of its own frame
        shapes_seen.append(tuple(x.shape))
        raw = torch.zeros(x.shape[0], 84, 1)
        raw[:, :4, 0] = torch.tensor([x.shape[3] / 2, x.shape[2] / 2, 64.0, 64.0])
        raw[:, 4, 0] = 0.9
        return raw

    monkeypatch.setattr(detector, "infer", one_box_at_the_centre)
    frames = [np.zeros(shape, np.uint8) for shape in [(1080, 810, 3), (720, 1280, 3), (800, 600, 3)]]
    detections = detector(frames)
    assert sorted(shapes_seen) == [(1, 3, 384, 640), (2, 3, 640, 480)]  # not one 640 × 640 square for all three
    centres = [((d[0, 0] + d[0, 2]) / 2, (d[0, 1] + d[0, 3]) / 2) for d in detections]
    np.testing.assert_allclose(centres, [(405, 540), (640, 360), (300, 400)], atol=1.0)


def test_replicas_sharing_the_detector_decode_each_shape_with_its_own_anchors(detector, monkeypatch):
    """The head caches anchors per input shape: a landscape replica decoding while a portrait one is inside its
    decoding must not swap the portrait's anchors (it crashed with a size mismatch)."""
    frames = {"portrait": np.zeros((1080, 810, 3), np.uint8), "landscape": np.zeros((720, 1280, 3), np.uint8)}
    alone = {name: detector([frame])[0] for name, frame in frames.items()}
    dfl = detector.model.model[-1].dfl
    dfl_forward, portrait_decoding, landscape_done = dfl.forward, threading.Event(), threading.Event()

    def portrait_lingers(x):  # holds the portrait inside decoding until the landscape replica is done (or 2 s)
        if threading.current_thread().name == "portrait":
            portrait_decoding.set()
            landscape_done.wait(2)
        return dfl_forward(x)

    monkeypatch.setattr(dfl, "forward", portrait_lingers)
    results, errors = {}, []

    def replica():
        name = threading.current_thread().name
        try:
            if name == "landscape":
                portrait_decoding.wait(5)
            results[name] = detector([frames[name]])[0]
        except Exception as err:
            errors.append(err)
        finally:
            if name == "landscape":
                landscape_done.set()

    workers = [threading.Thread(target=replica, name=name) for name in frames]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    assert errors == []
    for name in frames:
        np.testing.assert_allclose(results[name], alone[name], atol=1e-3)


def test_classifier_normalises_and_batches_crops_of_any_size():
    torch.manual_seed(0)
    classifier = Classifier("resnet18", None)
    crops = [np.full((50, 30, 3), 128, np.uint8), np.zeros((300, 120, 3), np.uint8)]
    x = classifier.preprocess(crops)
    assert x.shape == (2, 3, 224, 224) and x.is_contiguous(memory_format=torch.channels_last)
    # grey 128 → (128/255 − mean) / std per channel, BGR input turned RGB
    expected = (128 / 255 - torch.tensor([0.485, 0.456, 0.406])) / torch.tensor([0.229, 0.224, 0.225])
    torch.testing.assert_close(x[0, :, 100, 100], expected, atol=1e-4, rtol=0)
    assert len(classifier(crops)) == 2 and classifier.gmacs_per_crop == pytest.approx(1.81, abs=0.01)


def test_crop_clips_to_the_image_and_drops_slivers():
    image = np.zeros((100, 200, 3), np.uint8)
    assert crop(image, (-10, -10, 50, 40)).shape == (40, 50, 3)
    assert crop(image, (199, 10, 260, 50)) is None
