"""Opening the tracking store; a bad URL or an unwritable store is one clear line; runs that a dead process left
RUNNING end KILLED."""

from __future__ import annotations

import logging
import os
import re
import socket
import sys
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator
from urllib.parse import urlsplit
from urllib.request import getproxies, proxy_bypass

from sustainable_ipa.db_driver import check_db_connects, check_db_driver, without_password
from sustainable_ipa.errors import UserError
from sustainable_ipa.tracking.links import tag_for_the_ui

CREATION_ATTEMPTS = 6  # retries after 1, 2, 4, 8, 16 s
RACE_SIGNS = ("already exist", "alembic", "migration")  # another process made the schema or experiment meanwhile
HALF_MADE = re.compile(r"table \w+ already exists")  # SQLite's words for a table made before
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
        raise UserError(f"tracking.uri '{without_password(uri)}' has no valid port", FIX) from None
    try:
        socket.create_connection((parts.hostname or "", port), timeout=timeout_s).close()
    except OSError as err:
        raise UserError(f"cannot reach tracking server {without_password(uri)} ({err.strerror or type(err).__name__})",
                        "start it (mlflow server --host HOST --port PORT) or pass "
                        "tracking.uri=sqlite:////an/absolute/writable/path/mlflow.db") from None


@contextmanager
def _one_opener_at_a_time(db: Path | None) -> Iterator[None]:
    """On a SQLite store, processes of this machine open it one at a time (flock on a lock file beside the database,
    which SQLite's own fcntl locks do not see, and which stays the same file when a new store is moved into place):
    MLflow's schema set-up on a new file takes seconds, and a second process meanwhile fails on half-made tables."""
    if db is None:
        yield
        return
    import fcntl

    with db.with_name(f".{db.name}.lock").open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _experiment(uri: str, experiment: str, artifact_root: str | None):
    """The client and the experiment's id, the experiment made if needed, with its artifacts under `artifact_root`
    (None: the store's default; a tracking server's own artifact store, proxied: the client writes no local path)."""
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=uri)  # MLflow 3.17.2 opens the store here: a refused one raises
    found = client.get_experiment_by_name(experiment)
    if found is not None:
        if uri.startswith(("http://", "https://")) and found.artifact_location.startswith("file:"):
            print(f"warning: experiment '{experiment}' on {without_password(uri)} keeps its artifacts at "
                  f"{found.artifact_location}, a folder on whichever machine logs them; a new experiment "
                  "(tracking.experiment=…) gets the server's own artifact store", file=sys.stderr)
        return client, found.experiment_id
    location = None
    if artifact_root:
        folder = Path(artifact_root)
        folder.mkdir(parents=True, exist_ok=True)
        location = (folder / experiment).resolve().as_uri()
    return client, client.create_experiment(experiment, artifact_location=location)


def _reason(err: BaseException) -> str:
    return str(err).strip().splitlines()[0][:200] if str(err).strip() else type(err).__name__


def _checked_sqlite_path(db: Path) -> Path:
    """The database file's absolute path, its folder made; a folder in its place or no write access is one line."""
    db = db.resolve()  # a relative path (MLflow's own default, sqlite:///mlflow.db) is relative to the cwd
    if db.is_dir():
        raise UserError(f"tracking store {db} is a folder, not a database file", FIX)
    try:
        db.parent.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise UserError(f"cannot create tracking folder {db.parent} ({err.strerror})", FIX) from None
    if not os.access(db.parent, os.W_OK) or (db.exists() and not os.access(db, os.W_OK)):
        raise UserError(f"tracking store {db} is not writable", FIX)
    return db


