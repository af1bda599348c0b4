"""A tiny job through `hydra_entry` for the signal tests: runs start, log and end in a loop until a signal comes.

`python tests/signal_job.py [overrides]` prints `ready` once its first run exists; with SIGNAL_JOB_IDLE=1 it prints
`ready` before any run and waits. Started by `mlflow run`, its job run is the run `mlflow run` made, as in main.py.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from sustainable_ipa.cli import hydra_entry  # noqa: E402

OUTER_RUN_ID = os.environ.pop("MLFLOW_RUN_ID", None)


def work(cfg) -> None:
    from mlflow.tracking import MlflowClient

    from sustainable_ipa.tracking.runs import log, tracked_run
    from sustainable_ipa.tracking.store import open_store

    if os.environ.get("SIGNAL_JOB_IDLE"):
        print("ready", flush=True)
        time.sleep(60)
    experiment_id = open_store(cfg.tracking.uri, cfg.tracking.experiment, cfg.tracking.artifact_root)
    client = MlflowClient(tracking_uri=cfg.tracking.uri)
    with tracked_run(client, experiment_id, "job", existing_run_id=OUTER_RUN_ID) as job:
        print("ready", flush=True)
        for rep in range(100_000):  # a signal lands in a run's start, its logging, its end or between runs
            with tracked_run(client, experiment_id, f"rep{rep}", parent_run_id=job) as run:
                log(client, run, metrics={"x": rep}, params={"rep": rep})


if __name__ == "__main__":
    hydra_entry(work, from_mlflow=OUTER_RUN_ID is not None, mlflow_run_id=OUTER_RUN_ID)
