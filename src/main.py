"""Run one adaptation of the pipeline and record it in MLflow: `python src/main.py [overrides]` (`-m` sweeps)."""

from __future__ import annotations

import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))  # the package beside this file, installed or not

from sustainable_ipa.cli import hydra_entry  # noqa: E402

# `mlflow run` exports the id of the run it made; only the first start_run would pick it up, so read it once here
# and hand it to every job of a multirun explicitly.
OUTER_RUN_ID = os.environ.pop("MLFLOW_RUN_ID", None)


def work(cfg) -> float | None:
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    from sustainable_ipa.experiment import run_job

    hydra_cfg = HydraConfig.get()
    multirun = hydra_cfg.mode == RunMode.MULTIRUN
    outcome = run_job(cfg, outer_run_id=OUTER_RUN_ID, nest_under_outer=multirun,
                      sweep_id=hydra_cfg.sweep.dir if multirun else None)
    return outcome.metrics.get("throughput_rps", outcome.metrics.get("throughput_rps_mean"))


if __name__ == "__main__":
    hydra_entry(work, from_mlflow=OUTER_RUN_ID is not None, mlflow_run_id=OUTER_RUN_ID)
