"""The Optuna multi-objective study over the adaptation space, one MLflow child run per trial."""

from __future__ import annotations

import csv
import io
import logging
import math
import tempfile
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import optuna
from mlflow.tracking import MlflowClient
from mlflow.utils.mlflow_tags import MLFLOW_PARENT_RUN_ID
from omegaconf import DictConfig
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, TextColumn, TimeElapsedColumn
from rich.table import Table

from sustainable_ipa.config import core_budget
from sustainable_ipa.errors import UserError
from sustainable_ipa.fingerprint import this_machine
from sustainable_ipa.metrics.latency import sla_violation_s
from sustainable_ipa.progress import progress_bar
from sustainable_ipa.search.configurations import (ANSWERED_FROM, REPETITION_OF, REPETITIONS, configurations_pareto,
                                                   distinct_complete, first_evaluation, is_new_configuration)
from sustainable_ipa.search.evaluators import Evaluator
from sustainable_ipa.search.objectives import Objective, resolve_objectives
from sustainable_ipa.search.plots import plot_hypervolume, plot_pareto
from sustainable_ipa.search.samplers import make_sampler
from sustainable_ipa.search.slots import TrialSlots
from sustainable_ipa.search.space import (ALLOCATION, NUMERICS, PipelineChoice, SearchSpace, allocation_label,
                                          configured_space, numerics_label)
from sustainable_ipa.search.storage import make_storage
from sustainable_ipa.tracking.runs import (end_on_stop, end_run, ending_status, kill_run_tree, log, owner_tags,
                                           tracked_run)
from sustainable_ipa.tracking.signals import signals_held

MLFLOW_RUN_ATTR = "mlflow_parent_run_id"
TRIAL_RUN_ATTR = "mlflow_run_id"
SLA_CONSTRAINT = "sla_violation_s"


@dataclass
class StudyOutcome:
    study: optuna.Study
    objectives: list[Objective]
    parent_run_id: str
    pareto: list[optuna.trial.FrozenTrial]


def suggest(trial: optuna.Trial, space: SearchSpace) -> PipelineChoice:
    """Variant, batch size and numerics (one precision/runtime pair among those a run can build) per stage, then
    threads and replicas: per stage where every combination fits the cores, else one allocation among those that
    fit (`space.ALLOCATION`). Every trial fits, and none draws a pair a run would refuse."""
    per_stage = ("variant", "batch_size") + (() if space.cores_bind else ("threads", "replicas"))
    for stage, options in space.stages.items():  # in the order of the search before allocations: same draws
        for knob in per_stage:
            trial.suggest_categorical(f"{stage}.{knob}", list(options["variants" if knob == "variant" else knob]))
        trial.suggest_categorical(f"{stage}.{NUMERICS}", [numerics_label(*pair) for pair in options[NUMERICS]])
    if space.cores_bind:
        trial.suggest_int(ALLOCATION, 0, len(space.allocations()) - 1)  # ordered by cores: an ordinal scale
    return space.choice_from_params(trial.params)


def open_study(cfg: DictConfig, objectives: list[Objective]) -> optuna.Study:
    storage = make_storage(cfg.search.storage, cfg.search.heartbeat_s, cfg.search.storage_timeout_s)
    directions = [o.direction for o in objectives]
    study = optuna.create_study(study_name=cfg.search.study_name, storage=storage, directions=directions,
                                sampler=make_sampler(cfg.search.sampler, cfg.search.seed), load_if_exists=True)
    stored = [d.name.lower() for d in study.directions]
    if stored != directions:
        raise UserError(f"study '{cfg.search.study_name}' exists with directions {stored}, not {directions}",
                        "pass a new search.study_name or the objectives it was created with")
    names = study.user_attrs.get("objectives")
    if names is None:
        study.set_user_attr("objectives", [o.name for o in objectives])
    elif names != [o.name for o in objectives]:
        raise UserError(f"study '{cfg.search.study_name}' optimises {names}", "pass a new search.study_name")
    # What the threads and replicas parameters mean depends on the cores (`suggest`): a study keeps its own.
    cores = core_budget(cfg)
    space = configured_space(cfg, cores)
    allocations = [allocation_label(a) for a in space.allocations()]
    numerics = {stage: [numerics_label(*pair) for pair in o[NUMERICS]] for stage, o in space.stages.items()}
    stored_numerics = study.user_attrs.get(NUMERICS)
    if stored_numerics is None and study.get_trials(deepcopy=False):
        raise UserError(f"study '{cfg.search.study_name}' was made by an older search (without precision and "
                        "runtime)", "pass a new search.study_name")
    if stored_numerics is None:
        study.set_user_attr(NUMERICS, numerics)
    elif stored_numerics != numerics:
        raise UserError(f"study '{cfg.search.study_name}' searches other precisions and runtimes "
                        f"({stored_numerics}) than this space ({numerics})",
                        "pass a new search.study_name, or the search.space.<stage>.precision|runtime it was made with")
    stored_cores = study.user_attrs.get("max_cores")
    if stored_cores is None and study.get_trials(deepcopy=False):
        raise UserError(f"study '{cfg.search.study_name}' was made by an older search (it pruned configurations "
                        "over the cores)", "pass a new search.study_name")
    if stored_cores is None:  # allocations first: a worker that reads max_cores finds them too
        study.set_user_attr(ALLOCATION, allocations)
        study.set_user_attr("max_cores", cores)
    elif study.user_attrs.get(ALLOCATION) != allocations:
        raise UserError(f"study '{cfg.search.study_name}' allocates {stored_cores} cores among other threads and "
                        f"replicas than this space on {cores} cores",
                        f"pass a new search.study_name, or hardware.cores={stored_cores} and its space")
    return study


