"""Studies shared by several workers: two workers on one study, a worker killed mid-trial, and workers racing to
record the study's parent run (split from test_study.py so that pytest-xdist runs the two halves side by side)."""

from __future__ import annotations

import signal
import subprocess
import sys
import time

import optuna
import pytest

from helpers import runs_by_status, store_overrides
from study_workers import SEARCH_TINY as TINY
from sustainable_ipa.config import PROJECT_ROOT
from sustainable_ipa.search.configurations import is_new_configuration
from sustainable_ipa.search.search_job import search_job
from sustainable_ipa.search.study import MLFLOW_RUN_ATTR, TRIAL_RUN_ATTR


@pytest.fixture
def rival_records_its_parent(client, tmp_path, monkeypatch):
    """Another worker, started at the same moment, read no parent before this one did and records its own a
    moment later, during this worker's first trial. The list returned then holds the rival's run id."""
    from sustainable_ipa.search.evaluators import ProfileEvaluator

    evaluate, rival = ProfileEvaluator.evaluate, []

    def evaluate_while_a_rival_records_its_parent(self, choice, parent_run_id=None):
        if not rival:
            study = optuna.load_study(study_name="video-cpu", storage=f"sqlite:///{tmp_path}/optuna.db")
            experiment_id = client.get_run(parent_run_id).info.experiment_id
            rival.append(client.create_run(experiment_id, run_name="study-video-cpu").info.run_id)
            study.set_user_attr(MLFLOW_RUN_ATTR, rival[0])
        return evaluate(self, choice, parent_run_id)

    monkeypatch.setattr(ProfileEvaluator, "evaluate", evaluate_while_a_rival_records_its_parent)
    return rival


def trial_parents(client, study) -> set[str]:
    return {client.get_run(t.user_attrs[TRIAL_RUN_ATTR]).data.tags["mlflow.parentRunId"]
            for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE and TRIAL_RUN_ATTR in t.user_attrs}


def test_a_worker_whose_parent_run_lost_the_race_moves_its_trials_to_the_winner(search_cfg, client,
                                                                                 rival_records_its_parent):
    outcome = search_job(search_cfg("search.n_trials=4"))
    [rival] = rival_records_its_parent
    assert outcome.parent_run_id == rival
    experiment_id = client.get_run(rival).info.experiment_id
    parents = client.search_runs([experiment_id], filter_string="attributes.run_name = 'study-video-cpu'")
    assert [p.info.run_id for p in parents] == [rival]  # this worker's own parent is deleted
    assert trial_parents(client, outcome.study) == {rival}
    assert "pareto.csv" in {a.path for a in client.list_artifacts(rival)}


def test_a_parent_run_that_lost_is_gone_while_its_worker_still_searches(search_cfg, client, monkeypatch,
                                                                        rival_records_its_parent):
    # A worker SIGKILLed mid-search runs no cleanup: its lost parent must not wait for the end to be deleted.
    from sustainable_ipa.search.evaluators import ProfileEvaluator

    evaluate, running_parents = ProfileEvaluator.evaluate, []

    def evaluate_and_look(self, choice, parent_run_id=None):
        metrics = evaluate(self, choice, parent_run_id)
        experiment_id = client.get_run(parent_run_id).info.experiment_id
        parents = client.search_runs([experiment_id], filter_string="attributes.run_name = 'study-video-cpu' "
                                                                    "and attributes.status = 'RUNNING'")
        running_parents.append({p.info.run_id for p in parents})
        return metrics

    monkeypatch.setattr(ProfileEvaluator, "evaluate", evaluate_and_look)
    search_job(search_cfg("search.n_trials=3"))
    [rival] = rival_records_its_parent
    assert len(running_parents[0]) == 2  # the race happened: both parents ran during the first trial
    assert len(running_parents) >= 2 and all(p == {rival} for p in running_parents[1:])


def test_a_worker_deletes_no_parent_run_it_did_not_make(search_cfg, client, tmp_path, rival_records_its_parent):
    # Three workers: A records its parent, this worker finds and follows it, then B's write (it read no parent
    # before A wrote) lands last. A's run is A's worker's to delete, not this worker's: A may still be using it.
    rival_records_its_parent.append("not during A's search")
    search_job(search_cfg("search.n_trials=1"))  # stands in for worker A: the study and A's parent exist
    study = optuna.load_study(study_name="video-cpu", storage=f"sqlite:///{tmp_path}/optuna.db")
    first = study.user_attrs[MLFLOW_RUN_ATTR]
    rival_records_its_parent.clear()  # worker B records its parent during this worker's next trial
    outcome = search_job(search_cfg("search.n_trials=4"))
    [rival] = rival_records_its_parent
    assert outcome.parent_run_id == rival
    assert client.get_run(first).info.lifecycle_stage == "active"
    assert trial_parents(client, outcome.study) == {rival}  # A's trial too: whoever follows the winner moves it
    assert client.get_run(rival).info.status == "FINISHED"


