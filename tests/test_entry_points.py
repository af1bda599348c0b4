"""The entry points as users type them: multirun sweeps, `mlflow run`, and SIGTERM ending runs KILLED."""

import os
import re
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from helpers import run_main, runs_by_status, store_overrides
from sustainable_ipa.config import PROJECT_ROOT
from sustainable_ipa.tracking.links import ui_command

FAST = ["weights=random", "trial.requests=2", "trial.warmup=0", "hardware.cores=2", "energy.idle_s=0.3",
        "trial.rate_rps=4"]  # Poisson as by default, the two requests within a second rather than eight
pytestmark = pytest.mark.slow


def test_default_command_runs_and_prints_a_summary(tmp_path, client):
    # an 80-column terminal: the summary (metric, mean, CI, the power model's range) fits it unwrapped
    out = run_main(["trial.requests=3", "trial.warmup=0", "hardware.cores=2"], tmp_path, env={"COLUMNS": "80"})
    assert out.returncode == 0, out.stderr
    assert "RANDOM WEIGHTS" in out.stderr  # weights=auto offline: visible warning
    assert "latency_p99_s" in out.stdout + out.stderr
    # progress reaches a log as the work advances (rich alone prints only each bar's last state, at the end)
    assert re.search(r"rep 1/3 .* 1/3 ", out.stderr), out.stderr
    [run] = client.search_runs([e.experiment_id for e in client.search_experiments()],
                               filter_string="tags.mlflow.parentRunId IS NULL")
    assert run.data.tags["weights_kind"] == "random" and "weights_note" in run.data.tags
    assert run.data.metrics["latency_p99_s_mean"] > 0  # default: 3 repetitions under one parent
    assert "95 % CI of mean" in out.stdout + out.stderr and "model range" in out.stdout + out.stderr  # they say what
    assert "energy_j_per_request " in out.stdout + out.stderr  # not cut: "energy_j_per_req…"
    # as it starts it says how to follow the run (no UI shows this new store: how to serve one), and it ends
    # naming the run, which resolves on the store, how to serve the UI and the run's page
    uri, experiment_id = f"sqlite:///{tmp_path}/mlruns/mlflow.db", run.info.experiment_id
    page = f"http://127.0.0.1:5000/#/experiments/{experiment_id}/runs/{run.info.run_id}?workflowType=machine_learning"
    lines = (out.stdout + out.stderr).strip().splitlines()
    assert f"run {run.info.run_id} started; to follow it, serve the UI ({ui_command(uri)}), then open {page}" in lines
    assert not any("follow this run" in line for line in lines)
    last = lines[-4:]
    ended = re.fullmatch(r"run (\w+) in experiment 'sustainable-ipa' of (\S+)", last[0])
    assert ended and client.get_run(ended.group(1)).info.status == "FINISHED" and ended.group(2) == uri
    assert last[1:] == [f"serve the UI: {ui_command(uri)}",
                        f"runs table (key figures): http://127.0.0.1:5000/#/experiments/{experiment_id}/runs"
                        "?workflowType=machine_learning&viewStateShareKey=key-figures",
                        f"this run: {page}"]


def test_multirun_gives_each_job_its_own_run_grouped_by_sweep(tmp_path, client):
    out = run_main(["-m", "adaptation=default,yolov5n-resnet18", "trial.repetitions=1", *FAST], tmp_path)
    assert out.returncode == 0, out.stderr
    runs = client.search_runs([e.experiment_id for e in client.search_experiments()])
    assert sorted(r.data.tags["adaptation"] for r in runs) == ["default", "yolov5n-resnet18"]
    [sweep_id] = {r.data.tags["sweep_id"] for r in runs}
    assert all(r.info.status == "FINISHED" for r in runs)
    # it ends naming the sweep and the report on it, a command the report accepts (typed in any folder)
    last = out.stderr.strip().splitlines()[-2:]
    assert last[0].startswith(f"sweep {sweep_id}: its jobs are the runs tagged sweep_id={sweep_id}")
    prefix = "report on the sweep: "
    assert last[1].startswith(prefix)
    report = subprocess.run([*shlex.split(last[1][len(prefix):]), f"report.out_dir={tmp_path}/reports"],
                            capture_output=True, text=True, timeout=300, cwd="/")
    assert report.returncode == 0, report.stderr[-3000:]  # a sweep id with no runs is refused (exit 2)
    assert any((tmp_path / "reports").iterdir())


