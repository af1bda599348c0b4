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
    from sustainable_ipa.models.fidelity import classifier_fidelity, detector_fidelity, detector_map_against_fp32

    metrics: dict[str, float] = {}
    if detector.precision != "fp32" or detector.runtime != "torch":
        metrics.update(detector_fidelity(detector, frames))
        metrics.update(detector_map_against_fp32(detector, frames))  # pretrained weights: fp32 finds boxes
    if (classifier.precision != "fp32" or classifier.runtime != "torch") and crops:
        metrics.update(classifier_fidelity(classifier, crops))
    return metrics


# What each stage calibrates int8 on, as the warning names it.
CALIBRATION_ITEMS = {"detector": "frames", "classifier": "crops"}


def use_runtimes(cfg: DictConfig, models: dict, calibration: dict[str, list[np.ndarray]],
                 console: Console) -> tuple[dict, dict]:
    """Stages on OpenVINO get their exported model (made now, or from `export_dir`), `models` and `calibration`
    (the detector's frames, the classifier's crops) by stage name; each export's one-off cost (wall and CPU
    seconds, and energy by the run's meter) is logged apart, never in per-request figures. Returns (metrics, tags)."""
    metrics: dict[str, float] = {}
    tags: dict[str, str] = {}
    on_openvino = [stage for stage in models if cfg.adaptation[stage].runtime == "openvino"]
    if not on_openvino:
        return metrics, tags
    from sustainable_ipa.energy.factory import make_meter

    # The run's own meter measures each export (before the run's lock and baseline: an export is a one-off cost
    # of the model, not of the run, and may be minutes long).
    meter = make_meter(cfg.energy, cfg.hardware, lambda line: console.print(f"[yellow]warning[/]: {line}"))
    try:
        for stage in on_openvino:
            model, inputs = models[stage], calibration[stage]
            with console.status(f"OpenVINO: exporting {model.variant} {model.precision} (or reading the cache)"):
                meter.begin_window(f"export-{stage}")
                made = model.use_openvino(Path(cfg.export_dir), inputs)
                energy = meter.end_window(f"export-{stage}")
            if not made.cached:
                metrics.update({f"export_{stage}_wall_s": made.wall_s, f"export_{stage}_cpu_s": made.cpu_s,
                                f"export_{stage}_energy_j": energy.total_j})  # idle power included: what it drew
                tags["export_energy_source"] = energy.source.value
            if made.key.precision == "int8":
                metrics[f"calibration_{stage}_items"] = float(len(inputs))
                if len(inputs) < CALIBRATION_ENOUGH:
                    console.print(f"[yellow]warning[/]: {stage} int8 calibrated on {len(inputs)} "
                                  f"{CALIBRATION_ITEMS[stage]}: too few for accuracy claims (ultralytics and NNCF "
                                  f"advise ≥ {CALIBRATION_ENOUGH}); latency and energy are unaffected")
            tags.update({f"export_{stage}": "cached" if made.cached else "built",
                         f"export_{stage}_dir": str(made.xml.parent)})
    finally:
        meter.close()
    return metrics, tags