def run_study(cfg: DictConfig, evaluator: Evaluator, client: MlflowClient, experiment_id: str,
              console: Console | None = None) -> StudyOutcome:
    """Run the study until it holds exactly `search.n_trials` completed trials, counting those of earlier or
    concurrent workers: rerunning the same command resumes it. Every trial fits the cores (`suggest`), so each one
    counts; a trial drawn when the trials before it already make up the total ends PRUNED, unevaluated (`slots`)."""
    console = console or Console(stderr=True)
    objectives = resolve_objectives(cfg.search.objectives)
    space = configured_space(cfg, core_budget(cfg))
    study = open_study(cfg, objectives)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    _close_stale(study, client)
    tags = {"study_name": study.study_name, "evaluator": evaluator.name, "sampler": cfg.search.sampler,
            **evaluator.study_tags()}
    with ParentRun.opened(study, client, experiment_id, tags) as parent:
        space_size = len(space.all_choices())
        log(client, parent.run_id, params={"search.objectives": ",".join(o.name for o in objectives),
                                           "search.space_size": space_size})
        # Waiting for the last slots polls the storage at most every heartbeat_s / 4 (staleness takes 2 ×
        # heartbeat_s): a hundred workers waiting for a study's last trials must not flood the database or proxy.
        slots = TrialSlots(study, int(cfg.search.n_trials), max_poll_s=max(1.0, cfg.search.heartbeat_s / 4),
                           say=lambda line: console.print(f"[dim]{line}[/]"), space_size=space_size)
        objective = TrialObjective(study, space, objectives, evaluator, slots, client, experiment_id, parent,
                                   cfg.trial.sla_s)
        optimize_with_progress(cfg, study, objective, slots, space_size, evaluator.deterministic, console)
        _close_stale(study, client)  # a dead worker's trial that Optuna failed during this search: end its runs
        pareto = feasible_pareto(study)
        parent.follow()
        if not pareto:
            raise no_trial_meets_sla(study, space, float(cfg.trial.sla_s), float(cfg.search.load_rps))
        record_pareto(study, pareto, objectives, space, client, parent.run_id)
    console.print(pareto_table(pareto, objectives, space))
    return StudyOutcome(study, objectives, parent.run_id, pareto)


