"""Opening study storages: workers that start together on a new database."""

import optuna
import pytest
import sqlalchemy.exc

from sustainable_ipa.compat.optuna_private import study_storage
from sustainable_ipa.errors import UserError
from sustainable_ipa.search import storage as storage_module
from sustainable_ipa.search.storage import make_storage

REAL_RDB_STORAGE = optuna.storages.RDBStorage


def fake_rdb_storage(monkeypatch, first_error: Exception) -> list[str]:
    """RDBStorage whose first call fails with `first_error` after the tables were made (as by another worker)."""
    calls: list[str] = []

    def storage(url, **kwargs):
        calls.append(url)
        if len(calls) == 1:
            REAL_RDB_STORAGE(url, **kwargs)  # the other worker creates the tables meanwhile
            raise first_error
        return REAL_RDB_STORAGE(url, **kwargs)

    monkeypatch.setattr(optuna.storages, "RDBStorage", storage)
    monkeypatch.setattr(storage_module.time, "sleep", lambda s: None)
    return calls


def test_a_worker_that_loses_the_race_to_create_the_tables_opens_them_a_moment_later(tmp_path, monkeypatch):
    race = sqlalchemy.exc.IntegrityError("INSERT INTO alembic_version (version_num) VALUES (?)", {},
                                         Exception("UNIQUE constraint failed: alembic_version.version_num"))
    calls = fake_rdb_storage(monkeypatch, race)
    storage = make_storage(f"sqlite:///{tmp_path}/optuna.db", heartbeat_s=None)
    assert len(calls) == 2
    monkeypatch.undo()  # optuna checks isinstance(storage, RDBStorage)
    optuna.create_study(storage=storage, study_name="s").optimize(lambda t: t.suggest_float("x", 0, 1), n_trials=1)


def test_other_storage_errors_are_not_retried(tmp_path, monkeypatch):
    calls = fake_rdb_storage(monkeypatch, sqlalchemy.exc.OperationalError("connect", {}, Exception("refused")))
    with pytest.raises(UserError, match="cannot open study storage .*refused"):
        make_storage(f"sqlite:///{tmp_path}/optuna.db", heartbeat_s=None)
    assert len(calls) == 1


@pytest.mark.parametrize("setting", ["search.storage", "tracking.uri"])
def test_a_database_url_without_its_driver_names_the_package_to_install(setting):
    import importlib.util
    import re

    from sustainable_ipa.tracking.store import open_store

    if importlib.util.find_spec("MySQLdb") is not None:
        pytest.skip("MySQLdb is installed here: no driver is missing")
    url = "mysql+mysqldb://user@127.0.0.1:1/db"  # nothing is contacted: the driver is looked for first
    expected = re.escape(f"{setting} {url} needs the Python module 'MySQLdb'") + ".*pip install 'mysqlclient'"
    with pytest.raises(UserError, match=expected):
        make_storage(url) if setting == "search.storage" else open_store(url, "x", None)


# Heartbeats where Optuna has none (the gRPC proxy, the journal) ---------------------------------------------------
class Clock:
    """time.monotonic of the storage module, moved by hand."""

    def __init__(self, monkeypatch):
        self.now = 1000.0
        monkeypatch.setattr(storage_module.time, "monotonic", lambda: self.now)


def beat(storage, trial: optuna.Trial) -> None:
    """One heartbeat of `trial`, by the id its storage gives its number (a trial's own id is private)."""
    study_id = storage.get_study_id_from_name(trial.study.study_name)
    storage.record_heartbeat(storage.get_trial_id_from_study_id_trial_number(study_id, trial.number))


