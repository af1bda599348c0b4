"""Evaluators turn one pipeline choice into run-record metrics; the study does not care which one it has."""

from __future__ import annotations

import copy
from typing import TYPE_CHECKING, Protocol

from omegaconf import DictConfig, OmegaConf, open_dict

from sustainable_ipa.energy.carbon import carbon_intensity_g_per_kwh, emissions_g
from sustainable_ipa.metrics.accuracy import accuracy_basis, option_accuracies
from sustainable_ipa.pipeline.load import load_tags
from sustainable_ipa.search.compose import predict
from sustainable_ipa.search.profiles import ProfileTable
from sustainable_ipa.search.space import PipelineChoice

if TYPE_CHECKING:
    from sustainable_ipa.search.lazy_profiles import LazyProfiles


class Evaluator(Protocol):
    name: str
    deterministic: bool  # the same choice always gives the same metrics: a choice proposed again is answered, not run

    def evaluate(self, choice: PipelineChoice, parent_run_id: str | None) -> dict[str, float]:
        """Metrics of `choice` under the run-record names. `parent_run_id`: the trial's MLflow run, for an
        evaluator that makes runs of its own."""

    def labels(self, choice: PipelineChoice, trial_run_id: str) -> dict[str, str]:
        """Tags for the trial's run after `evaluate`: `evaluator` (profile | run), `energy_source` and `figures`
        (composed | measured), so that a report can tell predictions and estimates from measurements."""

    def study_tags(self) -> dict[str, str]:
        """Tags for the study's parent run: where the evaluator's figures come from."""


class ProfileEvaluator:
    """Composes metrics from stage profiles: no model runs, well under a millisecond per choice. `profiles`: a
    `ProfileTable`, or a `LazyProfiles` that times a choice's profiles the first time one is asked for."""

    name = "profile"
    deterministic = True

    def __init__(self, profiles: ProfileTable | LazyProfiles, cfg: DictConfig):
        self.profiles = profiles
        self.load_rps = float(cfg.search.load_rps)
        self.sla_s = float(cfg.trial.sla_s)
        self.price = float(cfg.hardware.price_usd_per_core_hour)
        self.variants = cfg.pipeline.variants
        self.reference = option_accuracies(cfg.pipeline.variants)  # fp32 reference + published change per precision
        self.intensity_g_per_kwh = carbon_intensity_g_per_kwh(
            cfg.energy.carbon_intensity_g_per_kwh, cfg.hardware.carbon.country_iso_code, cfg.hardware.carbon.region)
        self.pue = float(cfg.hardware.pue)

    def evaluate(self, choice: PipelineChoice, parent_run_id: str | None = None) -> dict[str, float]:
        table = self.profiles.table_for(choice)
        metrics = predict(choice, table, self.load_rps, self.sla_s, self.reference, self.price)
        for end in ("", "_low", "_high"):  # the power model's interval too, where the profiles carry one
            if f"energy_j_per_request{end}" in metrics:
                metrics[f"emissions_g_per_1k{end}"] = emissions_g(metrics[f"energy_j_per_request{end}"] * 1000.0,
                                                                  self.intensity_g_per_kwh, self.pue)
        return metrics

    def labels(self, choice: PipelineChoice, trial_run_id: str) -> dict[str, str]:
        table = self.profiles.table_for(choice)
        sources = {table.of(stage, c).energy_source for stage, c in choice.stages().items()}
        # composed from stage profiles: a prediction of the pipeline, not a measurement of it, always under Poisson
        # arrivals at search.load_rps
        return {"evaluator": self.name, "energy_source": ",".join(sorted(sources)), "figures": "composed",
                "accuracy_basis": accuracy_bases(self.variants, choice), **load_tags("poisson"), **self.study_tags()}

    def study_tags(self) -> dict[str, str]:
        return {"profiles_fingerprint": self.profiles.fingerprint or "unknown"}  # the machine the profiles are of


class RunEvaluator:
    """Executes the pipeline: one real MLflow run per trial (one repetition), nested under the trial's run."""

    name = "run"
    deterministic = False  # each run measures anew: a choice proposed again is one more repetition of it

    def __init__(self, cfg: DictConfig):
        self.cfg = cfg

    def evaluate(self, choice: PipelineChoice, parent_run_id: str | None = None) -> dict[str, float]:
        from sustainable_ipa.experiment import run_job

        cfg = copy.deepcopy(self.cfg)
        with open_dict(cfg):
            for stage, c in choice.stages().items():
                # the searched knobs over the configured stage: what the space does not search stays
                cfg.adaptation[stage] = OmegaConf.merge(cfg.adaptation.get(stage) or {}, {
                    "variant": c.variant, "batch_size": c.batch_size, "threads": c.threads, "replicas": c.replicas,
                    "precision": c.precision, "runtime": c.runtime})
            cfg.adaptation.name = "search-" + "-".join(c.variant for c in choice.stages().values())
            cfg.trial.repetitions = 1
            cfg.trial.rate_rps = self.cfg.search.load_rps  # measured at the load the study is for, as composed
        return run_job(cfg, outer_run_id=parent_run_id, nest_under_outer=True).metrics

    def labels(self, choice: PipelineChoice, trial_run_id: str) -> dict[str, str]:
        from mlflow.tracking import MlflowClient

        client = MlflowClient(tracking_uri=self.cfg.tracking.uri)
        experiment_id = client.get_run(trial_run_id).info.experiment_id
        runs = client.search_runs([experiment_id], filter_string=f"tags.mlflow.parentRunId = '{trial_run_id}'")
        sources = {r.data.tags.get("energy_source", "unknown") for r in runs} or {"unknown"}
        return {"evaluator": self.name, "energy_source": ",".join(sorted(sources)), "figures": "measured",
                "accuracy_basis": accuracy_bases(self.cfg.pipeline.variants, choice), **load_tags(self.cfg.trial.load)}

    def study_tags(self) -> dict[str, str]:
        return {}  # each trial's pipeline run records its own machine


def accuracy_bases(variants, choice: PipelineChoice) -> str:
    """Where the trial's accuracy figures come from, per stage: `asr=reference,qa=published` (fp32
    reference; plus a change published for that model and precision; or one published for the nearest model)."""
    return ",".join(f"{stage}={accuracy_basis(variants, stage, c.variant, c.precision)}"
                    for stage, c in choice.stages().items())
