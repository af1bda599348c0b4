"""The run `mlflow run` made, after a signal stopped the job in it: KILLED, not the FAILED that `mlflow run` writes.

`mlflow run` (3.17) waits for its command in a blocking call, so Ctrl-C (which a terminal sends to the whole
foreground group: `mlflow run` and the job alike) reaches it only once the job has ended its runs KILLED and exited.
It then sets its run FAILED unless the run is already ended, but that check compares the stored status, a string,
with integer codes (`RunStatus.is_terminated("KILLED")` is False), so it overwrites the job's KILLED; a job that
exits 143 after a SIGTERM of its own gets the same. The job cannot write last from inside, so it leaves this small
process behind, which waits for that FAILED and sets the run KILLED again.

`python -m sustainable_ipa.tracking.mlflow_run URI RUN_ID`.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

WAIT_S = 30.0  # `mlflow run` marks the run within a second of the job's exit; past this, it is not going to
POLL_S = 0.1


def restore_killed_later(tracking_uri: str, run_id: str) -> None:
    """Start the process that sets `run_id` KILLED again once `mlflow run` has marked it FAILED."""
    package_root = str(Path(__file__).resolve().parents[2])  # the folder that holds sustainable_ipa
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [package_root, os.environ.get("PYTHONPATH")]))}
    env.pop("MLFLOW_RUN_ID", None)
    subprocess.Popen([sys.executable, "-m", __name__, tracking_uri, run_id], env=env, start_new_session=True,
                     stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def main(tracking_uri: str, run_id: str) -> None:
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=tracking_uri)
    deadline = time.monotonic() + WAIT_S
    while time.monotonic() < deadline:
        if client.get_run(run_id).info.status == "FAILED":
            client.set_terminated(run_id, "KILLED")
            return
        time.sleep(POLL_S)


if __name__ == "__main__":
    main(*sys.argv[1:3])
