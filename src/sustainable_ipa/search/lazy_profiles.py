"""Profiles made when a trial first needs them (`profiling.lazy=true`).

The profile evaluator asks for the table of each choice it composes (`table_for`); of that choice's stages, the lines
(variant × threads × precision × runtime, over the space's batch sizes) the table lacks are timed then, with the
same reductions as an upfront plan (a few batch sizes timed and the rest fitted, sequential stopping), and the table
is saved to the cache at once. A study then costs the options its trials visit, not the whole space; the plan
printed first says at most how much that can be. The energy session and the MLflow profiling run open at the first
line timed and close with the study.
"""

from __future__ import annotations

import time
from contextlib import ExitStack

from mlflow.tracking import MlflowClient
from omegaconf import DictConfig
from rich.console import Console
from rich.markup import escape

from sustainable_ipa.errors import UserError
from sustainable_ipa.search.profiler import plan_profiles, profile_space
from sustainable_ipa.search.profiles import ProfileTable
from sustainable_ipa.search.profiling_job import (build_stage_model, energy_window_of, export, profiling_inputs,
                                                  profiling_params, profiling_session, profiling_tags, quality_limits,
                                                  reduction_of, warn_flagged)
from sustainable_ipa.search.profiling_plan import minutes
from sustainable_ipa.search.space import NUMERICS, PipelineChoice, SearchSpace
from sustainable_ipa.tracking.runs import log, tracked_run
from sustainable_ipa.tracking.store import open_store


def choice_space(space: SearchSpace, choice: PipelineChoice) -> SearchSpace:
    """The part of `space` a choice's profiles come from: per stage its variant, threads, precision and runtime, over
    all the stage's batch sizes (untimed ones are fitted from the timed)."""
    return SearchSpace({stage: {**space.stages[stage], "variants": (c.variant,), "threads": (c.threads,),
                                "replicas": (c.replicas,), NUMERICS: (c.numerics,)}
                        for stage, c in choice.stages().items()})


class LazyProfiles:
    """The profile table of a study that profiles as it goes: `table_for(choice)` returns a table holding the
    choice's profiles, timing those it lacks first. Use as a context manager: it ends what it opened."""

    def __init__(self, cfg: DictConfig, console: Console, space: SearchSpace):
        if cfg.profiling.budget_s:
            raise UserError(f"profiling.lazy=true and profiling.budget_s={cfg.profiling.budget_s}: a lazy study "
                            "profiles only what its trials visit, a budget narrows an upfront plan",
                            "set one of them (profiling.budget_s=0, or profiling.lazy=false)")
        self.cfg, self.console, self.space = cfg, console, space
        self.machine, self.path, cached, self.workload = profiling_inputs(cfg, console, space)
        self.fingerprint = self.machine.key
        self.table = cached or ProfileTable([], cfg.hardware.name, self.workload.items_per_request(), self.fingerprint)
        self.reduction = reduction_of(cfg.profiling)
        self.build = build_stage_model(cfg, self.workload, say=lambda line: console.print(escape(line)))
        self.stack = ExitStack()
        self.opened = None  # (energy session, client, run id) once a line is timed
        self.timed = self.fitted = self.builds = 0
        self.wall_s = 0.0
        self.announce()

    def announce(self) -> None:
        plan = plan_profiles(self.space, self.table, self.reduction)
        total = len(plan.timed) + len(plan.fitted) + plan.cached
        self.console.print(f"profiling plan (profiling.lazy=true): {total} profiles in the space, {plan.cached} "
                           f"cached; each option is profiled when a trial first needs it: at most {len(plan.timed)} "
                           f"timed on {len(plan.groups)} models ({plan.exports} OpenVINO exports) and "
                           f"{len(plan.fitted)} fitted, only those of the options the trials visit")

    def table_for(self, choice: PipelineChoice) -> ProfileTable:
        part = choice_space(self.space, choice)
        plan = plan_profiles(part, self.table, self.reduction)
        if not plan.timed and not plan.fitted:
            return self.table
        energy, _, _ = self.open()
        began = time.perf_counter()
        p = self.cfg.profiling
        self.table = profile_space(part, self.workload, self.build, int(p.repeats), energy_window_of(energy),
                                   energy.source_tag, self.cfg.hardware.name, self.table, limits=quality_limits(p),
                                   retries=int(p.retries), fingerprint=self.fingerprint, reduction=self.reduction)
        self.table.save(self.path)
        took_s = time.perf_counter() - began
        self.timed, self.fitted, self.builds = (self.timed + len(plan.timed), self.fitted + len(plan.fitted),
                                                self.builds + len(plan.groups))
        self.wall_s += took_s
        lines = ", ".join(f"{stage} {variant} {precision}/{runtime}" + (f" t{threads}" if threads else "")
                          for stage, variant, precision, runtime, threads in plan.groups)
        self.console.print(f"[dim]profiled {escape(lines)}: {len(plan.timed)} timed, {len(plan.fitted)} fitted in "
                           f"{minutes(took_s)} ({self.timed} timed so far, {minutes(self.wall_s)})[/]")
        return self.table

    def open(self):
        """The energy session and the MLflow profiling run, opened once, at the first line to time."""
        if self.opened is None:
            energy = self.stack.enter_context(profiling_session(self.cfg, self.console))
            experiment_id = open_store(self.cfg.tracking.uri, self.cfg.tracking.experiment,
                                       self.cfg.tracking.artifact_root)
            client = MlflowClient(tracking_uri=self.cfg.tracking.uri)
            tags = profiling_tags(self.cfg, energy, self.fingerprint)
            run_id = self.stack.enter_context(tracked_run(client, experiment_id, f"profile-{self.cfg.hardware.name}",
                                                          tags=tags))
            log(client, run_id, params=profiling_params(self.cfg.profiling))
            self.opened = (energy, client, run_id)
        return self.opened

    def __enter__(self) -> "LazyProfiles":
        return self

    def __exit__(self, *exc) -> bool:
        try:
            if self.opened is not None:
                _, client, run_id = self.opened
                client.log_text(run_id, self.table.to_csv(), "profiles.csv")
                log(client, run_id, params={"profiles_timed": self.timed, "profiles_fitted": self.fitted},
                    metrics={"profiling_wall_s": self.wall_s, "profiles_flagged": len(self.table.flagged())})
                self.console.print(f"profiles: {self.timed} timed and {self.fitted} fitted as the trials needed them "
                                   f"in {minutes(self.wall_s)} ({self.builds} builds), {len(self.table.rows)} in "
                                   f"{self.path}")
        finally:  # the run ends as the study did (FINISHED, KILLED, FAILED), and the energy lock is let go
            self.stack.__exit__(*exc)
        if exc[0] is None:
            warn_flagged(self.table, self.console)
            export(self.table, self.cfg.profiling, self.console)
        return False
