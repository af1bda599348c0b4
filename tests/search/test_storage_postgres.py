"""One study on PostgreSQL, directly and through Optuna's gRPC storage proxy, shared by three `python src/search.py`
workers of which one is SIGKILLed mid-trial; and the faults of a study storage, each one line.

The killed worker's trial is held in flight by tests/search/inject/sitecustomize.py (profile-evaluator trials take
under a millisecond: a kill at a random moment would land between trials as often as in one). Its heartbeat stops
with it; 2 × search.heartbeat_s later a live worker fails it and its parameters run again."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time

import optuna
import pytest
from mlflow.tracking import MlflowClient
from mlflow.utils.mlflow_tags import MLFLOW_PARENT_RUN_ID

from postgres_server import PASSWORD, free_port
from study_workers import (hang_env, prepare_store, start_proxy, start_worker, trial_ledger, wait_for_file,
                           worker_overrides, write_fake_profiles)
from sustainable_ipa.config import PROJECT_ROOT
from sustainable_ipa.errors import UserError
from sustainable_ipa.search.storage import make_storage
from sustainable_ipa.search.study import MLFLOW_RUN_ATTR, TRIAL_RUN_ATTR

N_TRIALS = 6
HELD = 2  # the killed worker holds the first trial evaluated from this number on


@pytest.fixture
def proxy(postgres, tmp_path):
    """A gRPC proxy in front of a new PostgreSQL database; stopped (SIGTERM) at the end."""
    database = postgres.new_database()
    process, address = start_proxy(tmp_path, database)
    yield address, database, process
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        process.wait(30)


@pytest.fixture(scope="module")
def prepared(tmp_path_factory):
    """A folder with made-up profiles and a made MLflow store, shared by the workers of this module's studies (each
    on a database of its own, so each study has its own parent run)."""
    folder = tmp_path_factory.mktemp("workers")
    overrides = worker_overrides(folder, "sqlite:///unused", N_TRIALS)
    write_fake_profiles(overrides)
    prepare_store(overrides)
    return folder


@pytest.mark.slow
@pytest.mark.parametrize("through", ["postgresql", "grpc proxy"])
def test_three_workers_one_killed_mid_trial_complete_exactly_n_trials(postgres, prepared, tmp_path, request, through):
    began = time.monotonic()
    if through == "grpc proxy":
        storage, database, _ = request.getfixturevalue("proxy")
    else:
        storage = database = postgres.new_database()
    assert storage.startswith("grpc://" if through == "grpc proxy" else "postgresql+psycopg://")
    overrides = worker_overrides(prepared, storage, N_TRIALS, "search.heartbeat_s=1")
    marks = tmp_path / "held"
    # Three workers start together on a database without Optuna's tables: they race to create them.
    workers = [start_worker(tmp_path, [*overrides, f"search.seed={i}"], tmp_path / f"worker{i}.log",
                            hang_env(HELD, marks)) for i in range(3)]
    held = wait_for_file(marks, 120, workers)
    killed = next(w for w in workers if w.pid == int(held.name))
    held_number = int(held.read_text())
    os.kill(killed.pid, signal.SIGKILL)  # mid-trial: its MLflow run open, its trial RUNNING
    survivors = [w for w in workers if w is not killed]
    for w in survivors:
        w.wait(120)
    logs = {w.pid: (tmp_path / f"worker{workers.index(w)}.log").read_text()[-3000:] for w in workers}
    assert killed.wait() == -signal.SIGKILL
    assert [w.returncode for w in survivors] == [0, 0], logs

    # The database itself (not the proxy's view) holds exactly N_TRIALS completed trials, and the held trial failed.
    ledger = trial_ledger(database, N_TRIALS)
    study = ledger["study"]
    [failed] = ledger["FAIL"]
    assert failed.number == held_number
    [retry] = [t for t in ledger["COMPLETE"] + ledger["ANSWERED"]
               if t.system_attrs.get("failed_trial") == held_number]
    assert retry.params == failed.params  # its parameters ran again

    # MLflow: one FINISHED child run per completed trial, the killed trial's run KILLED, nothing left RUNNING.
    client = MlflowClient(tracking_uri=f"sqlite:///{prepared}/mlruns/mlflow.db")
    parent = study.user_attrs[MLFLOW_RUN_ATTR]
    experiment = client.get_run(parent).info.experiment_id
    children = client.search_runs([experiment], filter_string=f"tags.`{MLFLOW_PARENT_RUN_ID}` = '{parent}'")
    finished = {r.info.run_id: r for r in children if r.info.status == "FINISHED"}
    assert set(finished) == {t.user_attrs[TRIAL_RUN_ATTR] for t in ledger["COMPLETE"]}
    numbers = sorted(t.number for t in ledger["COMPLETE"])
    assert sorted(int(r.data.params["trial"]) for r in finished.values()) == numbers
    assert {r.info.run_id: r.info.status for r in children if r.info.run_id not in finished} == \
        {failed.user_attrs[TRIAL_RUN_ATTR]: "KILLED"}
    assert not client.search_runs([experiment], filter_string="attributes.status = 'RUNNING'")
    assert client.get_run(parent).info.status == "FINISHED"
    print(f"{through}: {time.monotonic() - began:.1f} s, trials {[(t.number, t.state.name) for t in study.trials]}")


def test_the_proxy_refuses_what_is_not_a_database_and_a_port_in_use(tmp_path):
    import socket

    from sustainable_ipa.search.storage import serve_proxy

    never = lambda line: pytest.fail(f"the proxy said it listens: {line}")  # noqa: E731
    with pytest.raises(UserError, match="^the storage proxy serves a database, not grpc://127.0.0.1:1"):
        serve_proxy("grpc://127.0.0.1:1", "127.0.0.1", free_port(), 2.0, ready=never)
    with socket.socket() as taken:  # another proxy, or anything, listens there already
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(UserError) as err:
            serve_proxy(f"sqlite:///{tmp_path}/optuna.db", "127.0.0.1", port, 2.0, ready=never)
    assert str(err.value) == (f"the storage proxy cannot listen on 127.0.0.1:{port} (Address already in use). Fix: "
                              "pass a free search.proxy.port (or a host address of this machine), or stop what "
                              "listens there")


# Faults: each one line, nothing made -----------------------------------------------------------------------------
def fault(url: str, timeout_s: float = 2.0) -> str:
    began = time.monotonic()
    with pytest.raises(UserError) as err:
        make_storage(url, heartbeat_s=1, timeout_s=timeout_s)
    assert time.monotonic() - began < timeout_s + 3  # bounded
    message = str(err.value)
    assert "\n" not in message and PASSWORD not in message
    return message


def test_an_unreachable_server_is_one_line():
    port = free_port()  # nothing listens there
    message = fault(f"postgresql+psycopg://sipa:{PASSWORD}@127.0.0.1:{port}/optuna")
    assert message.startswith(f"cannot open study storage postgresql+psycopg://sipa:***@127.0.0.1:{port}/optuna")
    assert "Connection refused" in message and "Fix: start the database server" in message


def test_wrong_credentials_are_one_line(postgres):
    url = postgres.new_database().replace(f":{PASSWORD}@", ":not-the-password@")
    message = fault(url)
    assert 'password authentication failed for user "sipa"' in message
    assert "Fix: check the user and password in search.storage" in message and "not-the-password" not in message


def test_a_missing_database_is_one_line(postgres):
    message = fault(postgres.url("no_such_database"))
    assert 'database "no_such_database" does not exist' in message and "Fix: create the database first" in message


def test_an_empty_database_gets_optunas_schema_and_another_applications_is_refused(postgres):
    # Empty (a fresh createdb): Optuna's tables are made, as the SQLite file is made.
    empty = postgres.new_database()
    optuna.create_study(storage=make_storage(empty, heartbeat_s=None), study_name="s").optimize(
        lambda t: t.suggest_float("x", 0, 1), n_trials=1)
    # Another application's database, e.g. the MLflow store by mistake (made here as MLflow's begins: alembic's
    # version table and its own): Optuna would add its tables among them and then fail half-way on the foreign
    # alembic_version ("no longer compatible with the table schema"); refused before anything is written.
    other = postgres.new_database()
    execute(other, "CREATE TABLE alembic_version (version_num VARCHAR(32) PRIMARY KEY)",
            "INSERT INTO alembic_version VALUES ('1b5f0d9ad7c1')",
            "CREATE TABLE experiments (experiment_id SERIAL PRIMARY KEY, name VARCHAR(256))",
            "CREATE TABLE runs (run_uuid VARCHAR(32) PRIMARY KEY)")
    before = tables(other)
    message = fault(other)
    assert re.search(r"holds \d+ tables of something else \(.*\) and none of an Optuna study storage", message)
    assert "Fix: give the studies a database of their own" in message
    assert tables(other) == before


def execute(url: str, *statements: str) -> None:
    import sqlalchemy

    engine = sqlalchemy.create_engine(url)
    try:
        with engine.begin() as conn:
            for statement in statements:
                conn.execute(sqlalchemy.text(statement))
    finally:
        engine.dispose()


def tables(url: str) -> set[str]:
    import sqlalchemy

    engine = sqlalchemy.create_engine(url)
    try:
        return set(sqlalchemy.inspect(engine).get_table_names())
    finally:
        engine.dispose()


def test_an_unreachable_proxy_is_one_line_within_the_timeout():
    port = free_port()
    message = fault(f"grpc://127.0.0.1:{port}")  # refused: said at once
    assert message.startswith(f"no study storage proxy at grpc://127.0.0.1:{port} (Connection refused)")
    assert "Fix: start the proxy in front of the study database (python src/storage_proxy.py " in message
    # Something listens but never answers as a gRPC server would: bounded by search.storage_timeout_s.
    import socket

    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen()
        message = fault(f"grpc://127.0.0.1:{silent.getsockname()[1]}", timeout_s=1.0)
    assert "no study storage proxy answers at" in message and "(no answer within 1 s)" in message


@pytest.mark.slow
def test_a_search_on_an_unreachable_proxy_exits_with_one_line_before_anything_is_made(tmp_path):
    port = free_port()
    out = subprocess.run([sys.executable, str(PROJECT_ROOT / "src" / "search.py"),
                          *worker_overrides(tmp_path, f"grpc://127.0.0.1:{port}", 2), "search.storage_timeout_s=1"],
                         capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert out.returncode == 2
    assert out.stderr.strip().splitlines()[-1].startswith(f"error: no study storage proxy at grpc://127.0.0.1:{port}")
    assert not (tmp_path / "profiles").exists()  # checked before the minutes of profiling
    assert not (tmp_path / "mlruns").exists()  # and before any MLflow run is made
