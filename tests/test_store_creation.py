"""A new SQLite store is whole or absent: Ctrl-C at any moment of a first run leaves a store that opens, and a
store half-made by an interrupted schema set-up elsewhere gets one line saying what to do."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient
from sqlalchemy import event
from sqlalchemy.engine import Engine

from helpers import store_overrides
from sustainable_ipa.errors import UserError
from sustainable_ipa.tracking.store import open_store

JOB = Path(__file__).with_name("store_creation_job.py")
SIGNAL_JOB = Path(__file__).with_name("signal_job.py")
MOMENTS = (0.01, 0.5, 0.99)  # fractions of the SQL statements MLflow runs to make a new store


@pytest.fixture(scope="module")
def creation_statements(tmp_path_factory) -> int:
    """How many SQL statements MLflow runs to make a new store (its migrations: about 1,700 in MLflow 3.17)."""
    count = [0]

    def counter(*_):
        count[0] += 1

    event.listen(Engine, "before_cursor_execute", counter)
    try:
        MlflowClient(tracking_uri=f"sqlite:///{tmp_path_factory.mktemp('count')}/mlflow.db").search_experiments()
    finally:
        event.remove(Engine, "before_cursor_execute", counter)
    return count[0]


def test_a_first_run_interrupted_while_its_store_is_made_leaves_a_store_that_opens(tmp_path, creation_statements):
    folders = {at: tmp_path / f"at{at}" for at in MOMENTS}
    jobs = {}
    for at, folder in folders.items():
        folder.mkdir()
        jobs[at] = subprocess.Popen([sys.executable, str(JOB), str(max(1, int(at * creation_statements))),
                                     *store_overrides(folder)], cwd=folder, stdout=subprocess.DEVNULL,
                                    stderr=subprocess.PIPE, text=True)
    for at, job in jobs.items():
        _, stderr = job.communicate(timeout=180)
        assert job.returncode == 130, (at, stderr[-2000:])
        assert stderr.strip().splitlines()[-1].startswith("error: interrupted"), (at, stderr[-2000:])
        store = folders[at] / "mlruns"
        assert not list(store.glob(".mlflow.db.creating-*")), at  # the temporary file went with the interruption
        # no store or a whole one: either way the next start opens it (a half-made one raises here)
        open_store(f"sqlite:///{store}/mlflow.db", "sustainable-ipa", str(store / "artifacts"))


HALF_MAKE = """
    import os, sys
    from sqlalchemy import event
    from sqlalchemy.engine import Engine
    from mlflow.tracking import MlflowClient
    count = [0]
    def stop(*_):
        count[0] += 1
        if count[0] == int(sys.argv[2]):
            raise KeyboardInterrupt
    event.listen(Engine, "before_cursor_execute", stop)
    try:
        MlflowClient(tracking_uri=sys.argv[1])
    except KeyboardInterrupt:
        pass
"""


def test_a_half_made_store_is_one_line_saying_to_move_it_aside(tmp_path, creation_statements):
    """The store `mlflow` itself (or an older version of this project) left when interrupted while making it."""
    db = tmp_path / "mlruns" / "mlflow.db"
    db.parent.mkdir()
    subprocess.run([sys.executable, "-c", textwrap.dedent(HALF_MAKE), f"sqlite:///{db}",
                    str(creation_statements // 2)], check=True, timeout=120)
    with pytest.raises(UserError) as raised:
        open_store(f"sqlite:///{db}", "sustainable-ipa", str(tmp_path / "artifacts"))
    assert "half-made" in raised.value.problem and f"mv {db} {db}.half-made" in raised.value.fix
    # through an entry point: that line alone, exit 2
    job = subprocess.run([sys.executable, str(SIGNAL_JOB), *store_overrides(tmp_path)], cwd=tmp_path,
                         capture_output=True, text=True, timeout=120)
    assert job.returncode == 2 and job.stderr.strip().splitlines() == [f"error: {raised.value}"], job.stderr[-2000:]
