"""`python src/search.py`: the study with the configured evaluator, recorded in MLflow."""

from __future__ import annotations

from mlflow.tracking import MlflowClient
from omegaconf import DictConfig
from rich.console import Console

from sustainable_ipa.config import available_cores, validate
from sustainable_ipa.errors import UserError
from sustainable_ipa.search.evaluators import ProfileEvaluator, RunEvaluator
from sustainable_ipa.search.objectives import resolve_objectives
from sustainable_ipa.search.space import SearchSpace
from sustainable_ipa.search.study import StudyOutcome, run_study
from sustainable_ipa.tracking.store import open_store


def search_job(cfg: DictConfig, console: Console | None = None) -> StudyOutcome:
    console = console or Console(stderr=True)
    validate(cfg)
    resolve_objectives(cfg.search.objectives)  # bad input fails before anything is measured
    space = SearchSpace.from_config(cfg.search.space, cfg.pipeline.variants, available_cores(cfg.hardware))
    if cfg.search.evaluator == "profile":
        from sustainable_ipa.search.profiling_job import profile_job

        evaluator = ProfileEvaluator(profile_job(cfg, console, space), cfg)
    elif cfg.search.evaluator == "run":
        evaluator = RunEvaluator(cfg)
    else:
        raise UserError(f"unknown search.evaluator '{cfg.search.evaluator}'", "pass search.evaluator=profile or run")
    experiment_id = open_store(cfg.tracking.uri, cfg.tracking.experiment, cfg.tracking.artifact_root)
    return run_study(cfg, evaluator, MlflowClient(tracking_uri=cfg.tracking.uri), experiment_id, console)
