"""A study counts configurations, not trials: on a discrete space a sampler proposes configurations it has already
evaluated (TPE does, often, once the space is mostly tried), and each must not come back as a new point.

The first trial of a configuration is its evaluation. A later trial of the same parameters is either
- `answered_from` that first trial, when the evaluator is deterministic (the profile evaluator composes the same
  figures every time): it completes with the first trial's values and constraint, so that the sampler learns, but
  nothing is evaluated or logged again; or
- a `repetition_of` it, when the evaluator measures (the run evaluator): one more run of that configuration.

Neither counts towards `search.n_trials`, and the tables list each configuration once, with the mean of its
repetitions (`configurations_pareto`).
"""

from __future__ import annotations

from collections import defaultdict
from statistics import fmean

import optuna
from optuna.trial import FrozenTrial, TrialState

ANSWERED_FROM = "answered_from"
REPETITION_OF = "repetition_of"
REPETITIONS = "repetitions"  # on a row of the Pareto set: how many trials measured that configuration
FIRST = "first_trial"


def is_new_configuration(trial: FrozenTrial) -> bool:
    return ANSWERED_FROM not in trial.user_attrs and REPETITION_OF not in trial.user_attrs


def first_evaluation(study: optuna.Study, params: dict) -> FrozenTrial | None:
    """The completed trial that first evaluated these parameters, if any."""
    for trial in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)):
        if is_new_configuration(trial) and trial.params == params:
            return trial
    return None


def distinct_complete(study: optuna.Study) -> int:
    """Configurations evaluated: completed trials, less answers and repetitions."""
    return sum(is_new_configuration(t) for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)))


def measurements(study: optuna.Study) -> dict[int, list[FrozenTrial]]:
    """Per configuration (the number of its first trial), the completed trials that measured it: its first, its
    repetitions and, should two workers have drawn it at the same moment, the other's; never an answer (a copy)."""
    groups: dict[tuple, list[FrozenTrial]] = defaultdict(list)
    params_of: dict[int, tuple] = {}
    complete = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    for trial in complete:
        if is_new_configuration(trial):
            params_of[trial.number] = key = tuple(sorted(trial.params.items()))
            groups[key].append(trial)
    for trial in complete:
        if trial.user_attrs.get(REPETITION_OF) in params_of:
            groups[params_of[trial.user_attrs[REPETITION_OF]]].append(trial)
    return {trials[0].number: trials for trials in groups.values()}


def configuration_means(study: optuna.Study) -> list[FrozenTrial]:
    """Each configuration evaluated, once: its first trial carrying the mean values and constraints of its
    repetitions and their count (`REPETITIONS`)."""
    means = []
    for first, trials in measurements(study).items():
        mean = optuna.trial.create_trial(
            params=trials[0].params, distributions=trials[0].distributions,
            values=[fmean(t.values[i] for t in trials) for i in range(len(trials[0].values))],
            constraints={k: fmean(t.constraints.get(k, 0.0) for t in trials) for k in trials[0].constraints},
            user_attrs={**trials[0].user_attrs, REPETITIONS: len(trials), FIRST: first})
        mean.number = first
        means.append(mean)
    return means


def configurations_pareto(study: optuna.Study) -> list[FrozenTrial]:
    """The Pareto set over configurations that meet every constraint (on the mean of their repetitions), each once
    (`configuration_means`)."""
    means = configuration_means(study)
    # Optuna's own feasibility and non-domination, on an in-memory study of the means
    front = optuna.create_study(directions=study.directions)
    for mean in means:
        front.add_trial(mean)
    best = {t.user_attrs[FIRST] for t in front.best_trials}
    return sorted((m for m in means if m.number in best), key=lambda t: t.number)