def _create_whole(db: Path) -> None:
    """A new SQLite store gets MLflow's schema in a temporary file beside it, then moves into place: MLflow migrates a
    new database in place over seconds, and an interruption meanwhile (Ctrl-C, a kill, power loss) would leave a
    half-made schema that every later command refuses. An empty file is no store (older versions' lock made one)."""
    if db.exists() and db.stat().st_size > 0:
        return
    from mlflow.tracking import MlflowClient

    temporary = db.with_name(f".{db.name}.creating-{os.getpid()}")
    try:
        MlflowClient(tracking_uri=f"sqlite:///{temporary}").search_experiments(max_results=1)
        if db.exists():  # empty: replaced (this machine's lock is held)
            os.replace(temporary, db)
        else:  # a link fails where another machine sharing the folder made the store first: then that one is used
            try:
                os.link(temporary, db)
            except FileExistsError:
                pass
    finally:
        for leftover in (temporary, temporary.with_name(temporary.name + "-journal")):
            leftover.unlink(missing_ok=True)


def _experiment_with_retries(uri: str, experiment: str, artifact_root: str | None, db: Path | None):
    """`_experiment`, retried while another process makes the store's tables or the experiment. A SQLite store
    failing twice alike on one of its tables is half-made, not being made: one line says what to do."""
    previous = None
    for attempt in range(CREATION_ATTEMPTS):
        try:
            return _experiment(uri, experiment, artifact_root)
        except Exception as err:
            # Jobs started together (a submitit sweep, search workers on several machines) on a new database
            # race to create its tables and the experiment: the loser finds them made a little later.
            reason = _reason(err)
            if db is not None and HALF_MADE.search(reason) and reason == previous:
                raise UserError(f"tracking store {db} is half-made: its schema set-up was interrupted ({reason})",
                                f"move it aside (mv {db} {db}.half-made) and run again: a new store is made "
                                "there") from None
            if attempt + 1 == CREATION_ATTEMPTS or not any(sign in str(err).lower() for sign in RACE_SIGNS):
                raise
            previous = reason
            time.sleep(2 ** attempt)


def open_store(uri: str, experiment: str, artifact_root: str | None) -> str:
    """Point MLflow at `uri`, create the experiment if needed (artifacts under `artifact_root`), return its id."""
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    for noisy in ("mlflow.store.db.utils", "alembic.runtime.migration"):  # schema set-up chatter on a new store
        logging.getLogger(noisy).setLevel(logging.WARNING)
    from sustainable_ipa.tracking.runs import end_stale_runs

    if "://" not in uri:
        raise UserError(f"tracking.uri '{uri}' is not a URL (MLflow 3 refuses a bare folder as a file store)", FIX)
    if uri.startswith("file:") and os.environ.get("MLFLOW_ALLOW_FILE_STORE", "").lower() not in ("true", "1"):
        raise UserError(f"tracking.uri '{uri}' is a file store, which MLflow 3 refuses", FIX)
    server = uri.startswith(("http://", "https://"))
    if server:
        from sustainable_ipa.tracking.server import check_server_answers

        _check_reachable(uri)
        check_server_answers(uri, experiment)
    else:
        check_db_driver(uri, "tracking.uri")
        check_db_connects(uri, "tracking.uri")  # one attempt: MLflow's own retries take 100 s
    db = _sqlite_path(uri)
    if db is not None:
        db = _checked_sqlite_path(db)
    try:
        with _one_opener_at_a_time(db):
            if db is not None:
                _create_whole(db)
            client, experiment_id = _experiment_with_retries(uri, experiment, None if server else artifact_root, db)
        tag_for_the_ui(client, experiment_id)
    except UserError:
        raise
    except Exception as err:  # MLflow raises several types (REST, SQLAlchemy, OSError) for an unusable store
        raise UserError(f"cannot open tracking store {without_password(uri)} ({_reason(err)})", FIX) from None
    for pid, run_ids in end_stale_runs(client, experiment_id).items():
        print(f"warning: ended {len(run_ids)} MLflow run(s) KILLED that process {pid} of this host left RUNNING and "
              f"no longer runs: {', '.join(run_ids)}", file=sys.stderr)
    return experiment_id
