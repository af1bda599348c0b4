"""Run lifecycle and logging through MlflowClient (explicit run ids: no fluent global run stack to leak).

Every run this process starts is tagged with its owner (host, pid, the pid's start) and ends exactly once, even when
signals come in bursts; a run whose owner died RUNNING is ended KILLED by the next start (`end_stale_runs`)."""

from __future__ import annotations

import logging
import os
import socket
import subprocess
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator, Mapping

from mlflow.entities import Metric, Param, RunStatus, RunTag
from mlflow.tracking import MlflowClient
from mlflow.utils.mlflow_tags import MLFLOW_PARENT_RUN_ID, MLFLOW_RUN_NAME, MLFLOW_GIT_COMMIT

from sustainable_ipa.config import PROJECT_ROOT
from sustainable_ipa.db_driver import mask_passwords
from sustainable_ipa.fingerprint import this_machine
from sustainable_ipa.tracking import local_copy
from sustainable_ipa.tracking.signals import Terminated, signals_held

BATCH_LIMIT = 100  # MLflow's log_batch accepts at most this many params per call
KILLED = RunStatus.to_string(RunStatus.KILLED)
# The process that owns a run: a run RUNNING whose owner no longer exists is ended KILLED by the next start.
OWNER_HOST, OWNER_PID, OWNER_STARTED = "owner_host", "owner_pid", "owner_pid_started"

_BOOT_ID = Path("/proc/sys/kernel/random/boot_id")  # Linux: which boot a start tick counts from

_open: dict[str, MlflowClient] = {}  # runs to end KILLED if a signal stops this process, oldest first
_ended: dict[str, str] = {}  # runs this process ended, and how


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

    `existing_run_id` adopts a run made by someone else (the one `mlflow run` creates). The run is tagged with this
    process as its owner (`owner_tags`). Its start and its end hold SIGINT and SIGTERM back (`signals_held`), and
    until it ends `end_open_runs` knows it: no signal, however timed, leaves it RUNNING. What it logs through `log`
    is kept in memory until it ends: should the store stop answering, the run ends with one line (`StoreWentAway`)
    and that record is written to a local copy (`local_copy`) instead of being lost.
    """
    all_tags = {**this_machine().tags(), **(tags or {}), **owner_tags()}  # where it ran, and who owns it
    all_tags = {key: mask_passwords(str(value)) for key, value in all_tags.items()}
    if parent_run_id:
        all_tags[MLFLOW_PARENT_RUN_ID] = parent_run_id
    run_id = None
    try:
        with signals_held():  # created and known to end_open_runs, or neither
            if existing_run_id:
                client.update_run(existing_run_id, status="RUNNING")
                run_id = existing_run_id
                end_on_stop(client, run_id)
                local_copy.started(run_id, client.tracking_uri, experiment_id, run_name, all_tags)
                log(client, run_id, tags={MLFLOW_RUN_NAME: run_name, **all_tags})
            else:
                run_id = client.create_run(experiment_id, run_name=run_name, tags=all_tags).info.run_id
                end_on_stop(client, run_id)
                local_copy.started(run_id, client.tracking_uri, experiment_id, run_name, all_tags)
        yield run_id
    except BaseException as err:
        if local_copy.went_away(err):
            raise _kept_locally(err, client, run_id or f"'{run_name}' (not made)", ending_status(err)) from None
        if run_id is not None:
            try:
                end_run(client, run_id, ending_status(err))
            except Exception as end_error:  # the error that stopped the run is the one to report
                logging.getLogger(__name__).warning("could not end run %s: %s", run_id, end_error)
        raise
    try:
        end_run(client, run_id, ending_status(None))
    except Exception as err:
        if local_copy.went_away(err):
            raise _kept_locally(err, client, run_id, ending_status(None)) from None
        raise


def _kept_locally(error: BaseException, client: MlflowClient, run_id: str, status: str) -> local_copy.StoreWentAway:
    """The store stopped answering: write what the run logged to its local copy and say where, in one line. The run
    is not ended (the store does not answer): the import of the copy, or a later start, ends it."""
    _open.pop(run_id, None)
    local_copy.write(run_id, status)
    return local_copy.went_away_error(error, run_id, client.tracking_uri)


def end_on_stop(client: MlflowClient, run_id: str) -> None:
    """Have `end_open_runs` end this run KILLED should a signal stop the process before the run is ended here.
    For a run whose normal end belongs to someone else (the outer run of `mlflow run -m …`)."""
    _ended.pop(run_id, None)  # a run ended earlier and resumed now ends again
    _open[run_id] = client


def end_run(client: MlflowClient, run_id: str, status: str) -> None:
    """End a run once (a later call does nothing); a signal meanwhile waits until it is ended."""
    with signals_held():
        if run_id in _ended:
            return
        client.set_terminated(run_id, status)
        _ended[run_id] = status
        _open.pop(run_id, None)
        local_copy.forget(run_id)


def end_open_runs(status: str = KILLED) -> dict[str, str]:
    """End the runs this process has open (the newest first, nested runs before their parent). Returns those that
    could not be ended, with the store's reason; they stay open. A store that does not answer gets each run's local
    copy written (`local_copy`), and the reason says where."""
    failed = {}
    for run_id, client in reversed(list(_open.items())):
        try:
            end_run(client, run_id, status)
        except Exception as err:
            failed[run_id] = (str(err).strip().splitlines() or [type(err).__name__])[0][:200]
            if local_copy.went_away(err) and (path := local_copy.write(run_id, status)) is not None:
                failed[run_id] = f"the store does not answer; what the run logged is kept in {path}"
    return failed


def open_runs() -> list[str]:
    """The runs `end_open_runs` would end."""
    return list(_open)


def killed_runs() -> list[str]:
    """The runs this process ended KILLED."""
    return [run_id for run_id, status in _ended.items() if status == KILLED]


def ending_status(error: BaseException | None) -> str:
    """How a run ends: FINISHED, KILLED on Ctrl-C or SIGTERM, FAILED on any other error."""
    if error is None:
        return RunStatus.to_string(RunStatus.FINISHED)
    if isinstance(error, (KeyboardInterrupt, Terminated)):
        return KILLED
    return RunStatus.to_string(RunStatus.FAILED)


def owner_tags() -> dict[str, str]:
    """This process as a run's owner: host, pid, and when the pid started (a reused pid is another process)."""
    pid = os.getpid()
    return {OWNER_HOST: socket.gethostname(), OWNER_PID: str(pid), OWNER_STARTED: process_started(pid) or ""}


