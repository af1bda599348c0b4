"""What a run logged, kept in this process until the run ends, so that a tracking store that stops answering mid-run
(a tracking server that went away, a database server that stopped) loses none of the run's figures.

MLflow's REST client retries a server that does not answer (`tracking.server_retries`, then gives up); the run then
ends with one line naming a JSON file per run (metrics, params, tags, the status it ended with) under
`tracking.local_copy_dir`. Once the store answers again,

    python -m sustainable_ipa.tracking.local_copy FOLDER_OR_FILE [--tracking-uri URI]

logs each file's figures to its run (the run the store still holds, left RUNNING or ended KILLED by a later start),
ends the run with the status the job gave it and moves the file to FOLDER/imported/. Artifacts are not kept: only
what went through `runs.log`.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
import time
from pathlib import Path
from typing import Iterable, Mapping

from sustainable_ipa.config import PROJECT_ROOT
from sustainable_ipa.db_driver import MASK, mask_passwords
from sustainable_ipa.errors import UserError

IMPORTED = "imported"
_records: dict[str, dict] = {}  # run id → what this process logged to it so far
_folder = PROJECT_ROOT / "mlruns" / "unsent"  # tracking.local_copy_dir, once an entry point has set it


class StoreWentAway(UserError):
    """The tracking store stopped answering during a run; its figures were written to a local copy."""


def keep_in(folder: str | Path) -> None:
    """Where the local copies go (tracking.local_copy_dir)."""
    global _folder
    _folder = Path(folder)


def started(run_id: str, tracking_uri: str, experiment_id: str, run_name: str, tags: Mapping[str, str]) -> None:
    # the copy is a file on disk: its store's password is masked, and given again at import (--tracking-uri)
    _records[run_id] = {"run_id": run_id, "tracking_uri": _safe(tracking_uri), "experiment_id": experiment_id,
                        "run_name": run_name, "started_ms": int(time.time() * 1000), "tags": dict(tags),
                        "params": {}, "metrics": []}


def logged(run_id: str, metrics: Iterable, params: Iterable, tags: Iterable) -> None:
    """Record a batch (MLflow Metric, Param and RunTag entities) before it is sent."""
    record = _records.get(run_id)
    if record is None:
        return  # a run this process did not start (e.g. a study's parent run made by another worker)
    record["metrics"] += [[m.key, m.value, m.timestamp, m.step] for m in metrics]
    record["params"].update({p.key: p.value for p in params})
    record["tags"].update({t.key: t.value for t in tags})


def forget(run_id: str) -> None:
    _records.pop(run_id, None)


# Database errors that say the store answered: contention or a schema problem, not a store gone away.
NOT_GONE = ("database is locked", "no such table", "no such column", "duplicate column", "already exists",
            "syntax error", "violates")


def went_away(error: BaseException) -> bool:
    """Whether `error` is the store failing to answer (its transport or its database connection), not a refusal of
    what was logged: MLflow wraps both in an MlflowException, raised while it handled the error underneath."""
    import requests
    from sqlalchemy.exc import InterfaceError, OperationalError

    seen = set()
    while error is not None and id(error) not in seen:
        if isinstance(error, (StoreWentAway, requests.exceptions.RequestException, InterfaceError)):
            return True
        if isinstance(error, OperationalError) and not any(word in str(error).lower() for word in NOT_GONE):
            return True  # a connection refused, reset or timed out; not a lock or a schema that does not fit
        seen.add(id(error))
        error = error.__cause__ or error.__context__
    return False


def write(run_id: str, status: str) -> Path | None:
    """Write what run `run_id` logged, and the status it ended with, to `<local_copy_dir>/<run_id>.json`."""
    record = _records.pop(run_id, None)
    if record is None:
        return None
    _folder.mkdir(parents=True, exist_ok=True)
    path = _folder / f"{run_id}.json"
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps({**record, "status": status, "ended_ms": int(time.time() * 1000)}, indent=1))
    os.replace(tmp, path)
    return path


def went_away_error(error: BaseException, run_id: str, tracking_uri: str) -> StoreWentAway:
    """The one line: which store, which run, where its figures are and how to log them later."""
    if isinstance(error, StoreWentAway):
        return error
    folder = _folder
    return StoreWentAway(f"tracking store {_safe(tracking_uri)} stopped answering during run {run_id} "
                         f"({_reason(error)}); "
                         f"the figures it measured (metrics, params, tags) are kept in {folder}",
                         f"once the store answers, log them to it with `python -m sustainable_ipa.tracking.local_copy "
                         f"{folder}` (a later start in the experiment ends the run KILLED meanwhile)")


def _reason(error: BaseException) -> str:
    """The cause in a few words ("Connection refused", "too many 503 error responses"), not MLflow's 300-character
    wrapper."""
    orig = getattr(error, "orig", None)  # SQLAlchemy's wrapper of the driver's error: the driver's own words
    text = str(orig if orig is not None else error)
    found = re.search(r"\[Errno -?\d+\] ([^'\")]+)|(too many \d+ error responses)|(timed? ?out)", text, re.IGNORECASE)
    if found:
        return next(group for group in found.groups() if group).strip()
    return (text.strip().splitlines() or [type(error).__name__])[0][:120]


def _safe(text: str) -> str:
    return mask_passwords(text)  # a URL, or a line holding one


def import_copy(path: Path, tracking_uri: str | None = None) -> str:
    """Log one local copy to its run and end the run as the job ended it; returns the run id."""
    from mlflow.entities import Metric, Param, RunTag
    from mlflow.exceptions import MlflowException
    from mlflow.tracking import MlflowClient

    from sustainable_ipa.tracking.runs import BATCH_LIMIT

    record = json.loads(path.read_text())
    uri = tracking_uri or record["tracking_uri"]
    if f":{MASK}@" in uri:  # the password was masked when the copy was written
        raise UserError(f"{path} names tracking store {uri}, whose password is not kept in the copy",
                        "pass --tracking-uri with the store's whole URL, password included")
    client = MlflowClient(tracking_uri=uri)
    run_id = record["run_id"]
    try:
        held = client.get_run(run_id).data.params
    except MlflowException as err:
        if went_away(err):
            raise UserError(f"tracking store {_safe(uri)} still does not answer ({_reason(err)})",
                            "try again once it answers") from None
        raise UserError(f"run {run_id} of {path} is not in tracking store {_safe(uri)}",
                        "pass --tracking-uri with the store the run was made in") from None
    params = [Param(k, v) for k, v in record["params"].items() if k not in held]  # a param is written once
    metrics = [Metric(k, v, ts, step) for k, v, ts, step in record["metrics"]]
    tags = [RunTag(k, v) for k, v in record["tags"].items()]
    for i in range(0, max(len(metrics), len(params), len(tags), 1), BATCH_LIMIT):
        client.log_batch(run_id, metrics=metrics[i:i + BATCH_LIMIT], params=params[i:i + BATCH_LIMIT],
                         tags=tags[i:i + BATCH_LIMIT])
    client.set_terminated(run_id, record["status"], end_time=record["ended_ms"])
    (path.parent / IMPORTED).mkdir(exist_ok=True)
    os.replace(path, path.parent / IMPORTED / path.name)
    return run_id


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m sustainable_ipa.tracking.local_copy",
                                     description="Log runs' local copies to the tracking store they were made for.")
    parser.add_argument("path", type=Path, help="a folder of local copies (tracking.local_copy_dir) or one file")
    parser.add_argument("--tracking-uri", help="the store to log to (default: the one each copy names)")
    args = parser.parse_args(argv)
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    try:
        if not args.path.exists():
            raise UserError(f"no local copies at {args.path}", "pass tracking.local_copy_dir or one of its .json files")
        files = sorted(args.path.glob("*.json")) if args.path.is_dir() else [args.path]
        started = {}
        for path in files:
            try:
                started[path] = json.loads(path.read_text())["started_ms"]
            except (OSError, ValueError, KeyError) as err:
                raise UserError(f"{path} is not a local copy of a run ({type(err).__name__}: {err})",
                                "leave only the files the job wrote in that folder") from None
        for path in sorted(files, key=started.get):  # parents before their nested runs
            try:
                print(f"logged {path.name} to run {import_copy(path, args.tracking_uri)}")
            except UserError:
                raise
            except Exception as err:  # the store failed mid-import: what is left stays, to be imported again
                raise UserError(f"could not log {path} ({_reason(err)})", "try again once the store answers") from None
    except UserError as err:
        print(f"error: {_safe(str(err))}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
