"""`python src/search.py`: the study with the configured evaluator, recorded in MLflow."""

from __future__ import annotations

from contextlib import ExitStack

from mlflow.tracking import MlflowClient
from omegaconf import DictConfig
from rich.console import Console

from sustainable_ipa.config import core_budget, validate
from sustainable_ipa.search.evaluators import ProfileEvaluator, RunEvaluator
from sustainable_ipa.search.lazy_profiles import LazyProfiles
from sustainable_ipa.search.objectives import resolve_objectives
from sustainable_ipa.search.profiling_job import profile_job
from sustainable_ipa.search.space import configured_space, skipped_line
from sustainable_ipa.search.study import StudyOutcome, open_study, run_study
from sustainable_ipa.tracking.links import print_where_to_look
from sustainable_ipa.tracking.store import open_store


def search_job(cfg: DictConfig, console: Console | None = None) -> StudyOutcome:
    console = console or Console(stderr=True)
    # Bad input fails before anything is measured: profiling the space takes minutes.
    validate(cfg)
    objectives = resolve_objectives(cfg.search.objectives)
    space = configured_space(cfg, core_budget(cfg))
    open_study(cfg, objectives)  # the storage, the sampler, a stored study of other objectives
    with ExitStack() as stack:
        if cfg.search.evaluator == "profile" and cfg.profiling.lazy:
            evaluator = ProfileEvaluator(stack.enter_context(LazyProfiles(cfg, console, space)), cfg)
        elif cfg.search.evaluator == "profile":
            evaluator = ProfileEvaluator(profile_job(cfg, console, space), cfg)
        else:
            if skipped_line(space):  # the profiling job says it where profiles are used
                console.print(f"[dim]{skipped_line(space)}[/]")
            evaluator = RunEvaluator(cfg)
        experiment_id = open_store(cfg.tracking.uri, cfg.tracking.experiment, cfg.tracking.artifact_root)
        outcome = run_study(cfg, evaluator, MlflowClient(tracking_uri=cfg.tracking.uri), experiment_id, console)
    print_where_to_look(console, cfg.tracking.uri, cfg.tracking.experiment, experiment_id, outcome.parent_run_id)
    return outcome
