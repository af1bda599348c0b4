"""A study counts configurations, not trials: one proposed again is answered from the study (a deterministic
evaluator) or measured again as a repetition (one that measures), never a new point; tables list each once."""

from __future__ import annotations

import csv
import io
from statistics import fmean

import optuna
import pytest
from rich.console import Console

from sustainable_ipa.search.configurations import (ANSWERED_FROM, REPETITION_OF, REPETITIONS, configurations_pareto,
                                                   first_evaluation, is_new_configuration)
from sustainable_ipa.search.plots import plotted_points
from sustainable_ipa.search.slots import TrialSlots
from sustainable_ipa.search.objectives import resolve_objectives
from sustainable_ipa.search.study import TRIAL_RUN_ATTR, answer_from, open_study, run_study
from sustainable_ipa.tracking.store import open_store

OBJECTIVES = "search.objectives=[accuracy,energy_per_request]"


class CountingEvaluator:
    """Fake figures, and a record of every choice it was asked to evaluate. `favourite`: a choice (its params)
    that dominates every other, its energy rising 0.1 J with each evaluation."""

    name = "profile"

    def __init__(self, deterministic: bool, favourite: dict | None = None):
        self.deterministic = deterministic
        self.favourite = favourite
        self.asked: list[dict] = []

    def evaluate(self, choice, parent_run_id=None):
        params = choice.params()
        self.asked.append(params)
        if params == self.favourite:
            return {"accuracy_reference": 0.9, "energy_j_per_request": 1.0 + 0.1 * self.asked.count(params) - 0.1,
                    "latency_p99_s": 0.1, "throughput_rps": 10.0, "cost_cores": 1.0}
        return {"accuracy_reference": 0.5, "energy_j_per_request": 5.0 + 0.01 * len(self.asked),
                "latency_p99_s": 0.1, "throughput_rps": 10.0, "cost_cores": 1.0}

    def labels(self, choice, trial_run_id):
        return {"evaluator": self.name, "energy_source": "estimate", "figures": "composed"}

    def study_tags(self):
        return {}


def study_of(search_cfg, client, evaluator, *overrides, console=None, enqueue=()):
    cfg = search_cfg(OBJECTIVES, *overrides)
    experiment_id = open_store(cfg.tracking.uri, cfg.tracking.experiment, cfg.tracking.artifact_root)
    if enqueue:
        study = open_study(cfg, resolve_objectives(cfg.search.objectives))
        for params in enqueue:
            study.enqueue_trial(params)
    return run_study(cfg, evaluator, client, experiment_id, console)


def test_a_configuration_proposed_again_is_answered_from_the_study_and_never_evaluated_twice(search_cfg, client):
    # The random sampler on a 16-configuration space draws about 54 times before it has drawn every one of them.
    console = Console(record=True, width=300)
    evaluator = CountingEvaluator(deterministic=True)
    outcome = study_of(search_cfg, client, evaluator, "search.n_trials=40", console=console)
    complete = outcome.study.get_trials(states=(optuna.trial.TrialState.COMPLETE,))
    new = [t for t in complete if is_new_configuration(t)]
    answered = [t for t in complete if not is_new_configuration(t)]
    assert len(evaluator.asked) == len(new) == 16  # each configuration evaluated once, and the study ends there
    assert len({tuple(sorted(t.params.items())) for t in new}) == 16
    assert answered, "the sampler drew no configuration twice: the test shows nothing"
    by_number = {t.number: t for t in new}
    for t in answered:
        first = by_number[t.user_attrs[ANSWERED_FROM]]
        assert t.params == first.params and t.values == first.values and t.constraints == first.constraints
        assert TRIAL_RUN_ATTR not in t.user_attrs  # nothing logged for it
    assert "search.n_trials=40 but the space has 16 configurations" in console.export_text()
    numbers = [t.number for t in outcome.pareto]
    assert len(numbers) == len({tuple(sorted(t.params.items())) for t in outcome.pareto})  # each once
    assert set(numbers) <= set(by_number)
    values, best, _, plotted = plotted_points(outcome.study)  # the plots: one point per configuration, as the tables
    assert len(values) == 16 and sorted(plotted) == sorted(by_number)
    assert sorted(n for n, b in zip(plotted, best) if b) == sorted(numbers)


