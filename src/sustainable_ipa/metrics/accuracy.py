"""Accuracy: IPA's pipeline accuracy score from the catalogue's published accuracies, and COCO mAP (pycocotools).
Each family's own measured accuracy is computed in its module (`families/`) with the field's library."""

from __future__ import annotations

import contextlib
import io
import math
from pathlib import Path

import numpy as np


def pipeline_accuracy(stage_accuracies_pct: list[float]) -> float:
    """IPA's pipeline accuracy score (PAS), multiply form: Π over stages of accuracy / 100, a fraction in [0, 1]."""
    return float(math.prod(a / 100.0 for a in stage_accuracies_pct))


def reference_accuracies(variants) -> dict[str, dict[str, float]]:
    """stage → variant → published reference accuracy (%), from the pipeline's variant catalogue."""
    return {stage: {v: float(spec.reference_accuracy) for v, spec in options.items()} for stage, options in variants.items()}


def option_accuracies(variants) -> dict[str, dict[str, dict[str, float]]]:
    """stage → variant → precision → accuracy (%): the fp32 reference plus the catalogue's published change for
    that precision (`precision_change.<precision>.points`); precisions the catalogue gives no change for are absent."""
    return {stage: {v: {"fp32": float(spec.reference_accuracy),
                        **{p: float(spec.reference_accuracy) + float(change.points)
                           for p, change in (spec.get("precision_change") or {}).items()}}
                    for v, spec in options.items()} for stage, options in variants.items()}


def option_accuracy_pct(accuracies, stage: str, variant: str, precision: str) -> float:
    """The accuracy (%) of a stage's variant in a precision, from `option_accuracies` (or from
    `reference_accuracies`, which knows fp32 only)."""
    from sustainable_ipa.errors import UserError

    entry = accuracies[stage][variant]
    by_precision = entry if isinstance(entry, dict) else {"fp32": entry}
    if precision not in by_precision:
        raise UserError(f"pipeline.variants.{stage}.{variant} has no published accuracy change for {precision}",
                        f"add pipeline.variants.{stage}.{variant}.precision_change.{precision} with its source")
    return float(by_precision[precision])


def accuracy_basis(variants, stage: str, variant: str, precision: str) -> str:
    """Where an option's accuracy comes from: `reference` (fp32, the catalogue's published figure), `published`
    (plus a change published for this model and precision) or `nearest_published` (a change published for
    another model, none existing for this one)."""
    if precision == "fp32":
        return "reference"
    return str(variants[stage][variant].precision_change[precision].basis)


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
