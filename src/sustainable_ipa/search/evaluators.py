"""Evaluators turn one pipeline choice into run-record metrics; the study does not care which one it has."""

from __future__ import annotations

import copy
from typing import Protocol

from omegaconf import DictConfig, open_dict

from sustainable_ipa.energy.carbon import carbon_intensity_g_per_kwh, emissions_g
from sustainable_ipa.metrics.accuracy import reference_accuracies
from sustainable_ipa.search.compose import predict
from sustainable_ipa.search.profiles import ProfileTable
from sustainable_ipa.search.space import PipelineChoice


class Evaluator(Protocol):
    name: str

    def evaluate(self, choice: PipelineChoice, parent_run_id: str | None) -> dict[str, float]:
        """Metrics of `choice` under the run-record names. `parent_run_id`: the trial's MLflow run, for an
        evaluator that makes runs of its own."""


class ProfileEvaluator:
    """Composes metrics from stage profiles: no model runs, well under a millisecond per choice."""

    name = "profile"

    def __init__(self, profiles: ProfileTable, cfg: DictConfig):
        self.profiles = profiles
        self.load_rps = float(cfg.search.load_rps)
        self.sla_s = float(cfg.trial.sla_s)
        self.price = float(cfg.hardware.price_usd_per_core_hour)
        self.reference = reference_accuracies(cfg.pipeline.variants)
        self.intensity_g_per_kwh = carbon_intensity_g_per_kwh(
            cfg.energy.carbon_intensity_g_per_kwh, cfg.hardware.carbon.country_iso_code, cfg.hardware.carbon.region)
        self.pue = float(cfg.hardware.pue)

    def evaluate(self, choice: PipelineChoice, parent_run_id: str | None = None) -> dict[str, float]:
        metrics = predict(choice, self.profiles, self.load_rps, self.sla_s, self.reference, self.price)
        metrics["emissions_g_per_1k"] = emissions_g(metrics["energy_j_per_request"] * 1000.0,
                                                    self.intensity_g_per_kwh, self.pue)
        return metrics


class RunEvaluator:
    """Executes the pipeline: one real MLflow run per trial (one repetition), nested under the trial's run."""

    name = "run"

    def __init__(self, cfg: DictConfig):
        self.cfg = cfg

    def evaluate(self, choice: PipelineChoice, parent_run_id: str | None = None) -> dict[str, float]:
        from sustainable_ipa.experiment import run_job

        cfg = copy.deepcopy(self.cfg)
        with open_dict(cfg):
            for stage, c in choice.stages().items():
                cfg.adaptation[stage] = {"variant": c.variant, "batch_size": c.batch_size, "threads": c.threads,
                                         "replicas": c.replicas}
            cfg.adaptation.name = f"search-{choice.detector.variant}-{choice.classifier.variant}"
            cfg.trial.repetitions = 1
        return run_job(cfg, outer_run_id=parent_run_id, nest_under_outer=True).metrics