def test_a_configuration_a_measuring_evaluator_is_given_again_is_a_repetition_and_the_tables_show_the_mean(
        search_cfg, client, tmp_path):
    from sustainable_ipa.search.space import SearchSpace

    cfg = search_cfg(OBJECTIVES)
    space = SearchSpace.from_config(cfg.search.space, cfg.pipeline, 3)
    stages = [("detector", "yolov5n"), ("classifier", "resnet18")]
    favourite_params = {f"{stage}.{knob}": value for stage, variant in stages
                        for knob, value in [("variant", variant), ("batch_size", 1), ("threads", 1), ("replicas", 1),
                                            ("numerics", "fp32/torch")]}
    favourite = space.choice_from_params(favourite_params).params()
    evaluator = CountingEvaluator(deterministic=False, favourite=favourite)
    outcome = study_of(search_cfg, client, evaluator, "search.n_trials=3",
                       enqueue=[favourite_params] * 3)
    complete = outcome.study.get_trials(states=(optuna.trial.TrialState.COMPLETE,))
    assert [t.user_attrs.get(REPETITION_OF) for t in complete[:3]] == [None, 0, 0]
    assert len([t for t in complete if is_new_configuration(t)]) == 3  # the repetitions took no slot
    assert evaluator.asked.count(favourite) == 3  # measured three times: each repetition is a run
    for t in complete[1:3]:  # each repetition has its own run, tagged as one
        assert client.get_run(t.user_attrs[TRIAL_RUN_ATTR]).data.tags[REPETITION_OF] == "0"
    [row] = outcome.pareto  # the favourite dominates: listed once, with the mean of its three runs
    assert row.number == 0 and row.user_attrs[REPETITIONS] == 3
    assert row.values[1] == pytest.approx(fmean([1.0, 1.1, 1.2]))
    pareto_csv = client.download_artifacts(outcome.parent_run_id, "pareto.csv", str(tmp_path))
    [written] = list(csv.DictReader(io.open(pareto_csv)))
    assert written["trial"] == "0" and written[REPETITIONS] == "3"
    assert float(written["energy_per_request"]) == pytest.approx(1.1)


def test_the_pareto_set_is_over_each_configurations_mean_and_its_sla():
    study = optuna.create_study(directions=["minimize"])
    distribution = {"x": optuna.distributions.CategoricalDistribution([0, 1])}
    for x, value, violation, attrs in [(0, 1.0, 0.0, {}), (0, 3.0, 0.5, {REPETITION_OF: 0}),
                                       (1, 1.5, 0.0, {}), (1, 1.5, 0.0, {ANSWERED_FROM: 2})]:
        study.add_trial(optuna.trial.create_trial(params={"x": x}, distributions=distribution, values=[value],
                                                  constraints={"sla_violation_s": violation}, user_attrs=attrs))
    # x=0: mean 2.0 and mean violation 0.25 (misses the SLA on average); x=1: 1.5, its answer not counted twice
    [best] = configurations_pareto(study)
    assert (best.number, best.params, best.values, best.user_attrs[REPETITIONS]) == (2, {"x": 1}, [1.5], 1)


def test_a_sampler_that_only_repeats_itself_is_stopped_with_a_line_that_says_so():
    study = optuna.create_study()
    lines = []
    slots = TrialSlots(study, 5, say=lines.append, max_repeats_in_row=3)
    for _ in range(10):
        study.enqueue_trial({"x": 0})

    def objective(trial):
        trial.suggest_categorical("x", [0, 1])
        first = first_evaluation(study, trial.params)
        return answer_from(trial, first) if first else 1.0

    study.optimize(objective, callbacks=[slots.after_trial])
    assert len(study.get_trials(states=(optuna.trial.TrialState.COMPLETE,))) == 4 and slots.complete() == 1
    assert lines == ["the sampler proposed 3 configurations already evaluated in a row: stopped with 1 of 5 evaluated "
                     "(search.sampler=random or bruteforce covers the rest)"]
