"""Exactly `search.n_trials` completed trials, however many workers share the study.

Stopping each worker once the study counts n_trials COMPLETE trials (Optuna's MaxTrialsCallback) lets every trial
already running then complete too: with W workers a study ends with up to n_trials + W - 1. Storages offer no
compare-and-set to reserve the last slots, but they do number trials atomically (the study's row is locked while a
trial is created), and that order is enough:

- before asking for a trial, a worker waits while the trials COMPLETE or RUNNING already make up n_trials (one of
  them may still fail: its worker killed, its heartbeat stopping; then its retry takes the slot);
- a trial counts the trials numbered before it that are COMPLETE, RUNNING or WAITING (queued retries): if those make
  up n_trials it is surplus, ends PRUNED with the user attribute `surplus` and is never evaluated. Workers that pass
  the wait at the same moment for the last slot both get a trial; the one numbered later gives way.

A trial numbered below n_trials has fewer than n_trials trials before it and so never counts anything: the check
costs nothing until failures or a resume push numbers past n_trials. A surplus trial's parameters are drawn before
the check (run_study): Optuna's BruteForceSampler fails on a finished trial without parameters, and counts the
surplus trial's configuration as tried.

What is counted is configurations (`configurations.py`): a trial of parameters already evaluated takes no slot, and a
study on a space of fewer configurations than n_trials ends when each has been evaluated once. A sampler that keeps
proposing evaluated configurations (TPE on a space it has nearly exhausted) is stopped after `max_repeats_in_row`
such trials in a row, with a line that says so.
"""

from __future__ import annotations

import time

import optuna
from optuna.trial import TrialState

from sustainable_ipa.search.configurations import distinct_complete, is_new_configuration

SURPLUS_ATTR = "surplus"
IN_FLIGHT = (TrialState.COMPLETE, TrialState.RUNNING)
TAKEN = (TrialState.COMPLETE, TrialState.RUNNING, TrialState.WAITING)


class TrialSlots:
    def __init__(self, study: optuna.Study, n_trials: int, poll_s: float = 0.1, max_poll_s: float = 1.0,
                 say=None, space_size: int | None = None, max_repeats_in_row: int = 200):
        """`poll_s`: the first pause of a wait, doubling up to `max_poll_s` (run_study: heartbeat_s / 4, so that a
        hundred workers waiting for a study's last trials do not flood the storage). `say(line)`: told once when a
        wait begins, and when the sampler is stopped for repeating itself."""
        self.study = study
        self.n_trials = min(int(n_trials), space_size or int(n_trials))
        self.max_repeats_in_row = max_repeats_in_row
        self.repeats_in_row = 0
        self.poll_s, self.max_poll_s = poll_s, max_poll_s
        self.say = say or (lambda line: None)

    def complete(self) -> int:
        """Configurations evaluated so far."""
        return distinct_complete(self.study)

    def wait(self) -> bool:
        """Block until a trial may start (True) or the study holds n_trials completed trials (False)."""
        pause = None
        while True:
            trials = [t for t in self.study.get_trials(deepcopy=False, states=IN_FLIGHT) if is_new_configuration(t)]
            done = sum(t.state == TrialState.COMPLETE for t in trials)
            if done >= self.n_trials:
                return False
            if len(trials) < self.n_trials:
                return True  # a queued retry, if any, is what the next ask pops
            # Every slot is taken by a running trial: wait for one to end, failing those whose worker died.
            if pause is None:
                pause = self.poll_s
                self.say(f"{done} of {self.n_trials} trials complete, the other {len(trials) - done} running: waiting "
                         "for them (a dead worker's trial is failed once its heartbeat is 2 × search.heartbeat_s old, "
                         "and its parameters run again)")
            optuna.storages.fail_stale_trials(self.study)
            time.sleep(pause)
            pause = min(2 * pause, self.max_poll_s)

    def surplus(self, trial: optuna.Trial) -> bool:
        """Whether the trials numbered before this one already take every slot (see the module's docstring)."""
        if trial.number < self.n_trials:
            return False
        before = [t for t in self.study.get_trials(deepcopy=False, states=TAKEN)
                  if t.number < trial.number and is_new_configuration(t)]
        return len(before) >= self.n_trials

    def give_way(self, trial: optuna.Trial):
        """End a surplus trial: PRUNED, marked, never evaluated."""
        trial.set_user_attr(SURPLUS_ATTR, True)
        raise optuna.TrialPruned(f"trial {trial.number} is surplus: the trials before it make up "
                                 f"search.n_trials={self.n_trials}")

    def after_trial(self, study: optuna.Study, trial) -> None:
        """optimize() callback: wait for the next slot, or stop this worker once the study is complete or its sampler
        only repeats itself."""
        self.repeats_in_row = 0 if is_new_configuration(trial) else self.repeats_in_row + 1
        if self.repeats_in_row >= self.max_repeats_in_row:
            self.say(f"the sampler proposed {self.repeats_in_row} configurations already evaluated in a row: stopped "
                     f"with {self.complete()} of {self.n_trials} evaluated (search.sampler=random or bruteforce "
                     "covers the rest)")
            study.stop()
        elif not self.wait():
            study.stop()
