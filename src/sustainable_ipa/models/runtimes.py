"""What a run's stage models need beyond their weights: exported models for the stages on OpenVINO (int8 calibrated
on each stage's own inputs), and every stage's fidelity to torch fp32."""

from __future__ import annotations

from pathlib import Path

from omegaconf import DictConfig
from rich.console import Console
from rich.markup import escape

CALIBRATION_ENOUGH = 300  # images ultralytics' int8 export asks for before it stops warning


def fidelity_metrics(models: dict, items: dict[str, list]) -> dict[str, float]:
    """Each stage below fp32 or off torch against its torch fp32 twin, same weights, on the stage's inputs
    (`items`, by stage): `fidelity_<stage>_<measure>`."""
    metrics: dict[str, float] = {}
    for stage, model in models.items():
        if (model.precision != "fp32" or model.runtime != "torch") and items.get(stage):
            metrics.update({f"fidelity_{stage}_{k}": v for k, v in model.fidelity(items[stage]).items()})
    return metrics


def use_runtimes(cfg: DictConfig, models: dict, calibration: dict[str, list], console: Console) -> tuple[dict, dict]:
    """Stages on OpenVINO get their exported model (made now, or from `export_dir`), `models` and `calibration`
    (each stage's own inputs) by stage name; each export's one-off cost (wall and CPU seconds, and energy by the
    run's meter) is logged apart, never in per-request figures. Returns (metrics, tags)."""
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
                console.print(escape(made.line(stage)))
                metrics.update({f"export_{stage}_wall_s": made.wall_s, f"export_{stage}_cpu_s": made.cpu_s,
                                f"export_{stage}_energy_j": energy.total_j})  # idle power included: what it drew
                tags["export_energy_source"] = energy.source.value
            if made.key.precision == "int8":
                metrics[f"calibration_{stage}_items"] = float(len(inputs))
                if len(inputs) < CALIBRATION_ENOUGH:
                    console.print(f"[yellow]warning[/]: {stage} int8 calibrated on {len(inputs)} "
                                  "items: too few for accuracy claims (ultralytics and NNCF "
                                  f"advise ≥ {CALIBRATION_ENOUGH}); latency and energy are unaffected")
            tags.update({f"export_{stage}": "cached" if made.cached else "built",
                         f"export_{stage}_dir": str(made.xml.parent)})
    finally:
        meter.close()
    return metrics, tags
