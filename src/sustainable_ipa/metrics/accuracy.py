"""Accuracy: IPA's pipeline accuracy score from reference accuracies, and measured detector mAP / classifier top-1."""

from __future__ import annotations

import contextlib
import io
import math
from functools import lru_cache
from pathlib import Path

import numpy as np
import yaml

MAPPING_FILE = Path(__file__).with_name("coco_to_imagenet.yaml")


def pipeline_accuracy(stage_accuracies_pct: list[float]) -> float:
    """IPA's pipeline accuracy score (PAS), multiply form: Π over stages of accuracy / 100, a fraction in [0, 1]."""
    return float(math.prod(a / 100.0 for a in stage_accuracies_pct))


def reference_accuracies(variants) -> dict[str, dict[str, float]]:
    """stage → variant → published reference accuracy (%), from the pipeline's variant catalogue."""
    return {stage: {v: float(spec.reference_accuracy) for v, spec in options.items()} for stage, options in variants.items()}


def coco_results(image_id: int, detections: np.ndarray, coco_ids: list[int]) -> list[dict]:
    """Detections `(n, 6)` as COCO results entries (bbox as x, y, width, height)."""
    return [{"image_id": int(image_id), "category_id": int(coco_ids[int(c)]),
             "bbox": [round(float(x1), 2), round(float(y1), 2), round(float(x2 - x1), 2), round(float(y2 - y1), 2)],
             "score": round(float(s), 5)} for x1, y1, x2, y2, s, c in detections]


def coco_map(annotations: Path, image_ids: list[int], results: list[dict]) -> tuple[float, float]:
    """(mAP@0.5, mAP@0.5:0.95) by pycocotools' COCOeval over `image_ids`; 0 when nothing was detected."""
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    if not results:
        return 0.0, 0.0
    with contextlib.redirect_stdout(io.StringIO()):  # pycocotools prints its progress and summary table
        ground_truth = COCO(str(annotations))
        evaluation = COCOeval(ground_truth, ground_truth.loadRes(results), iouType="bbox")
        evaluation.params.imgIds = sorted(set(image_ids))
        evaluation.evaluate()
        evaluation.accumulate()
        evaluation.summarize()
    # stats[0] = AP@[.5:.95], stats[1] = AP@.5; -1 means "no ground truth to evaluate"
    return max(float(evaluation.stats[1]), 0.0), max(float(evaluation.stats[0]), 0.0)


@lru_cache(maxsize=1)
def coco_to_imagenet() -> dict[str, tuple[str, ...]]:
    """COCO category name → the ImageNet class names that count as a correct top-1 for its crops."""
    return {k: tuple(v) for k, v in yaml.safe_load(MAPPING_FILE.read_text()).items()}


def mapped_top1(crop_categories: list[str], predicted: list[int], imagenet_names: list[str]) -> tuple[float, int]:
    """Top-1 accuracy over crops whose COCO category maps to ImageNet, and how many crops that was."""
    mapping = coco_to_imagenet()
    hits = [imagenet_names[p] in mapping[c] for c, p in zip(crop_categories, predicted) if c in mapping]
    return (float(np.mean(hits)) if hits else float("nan")), len(hits)
