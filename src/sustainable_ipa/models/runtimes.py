"""What a run's stage models need beyond their weights: the classifier's inputs found without it (for int8
calibration and fidelity), exported models for the stages on OpenVINO, and every stage's fidelity to torch fp32."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from omegaconf import DictConfig
from rich.console import Console

from sustainable_ipa.data import Dataset

CALIBRATION_ENOUGH = 300  # images ultralytics' int8 export asks for before it stops warning


def needs_crops(cfg: DictConfig) -> bool:
    """Whether the classifier runs other than torch fp32, so that its inputs are needed before the run."""
    c = cfg.adaptation.classifier
    return c.precision != "fp32" or c.runtime != "torch"


def stage_crops(detector, dataset: Dataset) -> list[np.ndarray]:
    """The classifier's inputs on this dataset, found without it: the ground truth's crops, else the fp32
    detector's (for fidelity and int8 calibration)."""
    from sustainable_ipa.models.classifier import crop
    from sustainable_ipa.models.fidelity import fp32_twin

    frames = [f.image_bgr for f in dataset.frames]
    boxes = [[gt.box_xyxy for gt in f.ground_truth] for f in dataset.frames]
    if not any(boxes):
        boxes = [[d[:4] for d in det] for det in fp32_twin(detector)(frames)]
    return [c for frame, frame_boxes in zip(frames, boxes) for b in frame_boxes if (c := crop(frame, b)) is not None]


def fidelity_metrics(detector, classifier, frames: list[np.ndarray], crops: list[np.ndarray]) -> dict[str, float]:
    """Each stage below fp32 or off torch against torch fp32 with the same weights on this dataset's inputs."""
    from sustainable_ipa.models.fidelity import classifier_fidelity, detector_fidelity

    metrics: dict[str, float] = {}
    if detector.precision != "fp32":
        metrics.update(detector_fidelity(detector, frames))
    if (classifier.precision != "fp32" or classifier.runtime != "torch") and crops:
        metrics.update(classifier_fidelity(classifier, crops))
    return metrics


def use_runtimes(cfg: DictConfig, classifier, crops: list[np.ndarray], console: Console) -> tuple[dict, dict]:
    """Stages on OpenVINO get their exported model (made now, or from `export_dir`); the export's one-off cost is
    logged apart (never in per-request figures). Returns (metrics, tags)."""
    if cfg.adaptation.classifier.runtime != "openvino":
        return {}, {}
    with console.status(f"OpenVINO: exporting {classifier.variant} {classifier.precision} (or reading the cache)"):
        made = classifier.use_openvino(Path(cfg.export_dir), crops)
    metrics = {} if made.cached else {"export_classifier_wall_s": made.wall_s, "export_classifier_cpu_s": made.cpu_s}
    if made.key.precision == "int8":
        metrics["calibration_classifier_items"] = float(len(crops))
        if len(crops) < CALIBRATION_ENOUGH:
            console.print(f"[yellow]warning[/]: int8 calibrated on {len(crops)} crops: too few for accuracy claims "
                          f"(ultralytics and NNCF advise ≥ {CALIBRATION_ENOUGH}); latency and energy are unaffected")
    return metrics, {"export_classifier": "cached" if made.cached else "built",
                     "export_classifier_dir": str(made.xml.parent)}

