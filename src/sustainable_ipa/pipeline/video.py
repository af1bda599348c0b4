"""IPA's video pipeline as stages: the detector hands each box's crop to the classifier."""

from __future__ import annotations

from typing import Callable

import numpy as np

from sustainable_ipa.data import Frame
from sustainable_ipa.models.classifier import crop
from sustainable_ipa.pipeline.stage import ItemResult

DETECTOR, CLASSIFIER = "detector", "classifier"


class DetectAndCrop:
    """Frames → per frame its detections `(n, 6)`; hands on the crop of every box (the frame's ground-truth boxes
    instead with `crops_from_ground_truth`: random detector weights find nothing, and the classifier's workload
    should stay realistic)."""

    def __init__(self, detector: Callable[[list[np.ndarray]], list[np.ndarray]], crops_from_ground_truth: bool = False):
        self.detector = detector
        self.crops_from_ground_truth = crops_from_ground_truth

    def __call__(self, frames: list[Frame]) -> list[ItemResult]:
        results = []
        for frame, det in zip(frames, self.detector([f.image_bgr for f in frames])):
            boxes = [gt.box_xyxy for gt in frame.ground_truth] if self.crops_from_ground_truth else det[:, :4]
            crops = [c for c in (crop(frame.image_bgr, b) for b in boxes) if c is not None]
            results.append(ItemResult(det, crops))
        return results


class Classify:
    """Crops → per crop its class index; the last stage, it hands nothing on."""

    def __init__(self, classifier: Callable[[list[np.ndarray]], list[int]]):
        self.classifier = classifier

    def __call__(self, crops: list[np.ndarray]) -> list[ItemResult]:
        return [ItemResult(cls) for cls in self.classifier(crops)]
