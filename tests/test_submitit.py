"""A sweep launched by Hydra's submitit launcher (`hydra/launcher=submitit_local` here; `submitit_slurm`, or the
project's `slurm`, on a cluster): every job's runs land in the one store."""

from __future__ import annotations

import subprocess
import sys

import pytest
from mlflow.tracking import MlflowClient

from fake_profiles import ONE_CONFIGURATION, use_fake_profiles
from helpers import store_overrides
from sustainable_ipa.config import CONFIG_DIR, PROJECT_ROOT


@pytest.mark.slow
def test_a_submitit_sweep_of_search_workers_puts_every_job_in_one_store(make_cfg, tmp_path, monkeypatch):
    """Two jobs at once (submitit_local starts them together), each a study of the profile evaluator on profiles
    cached beforehand: both land in the one tracking store, which they open for the first time together."""
    from sustainable_ipa.search.profiling_job import profile_job

    overrides = [*ONE_CONFIGURATION, f"profiling.cache_dir={tmp_path}/profiles", "search.n_trials=3",
                 f"search.storage=sqlite:///{tmp_path}/optuna.db"]
    use_fake_profiles(monkeypatch)
    profile_job(make_cfg(*overrides, f"tracking.uri=sqlite:///{tmp_path}/profiling.db"))  # the jobs find them cached
    sweep_dir = tmp_path / "sweep"
    args = [sys.executable, str(PROJECT_ROOT / "src" / "search.py"), "-m", "hydra/launcher=submitit_local",
            "search.study_name=a,b", f"hydra.sweep.dir={sweep_dir}", *overrides, *store_overrides(tmp_path)]
    done = subprocess.run(args, capture_output=True, text=True, timeout=600, cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    assert len(list((sweep_dir / ".submitit").glob("*/*_log.out"))) == 2  # two jobs, each a process of its own

    client = MlflowClient(tracking_uri=f"sqlite:///{tmp_path}/mlruns/mlflow.db")
    runs = client.search_runs([e.experiment_id for e in client.search_experiments()])
    parents = {r.data.tags["study_name"]: r for r in runs if r.info.run_name.startswith("study-")}
    assert set(parents) == {"a", "b"} and {r.info.status for r in runs} == {"FINISHED"}
    assert parents["a"].data.tags["owner_pid"] != parents["b"].data.tags["owner_pid"]
    for name, parent in parents.items():
        trials = [r for r in runs if r.data.tags.get("mlflow.parentRunId") == parent.info.run_id]
        # n_trials=3 on a space of one configuration: evaluated once, the study then ends
        assert len(trials) == 1 and {t.data.tags["study_name"] for t in trials} == {name}


def test_the_slurm_launcher_gives_each_job_a_whole_node():
    """conf/hydra/launcher/slurm.yaml: submitit_slurm with one task on one node held exclusively."""
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
        cfg = compose("config", ["hydra/launcher=slurm", "hydra.launcher.partition=cpu"], return_hydra_config=True)
    launcher = cfg.hydra.launcher
    assert launcher._target_.endswith("SlurmLauncher") and launcher.partition == "cpu"
    assert (launcher.nodes, launcher.tasks_per_node, dict(launcher.additional_parameters)) == (1, 1,
                                                                                              {"exclusive": True})
