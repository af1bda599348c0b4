"""Helpers shared by tests: running the entry point as a user does, reading run states."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from sustainable_ipa.config import PROJECT_ROOT

# the default config shrunk for a 2-core CPU
SMALL = ["weights=random", "trial.requests=4", "trial.warmup=0", "trial.repetitions=1", "hardware.cores=2",
         "energy.idle_s=0.3", "energy.poll_interval_s=0.2",
         "trial.rate_rps=20"]  # Poisson as by default, but a few requests arrive within a second, not in 16 s


def store_overrides(tmp_path: Path) -> list[str]:
    """The run's store, idle cache, power calibrations and energy lock, all under tmp_path."""
    return [f"tracking.uri=sqlite:///{tmp_path}/mlruns/mlflow.db", f"tracking.artifact_root={tmp_path}/mlruns/artifacts",
            f"energy.idle_cache={tmp_path}/mlruns/idle.json", f"energy.lock_path={tmp_path}/energy.lock",
            f"energy.calibration={tmp_path}/mlruns/power_calibration.json"]


def run_main(args: list[str], tmp_path: Path, timeout: int = 300, env: dict | None = None, **kwargs):
    """`python src/main.py args` as a user runs it, with the store under tmp_path."""
    full_env = {**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})}
    return subprocess.run([sys.executable, str(PROJECT_ROOT / "src" / "main.py"), *args, *store_overrides(tmp_path)],
                          capture_output=True, text=True, timeout=timeout, cwd=tmp_path, env=full_env, **kwargs)


def runs_by_status(client, status: str) -> list:
    experiments = [e.experiment_id for e in client.search_experiments()]
    return client.search_runs(experiments, filter_string=f"attributes.status = '{status}'") if experiments else []
