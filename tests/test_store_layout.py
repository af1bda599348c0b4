"""One store that MLflow's own commands find: with nothing set, the project's default tracking URI is the database
MLflow 3 uses by default when started from the project root, and `make ui` passes it nothing."""

import json
import os
import shlex
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from postgres_server import free_port
from sustainable_ipa.config import PROJECT_ROOT, compose


def test_the_default_store_is_mlflows_own_default_at_the_project_root(monkeypatch):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    ours = compose().tracking.uri
    env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}
    mlflows = subprocess.run([sys.executable, "-c", "import mlflow; print(mlflow.get_tracking_uri())"],
                             cwd=PROJECT_ROOT, env=env, capture_output=True, text=True, timeout=120).stdout.strip()
    assert ours == mlflows == f"sqlite:///{PROJECT_ROOT}/mlflow.db"
    assert compose().tracking.artifact_root.startswith(f"{PROJECT_ROOT}/mlruns")


def test_the_environment_still_wins(monkeypatch):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "sqlite:////elsewhere/mlflow.db")
    assert compose().tracking.uri == "sqlite:////elsewhere/mlflow.db"


def make_ui() -> tuple[dict[str, str], list[str]]:
    """What `make ui` runs after `cd` to the project: (the variables it sets, the arguments after `mlflow ui`)."""
    recipe = (PROJECT_ROOT / "Makefile").read_text().split("\nui:", 1)[1].split("\n\n", 1)[0]
    assert "cd $(CURDIR) && " in recipe
    words = shlex.split(recipe.split("cd $(CURDIR) && ", 1)[1].splitlines()[0])
    program = next(i for i, word in enumerate(words) if word.endswith("/mlflow"))
    assert words[program + 1] == "ui" and words[-1] == "$(ARGS)"
    return dict(word.split("=", 1) for word in words[:program]), words[program + 2:-1]


def test_make_ui_is_mlflow_ui_with_no_store_arguments_and_no_job_consumers():
    variables, args = make_ui()
    assert "--backend-store-uri" not in args
    assert variables == {"MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}  # else 7 job processes start with the UI


@pytest.mark.slow
def test_a_newcomers_mlflow_run_is_listed_by_mlflow_ui_with_no_arguments(tmp_path):
    """The sequence a new user types, nothing exported: `mlflow run .` from the project's folder, then `mlflow ui`
    there as `make ui` starts it (no store arguments); the UI's REST API lists the run with the job's figures in it.
    Done in a copy of the project, so that the developer's own store is left alone (src/main.py puts its copy's
    package first)."""
    project = tmp_path / "project"
    for part in ("src", "conf", "data"):
        shutil.copytree(PROJECT_ROOT / part, project / part, ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    for name in ("MLproject", "conda.yaml"):
        shutil.copy(PROJECT_ROOT / name, project / name)
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_") or k == "MLFLOW_DISABLE_TELEMETRY"}
    env["PATH"] = f"{Path(sys.executable).parent}:{env['PATH']}"
    bin_dir = Path(sys.executable).parent
    options = " ".join(["weights=random", "trial.requests=2", "trial.warmup=0", "trial.repetitions=1",
                        "hardware.cores=2", "energy.idle_s=0.3", "trial.rate_rps=4",
                        f"energy.lock_path={tmp_path}/energy.lock"])
    out = subprocess.run([str(bin_dir / "mlflow"), "run", ".", "--env-manager", "local", "-P", "adaptation=default",
                          "-P", f"hydra_options={options}"], cwd=project, env=env, capture_output=True, text=True,
                         timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    assert (project / "mlflow.db").is_file()  # MLflow's default, in the folder the user typed it in

    port = free_port()
    variables, args = make_ui()  # as `make ui` starts it
    ui = subprocess.Popen([str(bin_dir / "mlflow"), "ui", *args, "--port", str(port)], cwd=project,
                          env={**env, **variables},
                          stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        deadline, runs = time.monotonic() + 180, None
        while runs is None and time.monotonic() < deadline:
            assert ui.poll() is None, "mlflow ui exited"
            try:
                request = urllib.request.Request(f"http://127.0.0.1:{port}/api/2.0/mlflow/runs/search",
                                                 data=json.dumps({"experiment_ids": ["0"]}).encode(),
                                                 headers={"Content-Type": "application/json"})
                runs = json.load(urllib.request.urlopen(request, timeout=5)).get("runs", [])
            except OSError:
                time.sleep(0.5)
    finally:
        os.killpg(ui.pid, signal.SIGKILL)
        ui.wait(timeout=30)
    # `mlflow run` puts its run in the experiment Default (id 0) unless told otherwise; the job logs into that run
    [run] = runs or [None]
    tags = {t["key"]: t["value"] for t in run["data"].get("tags", [])}
    metrics = {m["key"] for m in run["data"].get("metrics", [])}
    assert run["info"]["status"] == "FINISHED" and tags["adaptation"] == "default" and "latency_p99_s" in metrics
