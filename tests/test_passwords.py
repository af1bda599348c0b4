"""A password in a URL setting reaches the connection, and nothing else: no printed line, param, tag, artifact,
Hydra log line or Hydra-saved config holds it (issue 30, item 6)."""

from __future__ import annotations

import contextlib
import io
import logging
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from helpers import SMALL, store_overrides
from postgres_server import PASSWORD
from sustainable_ipa.config import PROJECT_ROOT
from sustainable_ipa.db_driver import mask_passwords, without_password

SECRET = "pw-4f7c9e"  # found nowhere but where the test puts it
# Each URL setting's form, with a password: servers that refuse (port 1), a driver missing, a port that is no number.
URLS = [f"http://u:{SECRET}@127.0.0.1:1", f"http://u:{SECRET}@127.0.0.1:xx",
        f"postgresql+psycopg://u:{SECRET}@127.0.0.1:1/db", f"mysql://u:{SECRET}@127.0.0.1:1/db",
        f"grpc://u:{SECRET}@127.0.0.1:1"]


def forms_of(setting: str) -> list[str]:
    """The URL forms tried for a setting: every form for the store (each fails on its own path through MLflow and
    SQLAlchemy), the forms the others accept for the rest (their failures all reach the same one-line exit)."""
    if setting == "tracking.uri":
        return URLS
    return [u for u in URLS if u.startswith(("postgresql", "grpc"))] if setting == "search.storage" else URLS[:1]


def test_mask_passwords_masks_each_url_in_a_line_and_leaves_the_rest():
    assert mask_passwords(f"cannot open postgresql+psycopg://sipa:{SECRET}@h:5432/db (refused)") == \
        "cannot open postgresql+psycopg://sipa:***@h:5432/db (refused)"
    # Hydra escapes an override's colons in its saved overrides and log lines
    assert mask_passwords(f"#0 : search.storage=mysql\\://u\\:{SECRET}@h/db x=1") == \
        "#0 : search.storage=mysql\\://u\\:***@h/db x=1"
    assert mask_passwords(f"[a://:{SECRET}@h, mlflow-artifacts://u:{SECRET}@h/x]") == \
        "[a://:***@h, mlflow-artifacts://u:***@h/x]"
    for kept in ("http://127.0.0.1:5000/#/experiments/1", "sqlite:////tmp/mlflow.db", "mail a@b.c at http://h:1/x"):
        assert mask_passwords(kept) == kept
    assert without_password(f"mlflow-artifacts://u:{SECRET}@h/x") == "mlflow-artifacts://u:***@h/x"  # not SQLAlchemy's


URL_SETTINGS = ("tracking.uri", "search.storage", "profiling.import_from")  # each opened as its job opens it


def test_every_setting_holding_a_url_is_tried_with_a_password():
    """A new setting whose shipped value is a URL joins URL_SETTINGS (and `_opener`)."""
    from omegaconf import OmegaConf

    from sustainable_ipa.config import compose

    def urls(node, prefix=""):
        for key, value in node.items():
            if isinstance(value, dict):
                yield from urls(value, f"{prefix}{key}.")
            elif isinstance(value, str) and "://" in value:
                yield f"{prefix}{key}"

    assert set(urls(OmegaConf.to_container(compose(), resolve=True))) <= set(URL_SETTINGS)


def _opener(setting: str, tmp_path: Path):
    """The job's work for one setting: open what it names as the jobs do, which fails (nothing answers)."""
    def work(cfg):
        if setting == "tracking.uri":
            from sustainable_ipa.tracking.store import open_store

            open_store(cfg.tracking.uri, cfg.tracking.experiment, cfg.tracking.artifact_root)
        elif setting == "search.storage":
            from sustainable_ipa.search.storage import make_storage

            make_storage(cfg.search.storage, timeout_s=2)
        else:
            from sustainable_ipa.fingerprint import this_machine
            from sustainable_ipa.search.profiler import import_profiles

            import_profiles(cfg.profiling.import_from, this_machine(), tmp_path / "profiles.csv", "cpu")
    return work


def test_a_password_in_any_url_setting_is_in_no_printed_line_nor_hydra_file(tmp_path):
    """Each URL setting with a password, in a multirun (Hydra logs each job's overrides, and saves multirun.yaml
    besides the job's .hydra files): the job's one-line failure, Hydra's lines and its files show `***`."""
    from sustainable_ipa.cli import hydra_entry

    handlers = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
    argv, results = sys.argv, []
    try:
        for setting in URL_SETTINGS:
            for i, url in enumerate(forms_of(setting)):
                sweep = tmp_path / f"{setting}-{i}"
                sys.argv = ["main.py", "-m", *store_overrides(tmp_path), f"{setting}={url}", f"hydra.sweep.dir={sweep}"]
                out, err = io.StringIO(), io.StringIO()
                with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err), \
                        pytest.raises(SystemExit) as stopped:
                    hydra_entry(_opener(setting, tmp_path), from_mlflow=False)
                results.append((setting, url, stopped.value.code, out.getvalue() + err.getvalue(), sweep))
    finally:
        sys.argv = argv
        for sig, handler in handlers.items():
            signal.signal(sig, handler)
        logging.shutdown()  # Hydra's job log file handlers
    for setting, url, code, printed, sweep in results:
        assert code == 2 and "error: " in printed, (setting, url, printed)  # the opener ran and refused it
        assert SECRET not in printed and "u\\:***@" in printed, (setting, url, printed)  # the "#0 : …" line too
        saved = [p for p in sweep.rglob("*") if p.is_file()]
        assert {"multirun.yaml", "config.yaml", "overrides.yaml", "hydra.yaml"} <= {p.name for p in saved}
        assert not [p for p in saved if SECRET in p.read_text(errors="replace")], (setting, url)


