"""Study storage from a URL, shared by any number of workers (processes or machines):

- any SQLAlchemy URL: `sqlite:////abs/optuna.db`, `postgresql+psycopg://user:password@host:5432/optuna` (RDBStorage,
  with Optuna's heartbeat);
- `grpc://host:port`: Optuna's gRPC storage proxy (`python src/storage_proxy.py`, `serve_proxy`) in front of such a
  database, so that N workers hold N channels to one process instead of N connection pools to the database;
- `journal:/abs/path/study.log`: JournalStorage on a file.

Every storage records a heartbeat per running trial: a worker that dies leaves its trial RUNNING, and a live worker
marks it FAIL once its heartbeat is 2 × `search.heartbeat_s` old and re-queues its parameters (one retry). Optuna
has heartbeats for RDB storages only; for the proxy and the journal the heartbeat is a trial system attribute
(`AttributeHeartbeat`).
"""

from __future__ import annotations

import collections
import itertools
import math
import socket
import time
import uuid
import warnings
from pathlib import Path

import optuna
from optuna.trial import TrialState

from sustainable_ipa.compat.optuna_private import (Heartbeat, InterceptedGrpcStorageProxy, add_proxy_service,
                                                   optuna_table_names)
from sustainable_ipa.db_driver import check_db_driver, without_password
from sustainable_ipa.errors import UserError

FIX = ("pass search.storage=sqlite:////abs/path/optuna.db, a postgresql+psycopg://user:password@host:5432/db URL, "
       "grpc://host:port (python src/storage_proxy.py) or journal:/abs/path/study.log")
CREATION_ATTEMPTS = 4
GRPC = "grpc://"
PROXY_THREADS = 10  # concurrent calls the proxy serves (Optuna's default): each is one short database transaction
HEARTBEAT_ATTR = "sipa:heartbeat"  # system attribute of a running trial on storages without Optuna's heartbeat


_OPENED: dict[tuple, optuna.storages.RDBStorage] = {}
OPENED_KEPT = 8


def lost_creation_race(err: Exception, fresh: bool = False) -> bool:
    """Whether opening an RDB storage failed because another worker was creating the same tables. `fresh`: the
    database held none of them a moment before (then a half-made schema also reads as an incompatible one)."""
    text = str(err).lower()
    return ("alembic_version" in text or "already exists" in text or "duplicate key" in text
            or (fresh and "no longer compatible" in text))


def retry_callback():
    return optuna.storages.RetryHeartbeatStaleTrialCallback(max_retry=1)


def make_storage(url: str, heartbeat_s: int | None = 60, timeout_s: float = 20.0):
    """The storage `url` names. `heartbeat_s`: None for none (a reader, the proxy's own database connection).
    `timeout_s` bounds how long opening it waits for a database server or a proxy (and each proxy call)."""
    # Heartbeats, the journal and the gRPC proxy are marked experimental by Optuna; they are what multi-worker needs.
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    if url.startswith(GRPC):
        return _grpc_storage(url, heartbeat_s, timeout_s)
    try:
        if url.startswith("journal:"):
            from optuna.storages.journal import JournalFileBackend

            path = Path(url[len("journal:"):])
            path.parent.mkdir(parents=True, exist_ok=True)
            storage = HeartbeatJournalStorage(JournalFileBackend(str(path)))
            storage.start_heartbeat(heartbeat_s)
            return storage
        if "://" not in url:
            raise UserError(f"search.storage '{url}' is not a storage URL", FIX)
        check_db_driver(url, "search.storage")
        if url.startswith("sqlite:///"):
            Path(url[len("sqlite:///"):]).parent.mkdir(parents=True, exist_ok=True)
        engine_kwargs = {"pool_pre_ping": True}
        if url.startswith("postgresql"):  # libpq's own bound on reaching the server (default: none)
            engine_kwargs["connect_args"] = {"connect_timeout": max(1, math.ceil(timeout_s))}
        key = (url, heartbeat_s, timeout_s)
        if key in _OPENED:  # one connection pool per database and process: `search_job` opens the study twice
            return _OPENED[key]
        fresh = not _optuna_tables(url, engine_kwargs.get("connect_args", {}))
        kwargs = {}
        if heartbeat_s:
            kwargs = {"heartbeat_interval": heartbeat_s, "grace_period": 2 * heartbeat_s,
                      "heartbeat_stale_trial_callback": retry_callback()}
        for attempt in range(CREATION_ATTEMPTS):
            try:
                _OPENED[key] = optuna.storages.RDBStorage(url, engine_kwargs=engine_kwargs, **kwargs)
                while len(_OPENED) > OPENED_KEPT:  # a long process (the tests) opens many: the oldest are let go
                    _OPENED.pop(next(iter(_OPENED)))
                return _OPENED[key]
            except Exception as err:
                # Workers started together on a new database race to create its tables (optuna/optuna#1092):
                # the loser sees them half-made; a moment later they are complete and it can open them.
                if attempt + 1 == CREATION_ATTEMPTS or not lost_creation_race(err, fresh):
                    raise
                time.sleep(0.5 * (attempt + 1))
    except UserError:
        raise
    except Exception as err:  # SQLAlchemy/driver errors: unreachable host, wrong password, unwritable file
        raise open_error(url, err) from None


