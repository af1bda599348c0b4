"""optuna-dashboard, started as docs/search.md says, serves the trials of a study the search wrote (SQLite, and
PostgreSQL where a server can be started), through its HTTP API."""

from __future__ import annotations

import json
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import optuna
import pytest

from postgres_server import free_port
from study_workers import TINY, write_fake_profiles
from sustainable_ipa.search.configurations import is_new_configuration
from sustainable_ipa.search.search_job import search_job


def get_json(url: str):
    with urllib.request.urlopen(url, timeout=10) as response:
        return json.load(response)


def serve(storage: str, port: int, log: Path, timeout_s: float = 60):
    """`optuna-dashboard <storage> --host 127.0.0.1 --port <port>`; returns the process once its API answers."""
    dashboard = Path(sys.executable).parent / "optuna-dashboard"
    with open(log, "w") as out:
        process = subprocess.Popen([str(dashboard), storage, "--host", "127.0.0.1", "--port", str(port)],
                                   stdout=out, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            get_json(f"http://127.0.0.1:{port}/api/meta")
            return process
        except (urllib.error.URLError, ConnectionError):
            if process.poll() is not None or time.monotonic() > deadline:
                process.kill()
                raise AssertionError(f"optuna-dashboard did not start: {log.read_text()[-2000:]}") from None
            time.sleep(0.1)


@pytest.fixture(scope="module")
def searched(tmp_path_factory):
    """A study `python src/search.py` wrote (in-process, on made-up profiles) into SQLite: its storage URL, its
    name and its trials."""
    from helpers import SMALL, store_overrides
    from sustainable_ipa.config import compose

    folder = tmp_path_factory.mktemp("searched")
    storage = f"sqlite:///{folder}/optuna.db"
    cfg = compose([*SMALL, *store_overrides(folder), *TINY, f"profiling.cache_dir={folder}/profiles",
                   f"search.storage={storage}", "search.n_trials=4"])
    write_fake_profiles(cfg)
    return storage, cfg.search.study_name, search_job(cfg).study.get_trials()


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_optuna_dashboard_serves_the_trials_of_the_study(searched, tmp_path, request, backend):
    storage, name, trials = searched
    if backend == "postgresql":  # the same study, copied into a PostgreSQL database
        storage, source = request.getfixturevalue("postgres").new_database(), storage
        optuna.copy_study(from_study_name=name, from_storage=source, to_storage=storage)
    port = free_port()
    process = serve(storage, port, tmp_path / "dashboard.log")
    try:
        [summary] = [s for s in get_json(f"http://127.0.0.1:{port}/api/studies")["study_summaries"]
                     if s["study_name"] == name]
        detail = get_json(f"http://127.0.0.1:{port}/api/studies/{summary['study_id']}")
    finally:
        process.terminate()
        process.wait(10)
    served = {t["number"]: t for t in detail["trials"]}
    assert sorted(served) == [t.number for t in trials]  # configurations proposed again too (answered_from)
    assert len([t for t in trials if is_new_configuration(t)]) == 4
    for trial in trials:
        assert served[trial.number]["state"] == "Complete" == trial.state.name.capitalize()
        assert {p["name"]: p["param_external_value"] for p in served[trial.number]["params"]} == \
            {param: str(value) for param, value in trial.params.items()}
        assert served[trial.number]["values"] == pytest.approx(trial.values)
    assert detail["best_trials"]  # the Pareto front it draws
