"""The run record of one trial: every metric assembled in one place from the trial's raw result."""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass

import numpy as np

from sustainable_ipa.metrics.accuracy import coco_map, coco_results
from sustainable_ipa.metrics.cost import cost_usd_per_1k
from sustainable_ipa.metrics.latency import latency_percentiles_s, sla_attainment, throughput_rps
from sustainable_ipa.metrics.stats import mean_ci95
from sustainable_ipa.pipeline.runner import TrialResult


@dataclass(frozen=True)
class TrialContext:
    """What the metrics need besides the trial's timestamps."""

    sla_s: float
    cost_cores: int
    price_usd_per_core_hour: float
    accuracy_reference: float
    coco_ids: list[int]  # detector class index → COCO category id
    annotations: object = None  # COCO instances JSON path, when the dataset has ground truth
    classifier_top1: float | None = None  # measured once on ground-truth crops (pretrained weights only)


def trial_metrics(result: TrialResult, ctx: TrialContext, measure_accuracy: bool) -> dict[str, float]:
    requests = result.requests
    arrivals = np.array([r.arrival_s for r in requests])
    finishes = np.array([r.finish_s for r in requests])
    latencies = finishes - arrivals
    span_s = float(finishes.max() - arrivals.min())
    metrics = {
        "accuracy_reference": ctx.accuracy_reference,
        **latency_percentiles_s(latencies),
        "throughput_rps": throughput_rps(arrivals, finishes),
        "sla_attainment": sla_attainment(latencies, ctx.sla_s),
        "cost_cores": float(ctx.cost_cores),
        "cost_usd_per_1k": cost_usd_per_1k(ctx.price_usd_per_core_hour, ctx.cost_cores, span_s, len(requests)),
        "requests_served": float(len(requests)),
        "duration_s": span_s,
        "crops_per_request": float(np.mean([r.crops for r in requests])),
    }
    for stage in dict.fromkeys(b.stage for b in result.batches):
        metrics[f"{stage}_batch_s"] = float(np.mean([b.duration_s for b in result.batches if b.stage == stage]))
    for stage, cpu_s in result.stage_cpu_s().items():
        metrics[f"cpu_{stage}_s"] = cpu_s  # measured by the OS in the stage's worker processes
    if measure_accuracy and ctx.annotations is not None:
        results = detections_json(result, ctx.coco_ids)
        image_ids = sorted({r.frame.image_id for r in requests})
        metrics["detector_map50"], metrics["detector_map50_95"] = coco_map(ctx.annotations, image_ids, results)
        if ctx.classifier_top1 is not None and np.isfinite(ctx.classifier_top1):
            metrics["classifier_top1"] = ctx.classifier_top1
            metrics["accuracy_measured"] = metrics["detector_map50"] * ctx.classifier_top1
    return metrics


def detections_json(result: TrialResult, coco_ids: list[int]) -> list[dict]:
    """COCO results for each frame once (requests cycle over frames; a frame's detections repeat)."""
    seen: set[int] = set()
    out: list[dict] = []
    for r in result.requests:
        if r.frame.image_id not in seen:
            seen.add(r.frame.image_id)
            out.extend(coco_results(r.frame.image_id, r.detections, coco_ids))
    return out


def requests_csv(result: TrialResult) -> str:
    """Per-request timeline, seconds from the trial's start."""
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(["id", "image_id", "arrival_s", "detected_s", "finish_s", "latency_s", "crops"])
    for r in result.requests:
        writer.writerow([r.request_id, r.frame.image_id, f"{r.arrival_s - result.start_s:.6f}",
                         f"{r.detected_s - result.start_s:.6f}", f"{r.finish_s - result.start_s:.6f}",
                         f"{r.latency_s:.6f}", r.crops])
    return buffer.getvalue()


def aggregate(per_repetition: list[dict[str, float]]) -> dict[str, float]:
    """Mean and 95 % CI over repetitions: `<metric>_mean`, `<metric>_ci95_low`, `<metric>_ci95_high`; energy
    metrics also get their coefficient of variation, `<metric>_cv` (sample std ÷ mean)."""
    from sustainable_ipa.metrics.energy import ENERGY_METRICS_FOR_CV

    out: dict[str, float] = {}
    for name in sorted({k for m in per_repetition for k in m}):
        values = [m[name] for m in per_repetition if name in m]
        mean, low, high = mean_ci95(values)
        out[f"{name}_mean"] = mean
        if np.isfinite(low):
            out[f"{name}_ci95_low"], out[f"{name}_ci95_high"] = low, high
        if name in ENERGY_METRICS_FOR_CV and len(values) > 1 and mean != 0:
            out[f"{name}_cv"] = float(np.std(values, ddof=1) / abs(mean))
    return out
