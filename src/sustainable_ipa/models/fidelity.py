"""How far a low-precision stage strays from fp32 with the same weights on the same inputs. Computed with random
weights too (it needs no ground truth); a measurement of agreement, not of accuracy."""

from __future__ import annotations

import copy

import numpy as np
import torch


def fp32_twin(stage):
    """The same model, weights shared, run by torch in fp32 (autocast keeps fp32 weights; an OpenVINO stage keeps
    its torch model beside the IR)."""
    twin = copy.copy(stage)
    twin.precision = "fp32"
    if hasattr(twin, "runtime"):
        twin.runtime = "torch"
    return twin


def _cosines(low: torch.Tensor, reference: torch.Tensor) -> torch.Tensor:
    """Per item: the cosine between the flattened outputs."""
    return torch.nn.functional.cosine_similarity(low.flatten(1).double(), reference.flatten(1).double(), dim=1)


def classifier_fidelity(classifier, crops: list[np.ndarray]) -> dict[str, float]:
    """Top-1 agreement and the mean cosine of logits against fp32, over `crops`."""
    x = classifier.preprocess(crops)
    low, reference = classifier.logits(x), fp32_twin(classifier).logits(x)
    return {"fidelity_classifier_top1_agreement": float((low.argmax(1) == reference.argmax(1)).double().mean()),
            "fidelity_classifier_logit_cosine_mean": float(_cosines(low, reference).mean()),
            "fidelity_classifier_items": float(len(crops))}


def detector_fidelity(detector, frames: list[np.ndarray]) -> dict[str, float]:
    """The mean cosine of the raw head output against fp32, per frame, for the boxes and for the class scores apart:
    box coordinates are hundreds of pixels and scores below 1, so one cosine over both would see only the boxes.
    Scores also get their correlation (the cosine once each frame's mean score is taken off): they sit on a common
    offset (the head's prior bias, or 0.5), which keeps the plain cosine near 1 whatever the network computes."""
    boxes, scores, correlations = [], [], []
    for frame in frames:  # one at a time: frames of other shapes do not stack
        x = detector.preprocess([frame])
        low, reference = detector.infer(x), fp32_twin(detector).infer(x)  # (1, 4 + classes, anchors)
        boxes.append(_cosines(low[:, :4], reference[:, :4]))
        scores.append(_cosines(low[:, 4:], reference[:, 4:]))
        correlations.append(_cosines(_centred(low[:, 4:]), _centred(reference[:, 4:])))
    return {"fidelity_detector_box_cosine_mean": float(torch.cat(boxes).mean()),
            "fidelity_detector_score_cosine_mean": float(torch.cat(scores).mean()),
            "fidelity_detector_score_correlation_mean": float(torch.cat(correlations).mean()),
            "fidelity_detector_items": float(len(frames))}


def _centred(x: torch.Tensor) -> torch.Tensor:
    flat = x.flatten(1).double()
    return flat - flat.mean(dim=1, keepdim=True)


def detector_map_against_fp32(detector, frames: list[np.ndarray]) -> dict[str, float]:
    """COCOeval's mAP of this detector's detections scored against torch fp32's on the same frames, as if fp32's
    were the ground truth: how much of what fp32 finds survives the precision (1.0: the same boxes). Empty when
    fp32 finds nothing (random weights usually): there is nothing to score against."""
    import json
    import tempfile
    from pathlib import Path

    from sustainable_ipa.metrics.accuracy import coco_map, coco_results

    reference = fp32_twin(detector)(frames)
    if not any(len(d) for d in reference):
        return {}
    low = detector(frames)
    classes = sorted({int(c) for d in reference for c in d[:, 5]} | {int(c) for d in low for c in d[:, 5]})
    ids = list(range(max(classes) + 1))  # class index → category id: itself, the truth here being fp32's classes
    truth = {"images": [{"id": i, "width": f.shape[1], "height": f.shape[0]} for i, f in enumerate(frames)],
             "categories": [{"id": c, "name": str(c)} for c in ids],
             "annotations": [{"id": n, "image_id": i, "category_id": int(c), "iscrowd": 0,
                              "bbox": [float(x1), float(y1), float(x2 - x1), float(y2 - y1)],
                              "area": float((x2 - x1) * (y2 - y1))}
                             for n, (i, (x1, y1, x2, y2, _, c)) in enumerate(
                                 (i, row) for i, det in enumerate(reference) for row in det)]}
    results = [r for i, det in enumerate(low) for r in coco_results(i, det, ids)]
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "fp32_detections.json"
        path.write_text(json.dumps(truth))
        map50, map50_95 = coco_map(path, list(range(len(frames))), results)
    return {"fidelity_detector_map50_vs_fp32": map50, "fidelity_detector_map_vs_fp32": map50_95}