def process_started(pid: int) -> str | None:
    """When process `pid` started, in a form no clock change alters. Linux: `boot id:pid namespace:start tick` (the
    tick since boot, field 22 of /proc/PID/stat, in this process's pid namespace); elsewhere psutil's create time.
    None when no such process runs (a zombie has ended)."""
    if _BOOT_ID.exists():
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()  # the name may hold ") "
        except (FileNotFoundError, ProcessLookupError):
            return None
        if fields[0] in ("Z", "X"):
            return None
        namespace = os.readlink("/proc/self/ns/pid").removeprefix("pid:[").removesuffix("]")
        return f"{_BOOT_ID.read_text().strip()}:{namespace}:{fields[19]}"
    import psutil

    try:
        process = psutil.Process(pid)
        return None if process.status() == psutil.STATUS_ZOMBIE else f"{process.create_time():.3f}"
    except psutil.NoSuchProcess:
        return None


def owner_state(tags: Mapping[str, str]) -> str:
    """`alive` or `gone` for a run whose owner ran on this host (hosts are told apart by name); `unknown` for a run
    of another host, of another pid namespace on this kernel (a container), or of no recorded owner."""
    host, pid, started = tags.get(OWNER_HOST), tags.get(OWNER_PID, ""), tags.get(OWNER_STARTED)
    if host != socket.gethostname() or not pid.isdigit() or not started:
        return "unknown"
    boot, namespace = _boot_and_namespace(started)
    my_boot, my_namespace = _boot_and_namespace(process_started(os.getpid()) or "")
    if boot != my_boot:
        return "gone"  # a process of an earlier boot of this host
    if namespace != my_namespace:
        return "unknown"  # its pid means another process here
    return "alive" if process_started(int(pid)) == started else "gone"


def _boot_and_namespace(started: str) -> tuple[str, str]:
    parts = started.split(":")
    return (parts[0], parts[1]) if len(parts) == 3 else ("", "")


def end_stale_runs(client: MlflowClient, experiment_id: str) -> dict[str, list[str]]:
    """End KILLED, with their nested runs, the runs of the experiment that a process of this host left RUNNING and
    that no longer exists (SIGKILL, a crash, power loss). Returns the ids ended, by the owner's pid."""
    query = f"attributes.status = 'RUNNING' and tags.{OWNER_HOST} = '{socket.gethostname()}'"
    found, token = [], None
    while True:
        page = client.search_runs([experiment_id], filter_string=query, max_results=1000, page_token=token)
        found += page
        token = page.token
        if not token:
            break
    ended: dict[str, list[str]] = {}
    for run in found:
        if owner_state(run.data.tags) == "gone" and client.get_run(run.info.run_id).info.status == "RUNNING":
            kill_run_tree(client, run.info.run_id)
            ended.setdefault(run.data.tags[OWNER_PID], []).append(run.info.run_id)
    return ended


def kill_run_tree(client: MlflowClient, run_id: str) -> None:
    """End a run left RUNNING by a process that died (SIGKILL, power loss), and its nested runs, KILLED. A nested
    run whose owner on this host still runs is left to it."""
    run = client.get_run(run_id)
    children = client.search_runs([run.info.experiment_id], filter_string=f"tags.{MLFLOW_PARENT_RUN_ID} = '{run_id}'")
    for child in children:
        if owner_state(child.data.tags) != "alive":
            kill_run_tree(client, child.info.run_id)
    if run.info.status == "RUNNING":
        client.set_terminated(run_id, KILLED)


def log(client: MlflowClient, run_id: str, metrics: Mapping[str, float] | None = None,
        params: Mapping[str, object] | None = None, tags: Mapping[str, str] | None = None) -> None:
    """Metrics, params and tags in batches; a signal meanwhile waits until they are written."""
    now_ms = int(time.time() * 1000)
    metric_list = [Metric(k, float(v), now_ms, 0) for k, v in (metrics or {}).items()]
    # a URL setting's password (the tracking.uri param) is masked: the store is read by whoever reads the runs
    param_list = [Param(k, mask_passwords(str(v))) for k, v in (params or {}).items()]
    tag_list = [RunTag(k, mask_passwords(str(v))) for k, v in (tags or {}).items()]
    local_copy.logged(run_id, metric_list, param_list, tag_list)  # kept should the store stop answering
    with signals_held():
        for i in range(0, max(len(metric_list), len(param_list), len(tag_list), 1), BATCH_LIMIT):
            client.log_batch(run_id, metrics=metric_list[i:i + BATCH_LIMIT], params=param_list[i:i + BATCH_LIMIT],
                             tags=tag_list[i:i + BATCH_LIMIT])


def common_tags(adaptation: str, weights_kind: str) -> dict[str, str]:
    commit = git_commit()
    return {"adaptation": adaptation, "weights_kind": weights_kind, "git_commit": commit, MLFLOW_GIT_COMMIT: commit}