def open_error(url: str, err: Exception) -> UserError:
    """One line for a storage that cannot be opened, with the fix its reason calls for."""
    reason = " ".join(str(err).split())
    for tail in ("(Background on this error at:", "[SQL:"):  # SQLAlchemy's link and statement: not the reason
        reason = reason.split(tail)[0].strip()
    reason = reason[:300] or type(err).__name__
    text = reason.lower()
    if "password authentication failed" in text or "authentication failed" in text:
        fix = "check the user and password in search.storage (user:password@host)"
    elif "does not exist" in text and "database" in text:
        fix = "create the database first (createdb -h HOST -p PORT -U USER NAME), or name one that exists"
    elif "storage upgrade" in text or "no longer compatible" in text:
        fix = f"upgrade its schema: optuna storage upgrade --storage '{without_password(url)}' (back it up first)"
    elif any(s in text for s in ("connection refused", "timeout expired", "could not connect", "connection failed",
                                 "could not translate host name", "name or service not known")):
        fix = "start the database server, or check the host and port in search.storage"
    else:
        fix = FIX
    return UserError(f"cannot open study storage {without_password(url)} ({reason})", fix)


def _optuna_tables(url: str, connect_args: dict) -> set[str]:
    """The tables of an Optuna study storage that the database at `url` holds. An empty database gets Optuna's
    schema (created by the first worker to open it); one holding only other tables is refused: Optuna would add its
    tables among them, and into another alembic-managed database (MLflow's store) it fails half-way, leaving them."""
    import sqlalchemy
    from sqlalchemy.pool import NullPool

    engine = sqlalchemy.create_engine(url, connect_args=connect_args, poolclass=NullPool)
    try:
        tables = set(sqlalchemy.inspect(engine).get_table_names())
    finally:
        engine.dispose()
    ours = tables & optuna_table_names()
    if tables and not ours:
        others = ", ".join(sorted(tables)[:4]) + (", …" if len(tables) > 4 else "")
        raise UserError(f"search.storage {without_password(url)} holds {len(tables)} tables of something else "
                        f"({others}) and none of an Optuna study storage",
                        "give the studies a database of their own: an empty one gets Optuna's schema (e.g. "
                        "createdb optuna, then search.storage=postgresql+psycopg://user:password@host:5432/optuna)")
    return ours


# Heartbeats where Optuna has none -------------------------------------------------------------------------------
class AttributeHeartbeat(Heartbeat):
    """Optuna's heartbeat contract on any storage: each worker writes a fresh token into a system attribute of its
    running trial every `heartbeat_s`; a trial whose token has not changed for 2 × `heartbeat_s` by the observing
    worker's own monotonic clock is stale. No clock is compared across machines, so their skew does not matter.

    A trial that never wrote a token (a worker on the database directly, with Optuna's own heartbeat table, in the
    same study) is never failed here: its own kind of observer judges it."""

    _hb_interval: int | None = None

    def start_heartbeat(self, heartbeat_s: int | None) -> None:
        self._hb_interval = heartbeat_s or None
        self._hb_seen: dict[int, tuple[str, float]] = {}  # by trial number: the last token seen, and when
        self._hb_token = uuid.uuid4().hex[:8]
        self._hb_count = itertools.count()

    def record_heartbeat(self, trial_id: int) -> None:
        try:
            self.set_trial_system_attr(trial_id, HEARTBEAT_ATTR, f"{self._hb_token}:{next(self._hb_count)}")
        except optuna.exceptions.UpdateFinishedTrialError:
            pass  # another worker judged it stale meanwhile: its outcome is theirs now

    def stale_trial_ids(self, study_id: int) -> list[int]:
        now, seen, stale = time.monotonic(), {}, []
        for trial in self.get_all_trials(study_id, deepcopy=False, states=(TrialState.RUNNING,)):
            beat = trial.system_attrs.get(HEARTBEAT_ATTR)
            if beat is None:
                continue
            last = self._hb_seen.get(trial.number)
            seen[trial.number] = last if last is not None and last[0] == beat else (beat, now)
            if now - seen[trial.number][1] > 2 * self._hb_interval:  # a frozen trial's id is private: ask the storage
                stale.append(self.get_trial_id_from_study_id_trial_number(study_id, trial.number))
        self._hb_seen = seen
        return stale

    def get_heartbeat_interval(self) -> int | None:
        return self._hb_interval

    def get_heartbeat_stale_trial_callback(self):
        return retry_callback() if self._hb_interval else None


class HeartbeatJournalStorage(AttributeHeartbeat, optuna.storages.JournalStorage):
    """JournalStorage with heartbeats."""