def _mlflow_run(tmp_path, *params, experiment="mlflow-run-test"):
    from mlflow.tracking import MlflowClient

    uri = f"sqlite:///{tmp_path}/mlruns/mlflow.db"
    client = MlflowClient(tracking_uri=uri)
    client.create_experiment(experiment, artifact_location=(tmp_path / "artifacts").as_uri())
    env = {**os.environ, "MLFLOW_TRACKING_URI": uri, "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"}
    mlflow_cli = Path(sys.executable).parent / "mlflow"
    out = subprocess.run([str(mlflow_cli), "run", str(PROJECT_ROOT), "--env-manager", "local",
                          "--experiment-name", experiment, *params], capture_output=True, text=True, env=env, timeout=600)
    return out, client


def isolated(tmp_path) -> list[str]:
    return [f"energy.idle_cache={tmp_path}/idle.json", f"energy.lock_path={tmp_path}/energy.lock"]


def test_mlflow_run_logs_into_the_run_it_made(tmp_path):
    options = " ".join(["trial.repetitions=2", *FAST, *isolated(tmp_path)])
    out, client = _mlflow_run(tmp_path, "-P", "adaptation=yolov5n-resnet18", "-P", f"hydra_options={options}")
    assert out.returncode == 0, out.stderr[-3000:]
    runs = client.search_runs([client.get_experiment_by_name("mlflow-run-test").experiment_id])
    [outer] = [r for r in runs if "mlflow.parentRunId" not in r.data.tags]
    children = [r for r in runs if r.data.tags.get("mlflow.parentRunId") == outer.info.run_id]
    assert outer.data.params["adaptation"] == "yolov5n-resnet18"  # logged by `mlflow run` itself
    assert outer.data.tags["adaptation"] == "yolov5n-resnet18" and "latency_p99_s_mean" in outer.data.metrics
    assert len(children) == 2 and all(c.info.status == "FINISHED" for c in children)
    assert outer.info.status == "FINISHED"
    # `mlflow run` chose the experiment before the project's code ran: the job says so and how to choose it
    assert "made this run in experiment 'mlflow-run-test', not 'sustainable-ipa'" in out.stderr


def test_mlflow_run_multirun_nests_every_job_under_the_outer_run(tmp_path):
    options = " ".join(["-m", "adaptation=default,yolov5n-resnet18", "trial.repetitions=1", *FAST, *isolated(tmp_path)])
    out, client = _mlflow_run(tmp_path, "-P", f"hydra_options={options}")
    assert out.returncode == 0, out.stderr[-3000:]
    runs = client.search_runs([client.get_experiment_by_name("mlflow-run-test").experiment_id])
    [outer] = [r for r in runs if "mlflow.parentRunId" not in r.data.tags]
    jobs = [r for r in runs if r.data.tags.get("mlflow.parentRunId") == outer.info.run_id]
    assert sorted(j.data.tags["adaptation"] for j in jobs) == ["default", "yolov5n-resnet18"]


def test_sigterm_ends_the_open_runs_killed(tmp_path, client):
    args = [sys.executable, str(PROJECT_ROOT / "src" / "main.py"), "weights=random", "trial.requests=400",
            "trial.repetitions=2", "hardware.cores=2", *store_overrides(tmp_path)]
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=tmp_path)
    deadline = time.time() + 120
    while time.time() < deadline:
        if (tmp_path / "mlruns" / "mlflow.db").exists() and len(runs_by_status(client, "RUNNING")) == 2:
            break
        time.sleep(0.5)
    else:
        proc.kill()
        pytest.fail("the run never started")
    proc.send_signal(signal.SIGTERM)
    _, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 143
    assert stderr.strip().splitlines()[-1].startswith("error: terminated")
    assert not runs_by_status(client, "RUNNING")
    assert len(runs_by_status(client, "KILLED")) == 2  # the parent and the repetition in progress