def test_a_trial_whose_heartbeat_stops_is_failed_and_retried_with_its_parameters(tmp_path, monkeypatch):
    clock = Clock(monkeypatch)
    storage = make_storage(f"journal:{tmp_path}/study.log", heartbeat_s=1)
    study = optuna.create_study(storage=storage, study_name="s")
    alive, dead, silent = (study.ask() for _ in range(3))
    for trial in (alive, dead):
        trial.suggest_float("x", 0, 1)
        beat(storage, trial)
    # `silent` never beat: a worker on the database directly (Optuna's own heartbeat table) is not judged here
    optuna.storages.fail_stale_trials(study)  # first sight of each token
    clock.now += 1.5
    beat(storage, alive)
    optuna.storages.fail_stale_trials(study)
    assert [t.state.name for t in study.trials] == ["RUNNING"] * 3  # 1.5 s < 2 × heartbeat_s
    clock.now += 1.0  # dead's token unchanged for 2.5 s, alive's for 1 s
    optuna.storages.fail_stale_trials(study)
    states = {t.number: t.state.name for t in study.trials}
    assert states == {alive.number: "RUNNING", dead.number: "FAIL", silent.number: "RUNNING", 3: "WAITING"}
    retry = study.trials[3]
    assert retry.system_attrs["failed_trial"] == dead.number and retry.params == study.trials[dead.number].params


def test_a_heartbeat_after_another_worker_failed_the_trial_is_ignored(tmp_path):
    storage = make_storage(f"journal:{tmp_path}/study.log", heartbeat_s=1)
    study = optuna.create_study(storage=storage, study_name="s")
    trial = study.ask()
    study.tell(trial, state=optuna.trial.TrialState.FAIL)
    beat(storage, trial)  # no UpdateFinishedTrialError from the heartbeat thread


# Exactly n_trials across workers (search/slots.py) ----------------------------------------------------------------
def test_a_trial_numbered_after_n_trials_taken_gives_way_until_one_of_them_fails(tmp_path):
    from sustainable_ipa.search.slots import TrialSlots

    study = optuna.create_study(storage=make_storage(f"sqlite:///{tmp_path}/optuna.db", heartbeat_s=None))
    slots = TrialSlots(study, 2)
    first, second = study.ask(), study.ask()
    assert not slots.surplus(first) and not slots.surplus(second)  # numbered below n_trials: nothing to count
    late = study.ask()  # two workers passed the wait at once for the last slot: the later number gives way
    assert slots.surplus(late)
    study.tell(first, state=optuna.trial.TrialState.FAIL)  # its worker died: the slot is free again
    assert not slots.surplus(late)
    study.tell(second, state=optuna.trial.TrialState.FAIL)
    study.enqueue_trial({})  # a queued retry (WAITING, trial 3) holds a slot before it is popped
    storage = study_storage(study)
    # a trial asked before the pop
    fresh = optuna.Trial(study, storage.create_new_trial(storage.get_study_id_from_name(study.study_name)))
    assert fresh.number == 4 and slots.surplus(fresh)  # late and the queued retry take both slots
    retry = study.ask()
    assert retry.number == 3 and not slots.surplus(retry)


def test_the_wait_ends_when_the_study_is_complete_or_a_slot_frees(tmp_path, monkeypatch):
    from sustainable_ipa.search.slots import TrialSlots

    clock = Clock(monkeypatch)
    storage = make_storage(f"journal:{tmp_path}/study.log", heartbeat_s=1)
    study = optuna.create_study(storage=storage)
    slots = TrialSlots(study, 2, poll_s=0)
    assert slots.wait()
    done, held = study.ask(), study.ask()
    study.tell(done, 1.0)
    beat(storage, held)  # then its worker is killed: the token never changes again
    polls = []

    def sleep(_s):  # each poll of the wait moves the clock on by half a second
        polls.append(clock.now)
        clock.now += 0.5

    monkeypatch.setattr("sustainable_ipa.search.slots.time.sleep", sleep)
    assert slots.wait()  # the held trial failed once stale (> 2 s): its retry may start
    assert polls == [1000.0, 1000.5, 1001.0, 1001.5, 1002.0, 1002.5]  # token first seen at 1000, stale after 1002
    assert study.trials[held.number].state.name == "FAIL"
    retry = study.ask()
    assert retry.number == 2 and not slots.surplus(retry)
    study.tell(retry, 2.0)
    assert slots.wait() is False  # complete


@pytest.mark.parametrize("url", ["grpc://proxy-host", "grpc://:13000", "grpc://proxy-host:port", "grpc://h:70000"])
def test_a_proxy_address_without_host_or_port_is_one_line(url):
    with pytest.raises(UserError, match=f"^search.storage '{url}' is not a gRPC proxy address. Fix: pass "
                                        "search.storage=grpc://host:port$"):
        make_storage(url)