def _grpc_storage(url: str, heartbeat_s: int | None, timeout_s: float):
    host, port = _grpc_address(url)
    address = f"{GRPC}{host}:{port}"
    fix = (f"start the proxy in front of the study database (python src/storage_proxy.py "
           f"search.storage=postgresql+psycopg://… search.proxy.port={port}), or check search.storage")
    try:  # a refused connection is known at once; a host that drops packets takes timeout_s to say so
        socket.create_connection((host, port), timeout=timeout_s).close()
    except OSError as err:
        raise UserError(f"no study storage proxy at {address} ({err.strerror or err})", fix) from None
    storage = GrpcProxyStorage(host, port, timeout_s)
    try:
        storage.wait_server_ready(timeout=timeout_s)
        storage.get_all_studies()  # a gRPC server that is not Optuna's proxy fails here
    except Exception as err:
        storage.close()
        reason = f"no answer within {timeout_s:g} s" if isinstance(err, ConnectionError) else _grpc_reason(err)
        raise UserError(f"no study storage proxy answers at {address} ({reason})", fix) from None
    storage.start_heartbeat(heartbeat_s)
    return storage


def _grpc_address(url: str) -> tuple[str, int]:
    host, _, port = url[len(GRPC):].rstrip("/").rpartition(":")
    if not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise UserError(f"search.storage '{url}' is not a gRPC proxy address", "pass search.storage=grpc://host:port")
    return host.strip("[]"), int(port)


def _grpc_reason(err: Exception) -> str:
    details = getattr(err, "details", None)
    return (details() if callable(details) else None) or " ".join(str(err).split())[:200] or type(err).__name__


class _CallDetails(collections.namedtuple("_CallDetails", ("method", "timeout", "metadata", "credentials",
                                                           "wait_for_ready", "compression"))):
    """grpc.ClientCallDetails with a deadline."""


def _deadline_interceptor(timeout_s: float):
    import grpc

    class Deadline(grpc.UnaryUnaryClientInterceptor):
        """Every call of the proxy client gets a deadline: Optuna's sets none, so a proxy that accepts the connection
        and never answers would hang the worker for good."""

        def intercept_unary_unary(self, continuation, details, request):
            if details.timeout is None:
                details = _CallDetails(details.method, timeout_s, details.metadata, details.credentials,
                                       getattr(details, "wait_for_ready", None), getattr(details, "compression", None))
            return continuation(details, request)

    return Deadline()


class GrpcProxyStorage(AttributeHeartbeat, InterceptedGrpcStorageProxy):
    """Optuna's gRPC proxy client, with heartbeats and a deadline on every call."""

    def __init__(self, host: str, port: int, timeout_s: float):
        self._timeout_s = timeout_s  # before the constructor, which makes the channel
        super().__init__(host=host, port=port)

    def interceptor(self):
        return _deadline_interceptor(self._timeout_s)


# The proxy server -------------------------------------------------------------------------------------------------
def serve_proxy(url: str, host: str, port: int, timeout_s: float, ready=print) -> None:
    """Optuna's gRPC storage proxy on host:port in front of the database `url`, until stopped (Ctrl-C, SIGTERM).
    `ready(line)` is told the address once it listens."""
    from concurrent.futures import ThreadPoolExecutor

    import grpc

    if url.startswith(GRPC) or url.startswith("journal:"):
        raise UserError(f"the storage proxy serves a database, not {url}",
                        "pass search.storage=<the study database's SQLAlchemy URL>, e.g. "
                        "postgresql+psycopg://user:password@host:5432/optuna")
    # The proxy runs no trial: no heartbeat of its own. Optuna's cache in front of the database, as its docs advise.
    storage = optuna.storages.get_storage(make_storage(url, heartbeat_s=None, timeout_s=timeout_s))
    try:  # gRPC would print its own lines on failing to bind: try first, as gRPC binds (SO_REUSEADDR)
        with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            probe.bind((host, port))
    except OSError as err:
        raise UserError(f"the storage proxy cannot listen on {host}:{port} ({err.strerror or err})",
                        "pass a free search.proxy.port (or a host address of this machine), or stop what listens "
                        "there") from None
    # Optuna's make_server, with SO_REUSEPORT off: gRPC sets it by default, and a second proxy started on the same
    # port would then share it silently with the first instead of failing.
    server = grpc.server(ThreadPoolExecutor(max_workers=PROXY_THREADS), options=[("grpc.so_reuseport", 0)])
    add_proxy_service(server, storage)
    try:
        bound = server.add_insecure_port(f"{host}:{port}")
    except RuntimeError as err:  # grpc: "Failed to bind to address …"
        bound, reason = 0, str(err)
    else:
        reason = "address in use"
    if not bound:
        raise UserError(f"the storage proxy cannot listen on {host}:{port} ({reason})",
                        "pass a free search.proxy.port, or stop what listens there")
    server.start()
    ready(f"study storage proxy on {GRPC}{host}:{port} in front of {without_password(url)}; workers pass "
          f"search.storage={GRPC}{'<this host>' if host in ('0.0.0.0', '::') else host}:{port} (Ctrl-C stops it)")
    try:
        server.wait_for_termination()
    finally:
        server.stop(grace=1)
