"""Opening study storages: workers that start together on a new database."""

import optuna
import pytest
import sqlalchemy.exc

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