@dataclass
class TrialObjective:
    """What `study.optimize` calls per trial: the trial's configuration evaluated in a run of its own under the
    study's parent (or answered from the study, or given way when the study is full); the objectives' values."""
    study: optuna.Study
    space: SearchSpace
    objectives: list[Objective]
    evaluator: Evaluator
    slots: TrialSlots
    client: MlflowClient
    experiment_id: str
    parent: ParentRun
    sla_s: float

    def __call__(self, trial: optuna.Trial) -> list[float]:
        choice = suggest(trial, self.space)
        if self.slots.surplus(trial):
            self.slots.give_way(trial)
        first = first_evaluation(self.study, trial.params)
        if first is not None and self.evaluator.deterministic:
            return answer_from(trial, first)
        if first is not None:
            trial.set_user_attr(REPETITION_OF, first.number)
        tags = {"study_name": self.study.study_name, **({REPETITION_OF: str(first.number)} if first else {})}
        with tracked_run(self.client, self.experiment_id, f"trial-{trial.number}", parent_run_id=self.parent.follow(),
                         tags=tags) as run_id:
            trial.set_user_attr(TRIAL_RUN_ATTR, run_id)
            trial.set_user_attr("machine", this_machine().key)  # where it ran (a composed trial: see the profiles')
            return self._evaluate(trial, choice, run_id)

    def _evaluate(self, trial: optuna.Trial, choice: PipelineChoice, run_id: str) -> list[float]:
        """The evaluator's metrics of `choice`, in the trial (SLA constraint, user attributes) and in its run."""
        evaluator, objectives, client = self.evaluator, self.objectives, self.client
        metrics = evaluator.evaluate(choice, run_id)
        log(client, run_id, tags=evaluator.labels(choice, run_id))
        missing = [o.metric for o in objectives if metric_value(metrics, o.metric) is None]
        if missing:
            raise UserError(f"evaluator '{evaluator.name}' gives no {', '.join(missing)}",
                            "choose objectives the evaluator measures")
        violation = sla_violation_s(metric_value(metrics, "latency_p99_s"), self.sla_s)
        trial.set_constraint(SLA_CONSTRAINT, violation)
        for name, value in metrics.items():
            trial.set_user_attr(name, value)
        values = [metric_value(metrics, o.metric) for o in objectives]
        log(client, run_id, params={"trial": trial.number, **choice.params()},
            metrics={**{k: v for k, v in metrics.items() if math.isfinite(v)}, SLA_CONSTRAINT: violation,
                     **{f"objective_{o.name}": v for o, v in zip(objectives, values)}})
        return values


def optimize_with_progress(cfg: DictConfig, study: optuna.Study, objective: TrialObjective, slots: TrialSlots,
                           space_size: int, deterministic: bool, console: Console) -> None:
    """The trials this worker runs toward `slots.n_trials` evaluated configurations, with a progress bar that
    counts configurations (and, apart, those proposed again); a line instead when none is left to run."""
    if space_size < int(cfg.search.n_trials):
        console.print(f"search.n_trials={cfg.search.n_trials} but the space has {space_size} configuration"
                      f"{'s' if space_size > 1 else ''}: the study ends once each is evaluated")
    done = slots.complete()
    if done >= slots.n_trials:
        console.print(f"study {study.study_name} already holds {done} evaluated configurations (search.n_trials="
                      f"{cfg.search.n_trials}): none to run; pass a larger search.n_trials to extend it")
    with progress_bar(console, TextColumn("study {task.fields[name]}"), BarColumn(), MofNCompleteColumn(),
                      TextColumn("configurations{task.fields[repeats]}"), TimeElapsedColumn()) as progress:
        task = progress.add_task("", total=max(slots.n_trials, done), completed=done, name=study.study_name,
                                 repeats="")
        repeats = 0

        def advance(_study, trial):
            nonlocal repeats
            if trial.state != optuna.trial.TrialState.COMPLETE:
                return
            if is_new_configuration(trial):
                progress.advance(task)
            else:
                repeats += 1
                progress.update(task, repeats=f" ({repeats} proposed again: answered from the study"
                                + (")" if deterministic else " or run again as repetitions)"))

        if done < slots.n_trials and slots.wait():
            # Every worker stops once the study as a whole holds exactly n_trials evaluated configurations.
            study.optimize(objective, catch=(), callbacks=[advance, slots.after_trial])


def record_pareto(study: optuna.Study, pareto: list[optuna.trial.FrozenTrial], objectives: list[Objective],
                  space: SearchSpace, client: MlflowClient, parent_run_id: str) -> None:
    """The Pareto set in the parent run: pareto.csv, its size and the trials' counts, the Pareto and hypervolume
    plots."""
    client.log_text(parent_run_id, pareto_csv(pareto, objectives, space), "pareto.csv")
    log(client, parent_run_id, metrics={"pareto_size": len(pareto), "trials_complete": _complete(study),
                                        "configurations_evaluated": distinct_complete(study)})
    with tempfile.TemporaryDirectory() as folder:
        names = [o.name for o in objectives]
        labels = {t.number: numerics_of(space.choice_from_params(t.params)) for t in pareto}
        for path in [*plot_pareto(study, names, Path(folder), labels), plot_hypervolume(study, Path(folder))]:
            client.log_artifact(parent_run_id, str(path), "plots")


