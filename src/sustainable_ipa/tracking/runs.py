"""Run lifecycle and logging through MlflowClient (explicit run ids: no fluent global run stack to leak)."""

from __future__ import annotations

import subprocess
import time
from contextlib import contextmanager
from typing import Iterator, Mapping

from mlflow.entities import Metric, Param, RunStatus, RunTag
from mlflow.tracking import MlflowClient
from mlflow.utils.mlflow_tags import MLFLOW_PARENT_RUN_ID, MLFLOW_RUN_NAME, MLFLOW_GIT_COMMIT

from sustainable_ipa.config import PROJECT_ROOT

BATCH_LIMIT = 100  # MLflow's log_batch accepts at most this many params per call


class Terminated(BaseException):
    """SIGTERM, raised in the main thread so that open runs end KILLED."""


def git_commit() -> str:
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=5)
        return out.stdout.strip() or "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"


@contextmanager
def tracked_run(client: MlflowClient, experiment_id: str, run_name: str, parent_run_id: str | None = None,
                existing_run_id: str | None = None, tags: Mapping[str, str] | None = None) -> Iterator[str]:
    """A run that always ends: FINISHED, FAILED on an error, KILLED on Ctrl-C or SIGTERM.

    `existing_run_id` adopts a run made by someone else (the one `mlflow run` creates).
    """
    all_tags = dict(tags or {})
    if parent_run_id:
        all_tags[MLFLOW_PARENT_RUN_ID] = parent_run_id
    if existing_run_id:
        run_id = existing_run_id
        client.update_run(run_id, status="RUNNING")
        log(client, run_id, tags={MLFLOW_RUN_NAME: run_name, **all_tags})
    else:
        run_id = client.create_run(experiment_id, run_name=run_name, tags=all_tags).info.run_id
    try:
        yield run_id
    except BaseException as err:
        client.set_terminated(run_id, ending_status(err))
        raise
    client.set_terminated(run_id, ending_status(None))


def ending_status(error: BaseException | None) -> str:
    """How a run ends: FINISHED, KILLED on Ctrl-C or SIGTERM, FAILED on any other error."""
    if error is None:
        return RunStatus.to_string(RunStatus.FINISHED)
    if isinstance(error, (KeyboardInterrupt, Terminated)):
        return RunStatus.to_string(RunStatus.KILLED)
    return RunStatus.to_string(RunStatus.FAILED)


def kill_run_tree(client: MlflowClient, run_id: str) -> None:
    """End a run left RUNNING by a process that died (SIGKILL, power loss), and its nested runs, KILLED."""
    run = client.get_run(run_id)
    children = client.search_runs([run.info.experiment_id], filter_string=f"tags.{MLFLOW_PARENT_RUN_ID} = '{run_id}'")
    for child in children:
        kill_run_tree(client, child.info.run_id)
    if run.info.status == "RUNNING":
        client.set_terminated(run_id, RunStatus.to_string(RunStatus.KILLED))


def log(client: MlflowClient, run_id: str, metrics: Mapping[str, float] | None = None,
        params: Mapping[str, object] | None = None, tags: Mapping[str, str] | None = None) -> None:
    now_ms = int(time.time() * 1000)
    metric_list = [Metric(k, float(v), now_ms, 0) for k, v in (metrics or {}).items()]
    param_list = [Param(k, str(v)) for k, v in (params or {}).items()]
    tag_list = [RunTag(k, str(v)) for k, v in (tags or {}).items()]
    for i in range(0, max(len(metric_list), len(param_list), len(tag_list), 1), BATCH_LIMIT):
        client.log_batch(run_id, metrics=metric_list[i:i + BATCH_LIMIT], params=param_list[i:i + BATCH_LIMIT],
                         tags=tag_list[i:i + BATCH_LIMIT])


def common_tags(adaptation: str, weights_kind: str) -> dict[str, str]:
    commit = git_commit()
    return {"adaptation": adaptation, "weights_kind": weights_kind, "git_commit": commit, MLFLOW_GIT_COMMIT: commit}