def _everything_in(database_url: str) -> str:
    """Every row of every table of a database, as text."""
    from sqlalchemy import MetaData, create_engine, select

    engine = create_engine(database_url)
    try:
        tables = MetaData()
        tables.reflect(engine)
        with engine.connect() as connection:
            return "\n".join(str(row) for table in tables.sorted_tables for row in connection.execute(select(table)))
    finally:
        engine.dispose()


@pytest.mark.slow  # one small run of src/main.py: ~30 s
def test_a_run_with_passwords_in_its_url_settings_stores_and_prints_none(tmp_path):
    """A sweep of one run with passwords in the URL settings it logs but does not open (its store is SQLite, which
    takes none; a store's own URL is masked by the same code, and tried in the test above): no password in its
    output, its store (params, tags, config.yaml), the artifacts, Hydra's files and logs, or anything else under the
    run's folder."""
    tracking_uri = f"sqlite:///{tmp_path}/mlruns/mlflow.db"
    args = ["-m", *SMALL, *store_overrides(tmp_path),
            f"search.storage=postgresql+psycopg://sipa:{PASSWORD}@127.0.0.1:1/optuna",
            f"profiling.import_from=http://sipa:{PASSWORD}@127.0.0.1:1/profiles.csv",
            f"hydra.sweep.dir={tmp_path}/multirun"]
    done = subprocess.run([sys.executable, str(PROJECT_ROOT / "src" / "main.py"), *args], capture_output=True,
                          text=True, timeout=300, cwd=tmp_path, env={**os.environ, "PYTHONUNBUFFERED": "1"})
    assert done.returncode == 0, done.stderr[-3000:]
    assert PASSWORD not in done.stdout + done.stderr
    assert PASSWORD not in _everything_in(tracking_uri)
    files = [p for p in tmp_path.rglob("*") if p.is_file()]
    assert any(p.suffix == ".log" for p in files)
    # the run's config.yaml artifact and Hydra's saved configs hold the settings, masked
    configs = [p for p in files if p.name == "config.yaml"]
    assert len(configs) >= 2 and all("sipa:***@" in p.read_text() for p in configs)
    assert not [p for p in files if PASSWORD.encode() in p.read_bytes()]


def test_a_local_copy_keeps_no_password_and_its_import_asks_for_the_url(tmp_path, capsys, monkeypatch):
    """A run's local copy (its store stopped answering) is a file on disk: the store's password is masked there, and
    importing it without --tracking-uri says in one line to pass the whole URL."""
    from sustainable_ipa.tracking import local_copy

    monkeypatch.setattr(local_copy, "_folder", tmp_path)
    local_copy.started("r1", f"http://u:{SECRET}@127.0.0.1:1", "0", "run", {})
    path = local_copy.write("r1", "FAILED")
    assert SECRET not in path.read_text() and "u:***@" in path.read_text()
    assert local_copy.main([str(path)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "whose password is not kept" in err and "--tracking-uri" in err


def test_a_tracking_servers_links_carry_no_login():
    """The UI links a job prints for a tracking server: the browser asks for the login, none is in the link."""
    from sustainable_ipa.tracking.links import run_url, runs_view_url

    uri = f"https://u:{SECRET}@mlflow.example:5000/"
    assert run_url(uri, "1", "r").startswith("https://mlflow.example:5000/#/experiments/1/runs/r?")
    assert runs_view_url(uri, "1").startswith("https://mlflow.example:5000/#/experiments/1/runs?")


def test_an_unexpected_error_quoting_the_url_is_printed_masked(tmp_path):
    """A library's error that quotes the URL, not one the project words: its traceback shows `***`, exit 1."""
    from sustainable_ipa.cli import hydra_entry

    def work(cfg):
        raise RuntimeError(f"no answer from {cfg.search.storage}")

    handlers = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
    argv, err = sys.argv, io.StringIO()
    try:
        sys.argv = ["main.py", *store_overrides(tmp_path), f"search.storage={URLS[2]}", "hydra.output_subdir=null",
                    f"hydra.run.dir={tmp_path}/run"]
        with contextlib.redirect_stderr(err), pytest.raises(SystemExit) as stopped:
            hydra_entry(work, from_mlflow=False)
    finally:
        sys.argv = argv
        for sig, handler in handlers.items():
            signal.signal(sig, handler)
    assert stopped.value.code == 1 and "RuntimeError: no answer from postgresql+psycopg://u:***@" in err.getvalue()
    assert SECRET not in err.getvalue()