@dataclass
class ParentRun:
    """The study's one MLflow parent run, as this worker follows it.

    A resumed search and later workers find it recorded in the study; the first worker makes it. Storages offer
    no compare-and-set, so workers starting a new study together can each record their own: the last write stays,
    and every worker moves the trial runs it finds under another parent to that one (`follow`, before each trial
    and at the end). A worker deletes only a run it made itself, as soon as it sees that run has lost, so that a
    worker killed later (SIGKILL: no cleanup) leaves no second parent RUNNING.
    """
    study: optuna.Study
    client: MlflowClient
    experiment_id: str
    run_id: str  # the study's parent as this worker last read it
    created: str | None  # the run this worker made and recorded, if it did

    @classmethod
    @contextmanager
    def opened(cls, study: optuna.Study, client: MlflowClient, experiment_id: str,
               tags: dict) -> Iterator["ParentRun"]:
        """The parent, RUNNING while this worker searches, then FINISHED, FAILED or KILLED like any run."""
        parent = cls._find_or_make(study, client, experiment_id, tags)
        client.update_run(parent.run_id, status="RUNNING")  # a resumed study's parent runs again
        log(client, parent.run_id, tags=tags)
        error = None
        try:
            yield parent
        except BaseException as err:
            error = err
            raise
        finally:
            try:
                parent._close(ending_status(error))
            except Exception as close_error:
                if error is None:
                    raise
                # the error that stopped the search is the one to report
                logging.getLogger(__name__).warning("could not close the study's parent run: %s", close_error)

    @classmethod
    def _find_or_make(cls, study: optuna.Study, client: MlflowClient, experiment_id: str, tags: dict) -> "ParentRun":
        found = recorded_parent(study)
        if found is not None:
            return cls(study, client, experiment_id, found, created=None)
        with signals_held():  # made and known to end_open_runs, or neither
            mine = client.create_run(experiment_id, run_name=f"study-{study.study_name}",
                                     tags={**tags, **owner_tags()}).info.run_id
            end_on_stop(client, mine)
        try:
            found = recorded_parent(study)  # making the run takes long enough for another worker to record one
            if found is None:
                study.set_user_attr(MLFLOW_RUN_ATTR, mine)
                return cls(study, client, experiment_id, mine, created=mine)
        except BaseException as err:
            end_run(client, mine, ending_status(err))
            raise
        end_run(client, mine, ending_status(None))  # lost the race: ended, then deleted, never left open
        client.delete_run(mine)
        return cls(study, client, experiment_id, found, created=None)

    def follow(self) -> str:
        """The parent the study records now; trial runs under the one this worker followed move to it."""
        winner = recorded_parent(self.study)
        if winner not in (None, self.run_id):
            self._move_children(self.run_id, winner)
            if self.run_id == self.created:  # ended, then deleted: a deleted run left open fails a later stop
                end_run(self.client, self.created, ending_status(None))
                self.client.delete_run(self.created)
            self.run_id = winner
        return self.run_id

    def _move_children(self, old: str, new: str) -> None:
        # Re-query until none is left: a moved run leaves the result set, so paging by offset would skip runs.
        query = f"tags.`{MLFLOW_PARENT_RUN_ID}` = '{old}'"
        while runs := self.client.search_runs([self.experiment_id], filter_string=query, max_results=1000):
            for run in runs:
                self.client.set_tag(run.info.run_id, MLFLOW_PARENT_RUN_ID, new)

    def _close(self, status: str) -> None:
        self.follow()
        if self.run_id != self.created:  # another worker's run: this process ends it too, but does not own it
            end_on_stop(self.client, self.run_id)
        end_run(self.client, self.run_id, status)
        if self.created not in (None, self.run_id):  # this worker's run lost: what others put under it since moves
            self._move_children(self.created, self.run_id)


def recorded_parent(study: optuna.Study) -> str | None:
    """The parent run recorded in the study, read from the storage each time."""
    return study.user_attrs.get(MLFLOW_RUN_ATTR)


def _close_stale(study: optuna.Study, client: MlflowClient) -> None:
    """Trials of a worker that died (SIGKILL, power loss): fail them now (heartbeat), end their runs KILLED."""
    try:
        optuna.storages.fail_stale_trials(study)
    except Exception:  # storages without heartbeat support (journal) have nothing to fail here
        pass
    for trial in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.FAIL,)):
        run_id = trial.user_attrs.get(TRIAL_RUN_ATTR)
        if run_id and client.get_run(run_id).info.status == "RUNNING":
            kill_run_tree(client, run_id)  # the trial's run and the pipeline runs under it


def metric_value(metrics: dict[str, float], name: str) -> float | None:
    """The metric `name`, or its mean over repetitions (`<name>_mean`); None where neither was recorded."""
    value = metrics.get(name, metrics.get(f"{name}_mean"))
    return None if value is None else float(value)


def _complete(study: optuna.Study) -> int:
    return len(study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,)))


def feasible_pareto(study: optuna.Study) -> list[optuna.trial.FrozenTrial]:
    """Each configuration of the Pareto set once, meeting the SLA (`configurations.py`)."""
    return configurations_pareto(study)


