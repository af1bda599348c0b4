"""One store that MLflow's own commands find: with nothing set, the project's default tracking URI is the database
MLflow 3 uses by default when started from the project root, and `make ui` passes it nothing."""

import os
import subprocess
import sys

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


def test_make_ui_is_mlflow_ui_with_no_store_arguments():
    makefile = (PROJECT_ROOT / "Makefile").read_text()
    recipe = makefile.split("\nui:", 1)[1].split("\n\n", 1)[0]
    assert "mlflow ui" in recipe and "--backend-store-uri" not in recipe and "cd $(CURDIR)" in recipe
