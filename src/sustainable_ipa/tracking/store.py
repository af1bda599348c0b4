"""Opening the tracking store; a bad URL or an unwritable store is one clear line; runs that a dead process left
RUNNING end KILLED."""

from __future__ import annotations

import logging
import os
import socket
import sys
from pathlib import Path
from urllib.parse import urlsplit
from urllib.request import getproxies, proxy_bypass

from sustainable_ipa.db_driver import check_db_driver
from sustainable_ipa.errors import UserError

FIX = "pass tracking.uri=sqlite:////an/absolute/writable/path/mlflow.db (or an http(s):// tracking server)"


def _sqlite_path(uri: str) -> Path | None:
    return Path(uri[len("sqlite:///"):]) if uri.startswith("sqlite:///") else None


def _check_reachable(uri: str, timeout_s: float = 5.0) -> None:
    """One connection attempt: MLflow's client retries a dead server with back-off for minutes before it fails."""
    parts = urlsplit(uri)
    if getproxies().get(parts.scheme) and not proxy_bypass(parts.hostname or ""):
        return  # reached through a proxy, as MLflow's requests will be: a direct probe proves nothing
    try:
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError:
        raise UserError(f"tracking.uri '{uri}' has no valid port", FIX) from None
    try:
        socket.create_connection((parts.hostname or "", port), timeout=timeout_s).close()
    except OSError as err:
        raise UserError(f"cannot reach tracking server {uri} ({err.strerror or type(err).__name__})",
                        "start it (mlflow server --host HOST --port PORT) or pass "
                        "tracking.uri=sqlite:////an/absolute/writable/path/mlflow.db") from None


def open_store(uri: str, experiment: str, artifact_root: str | None) -> str:
    """Point MLflow at `uri`, create the experiment if needed (artifacts under `artifact_root`), return its id."""
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    for noisy in ("mlflow.store.db.utils", "alembic.runtime.migration"):  # schema set-up chatter on a new store
        logging.getLogger(noisy).setLevel(logging.WARNING)
    from mlflow.tracking import MlflowClient

    from sustainable_ipa.tracking.runs import end_stale_runs

    if "://" not in uri:
        raise UserError(f"tracking.uri '{uri}' is not a URL (MLflow 3 refuses a bare folder as a file store)", FIX)
    if uri.startswith("file:") and os.environ.get("MLFLOW_ALLOW_FILE_STORE", "").lower() not in ("true", "1"):
        raise UserError(f"tracking.uri '{uri}' is a file store, which MLflow 3 refuses", FIX)
    if uri.startswith(("http://", "https://")):
        _check_reachable(uri)
    else:
        check_db_driver(uri, "tracking.uri")
    db = _sqlite_path(uri)
    if db is not None:
        db = db.resolve()  # a relative path (MLflow's own default, sqlite:///mlflow.db) is relative to the cwd
        if db.is_dir():
            raise UserError(f"tracking store {db} is a folder, not a database file", FIX)
        try:
            db.parent.mkdir(parents=True, exist_ok=True)
        except OSError as err:
            raise UserError(f"cannot create tracking folder {db.parent} ({err.strerror})", FIX) from None
        if not os.access(db.parent, os.W_OK) or (db.exists() and not os.access(db, os.W_OK)):
            raise UserError(f"tracking store {db} is not writable", FIX)
    try:
        client = MlflowClient(tracking_uri=uri)  # MLflow 3.17.2 opens the store here: a refused one raises
        found = client.get_experiment_by_name(experiment)
        if found is not None:
            experiment_id = found.experiment_id
        else:
            location = None
            if artifact_root:
                folder = Path(artifact_root)
                folder.mkdir(parents=True, exist_ok=True)
                location = (folder / experiment).resolve().as_uri()
            experiment_id = client.create_experiment(experiment, artifact_location=location)
    except UserError:
        raise
    except Exception as err:  # MLflow raises several types (REST, SQLAlchemy, OSError) for an unusable store
        reason = str(err).strip().splitlines()[0][:200] if str(err).strip() else type(err).__name__
        raise UserError(f"cannot open tracking store {uri} ({reason})", FIX) from None
    for pid, run_ids in end_stale_runs(client, experiment_id).items():
        print(f"warning: ended {len(run_ids)} MLflow run(s) KILLED that process {pid} of this host left RUNNING and "
              f"no longer runs: {', '.join(run_ids)}", file=sys.stderr)
    return experiment_id