def answer_from(trial: optuna.Trial, first: optuna.trial.FrozenTrial) -> list[float]:
    """A configuration the study has evaluated, proposed again: the first trial's figures, evaluated and logged
    nowhere again (a deterministic evaluator would give the same)."""
    trial.set_user_attr(ANSWERED_FROM, first.number)
    if TRIAL_RUN_ATTR in trial.user_attrs:  # a retry inherits its failed trial's attributes: this one has no run
        trial.set_user_attr(TRIAL_RUN_ATTR, None)
    for name, value in first.constraints.items():
        trial.set_constraint(name, value)
    return list(first.values)


def no_trial_meets_sla(study: optuna.Study, space: SearchSpace, sla_s: float, load_rps: float) -> UserError:
    """The error for a study with no trial within the SLA, naming what the trials show rather than every fix."""
    trials = study.get_trials(deepcopy=False)
    complete = [t for t in trials if t.state == optuna.trial.TrialState.COMPLETE]
    problem = (f"no trial of study '{study.study_name}' meets the SLA of {sla_s:g} s: {len(complete)} of {len(trials)} "
               "trials completed")
    if not complete:
        return UserError(problem, "see why the trials failed (optuna-dashboard, or the trial runs in MLflow)")
    space_size = len(space.all_choices())
    tried = len({tuple(sorted(t.params.items())) for t in complete})
    p99_s = {t.number: metric_value(t.user_attrs, "latency_p99_s") for t in complete}
    best = min(complete, key=lambda t: p99_s[t.number] if p99_s[t.number] is not None else math.inf)
    best_p99 = "unknown" if p99_s[best.number] is None else f"{p99_s[best.number]:.3g} s"
    problem += (f", {tried} of the {space_size} configurations that fit tried; best p99 {best_p99} "
                f"(trial {best.number}: {describe(space.choice_from_params(best.params))})")
    fastest_rps = max((metric_value(t.user_attrs, "throughput_rps") or 0.0 for t in complete))
    if fastest_rps < load_rps:
        problem += f"; none keeps up with {load_rps:g} rps (the fastest serves {fastest_rps:.3g} rps)"
    if tried >= space_size:
        fix = ("no configuration of search.space meets it on these cores: raise trial.sla_s, lower search.load_rps, "
               "widen search.space or allow more hardware.cores")
    elif fastest_rps < load_rps:
        fix = (f"run more trials (search.n_trials > {len(complete)}), lower search.load_rps, "
               "or allow more hardware.cores")
    else:
        fix = f"run more trials (search.n_trials > {len(complete)}) or raise trial.sla_s"
    return UserError(problem, fix)


def describe(choice: PipelineChoice) -> str:
    """`yolov5n b1 t1 r2 fp32/torch + resnet18 b4 t1 r1 int8/openvino`"""
    return " + ".join(f"{c.variant} b{c.batch_size} t{c.threads} r{c.replicas} {numerics_label(*c.numerics)}"
                      for c in choice.stages().values())


def numerics_of(choice: PipelineChoice) -> str:
    """`fp32/torch + int8/openvino`: each stage's precision and runtime, in pipeline order."""
    return " + ".join(numerics_label(*c.numerics) for c in choice.stages().values())


def pareto_rows(pareto, objectives, space: SearchSpace) -> list[dict]:
    """One row per configuration: its first trial, its knobs, its objectives (the mean of its repetitions)."""
    return [{"trial": t.number, **space.choice_from_params(t.params).params(),
             **{o.name: v for o, v in zip(objectives, t.values)}, REPETITIONS: t.user_attrs.get(REPETITIONS, 1)}
            for t in pareto]


def pareto_csv(pareto, objectives, space: SearchSpace) -> str:
    rows = pareto_rows(pareto, objectives, space)
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(rows[0]))
    writer.writeheader()
    writer.writerows(rows)
    return buffer.getvalue()


def pareto_table(pareto, objectives, space: SearchSpace) -> Table:
    repeated = any(t.user_attrs.get(REPETITIONS, 1) > 1 for t in pareto)
    table = Table(title=f"Pareto set ({len(pareto)} configurations meeting the SLA"
                        + (", each the mean of its runs)" if repeated else ")"))
    for column in ["trial", *space.stages, *(o.name for o in objectives), *(["runs"] if repeated else [])]:
        table.add_column(column)
    for t in pareto:
        table.add_row(str(t.number), *describe(space.choice_from_params(t.params)).split(" + "),
                      *(f"{v:.4g}" for v in t.values), *([str(t.user_attrs[REPETITIONS])] if repeated else []))
    return table