@pytest.mark.slow
def test_two_workers_share_one_study(tmp_path, client):
    overrides = [*TINY, f"profiling.cache_dir={tmp_path}/profiles", "energy.idle_s=0.3",
                 *store_overrides(tmp_path)]
    # Profile first, so that the two workers only search; they start together on a study that does not exist yet.
    subprocess.run([sys.executable, str(PROJECT_ROOT / "src" / "profiling.py"), *overrides], check=True,
                   capture_output=True, timeout=300)
    args = [sys.executable, str(PROJECT_ROOT / "src" / "search.py"), *overrides, "search.n_trials=12",
            f"search.storage=sqlite:///{tmp_path}/optuna.db"]
    workers = [subprocess.Popen([*args, f"search.seed={i}"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
               for i in range(2)]
    outputs = [w.communicate(timeout=300) for w in workers]
    assert [w.returncode for w in workers] == [0, 0], outputs
    study = optuna.load_study(study_name="video-cpu", storage=f"sqlite:///{tmp_path}/optuna.db")
    done = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE and is_new_configuration(t)]
    assert 12 <= len(done) <= 13  # both stop at 12; a trial already running when the count is reached may finish
    parents = client.search_runs([e.experiment_id for e in client.search_experiments()],
                                 filter_string="tags.study_name = 'video-cpu' and attributes.run_name = 'study-video-cpu'")
    assert len(parents) == 1  # if both made one, the one that lost moved its trial runs over and deleted its own
    assert trial_parents(client, study) == {parents[0].info.run_id}


@pytest.mark.slow
def test_a_search_killed_mid_trial_resumes_with_no_completed_trial_lost(tmp_path, client):
    storage = f"sqlite:///{tmp_path}/optuna.db"
    args = [sys.executable, str(PROJECT_ROOT / "src" / "search.py"), *TINY, "search.evaluator=run", "search.n_trials=2",
            "search.space.detector.replicas=[1]", "hardware.cores=2", "weights=random", "trial.repetitions=1",
            "trial.warmup=0", "trial.requests=4", "search.heartbeat_s=1", f"search.storage={storage}",
            f"profiling.cache_dir={tmp_path}/profiles", "energy.idle_s=0.3", *store_overrides(tmp_path)]
    worker = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 300
    while True:  # kill it while a trial runs, with at least one trial completed before it
        assert worker.poll() is None and time.monotonic() < deadline, "the search ended before it could be killed"
        try:
            trials = optuna.load_study(study_name="video-cpu", storage=storage).trials
        except KeyError:  # the study is not created yet
            trials = []
        states = [t.state for t in trials]
        if optuna.trial.TrialState.COMPLETE in states and states[-1] == optuna.trial.TrialState.RUNNING \
                and "mlflow_run_id" in trials[-1].user_attrs:
            break
        time.sleep(0.2)
    worker.send_signal(signal.SIGKILL)
    worker.wait()
    trials = optuna.load_study(study_name="video-cpu", storage=storage).trials  # as the kill left them
    completed = {t.number: t.values for t in trials if t.state == optuna.trial.TrialState.COMPLETE}
    running = [t.number for t in trials if t.state == optuna.trial.TrialState.RUNNING]
    assert len(running) <= 1  # none only if the kill fell between two trials (a window of milliseconds)
    time.sleep(2.5)  # past the grace period (2 × heartbeat): the killed trial's heartbeat is stale

    resumed = subprocess.run(args, capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    study = optuna.load_study(study_name="video-cpu", storage=storage)
    assert all(study.trials[n].state == optuna.trial.TrialState.FAIL for n in running)
    assert {n: study.trials[n].values for n in completed} == completed  # nothing completed was lost or redone
    assert len([t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE and is_new_configuration(t)]) == 2
    for n in running:
        killed_run = study.trials[n].user_attrs.get("mlflow_run_id")  # absent only if killed before it was made
        assert killed_run is None or client.get_run(killed_run).info.status == "KILLED"
    assert not runs_by_status(client, "RUNNING")
