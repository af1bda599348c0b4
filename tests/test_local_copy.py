"""A store that stops answering mid-run: the runs end with one line, what they logged is written to a local copy,
and the copy logs to the store once it answers (here a SQLite store whose connection 'drops': no server needed)."""

from __future__ import annotations

import json

import pytest
from sqlalchemy.exc import OperationalError

from sustainable_ipa.tracking import local_copy
from sustainable_ipa.tracking.runs import log, tracked_run
from sustainable_ipa.tracking.store import open_store


def test_a_store_gone_mid_run_leaves_a_local_copy_that_is_logged_once_it_answers(tmp_path, client, monkeypatch):
    folder = tmp_path / "unsent"
    monkeypatch.setattr(local_copy, "_folder", folder)
    experiment_id = open_store(client.tracking_uri, "gone", None)
    with pytest.raises(local_copy.StoreWentAway) as caught:
        with tracked_run(client, experiment_id, "job") as parent:
            log(client, parent, params={"adaptation": "default"})
            with tracked_run(client, experiment_id, "job-rep0", parent_run_id=parent) as rep:
                log(client, rep, metrics={"energy_j_total": 3.5}, params={"repetition": 0})
                monkeypatch.setattr(client, "log_batch", lambda *a, **k: _drop())  # the store stops answering
                log(client, rep, metrics={"latency_p50_s": 0.25})
    message = str(caught.value)
    assert f"stopped answering during run {rep} (server closed the connection unexpectedly)" in message
    assert f"kept in {folder}" in message and f"python -m sustainable_ipa.tracking.local_copy {folder}" in message
    copies = {p.stem: json.loads(p.read_text()) for p in folder.glob("*.json")}
    assert set(copies) == {parent, rep} and {c["status"] for c in copies.values()} == {"FAILED"}
    assert {k: v for k, v, _, _ in copies[rep]["metrics"]} == {"energy_j_total": 3.5, "latency_p50_s": 0.25}
    assert client.get_run(rep).info.status == "RUNNING"  # not ended: the store did not answer
    assert "latency_p50_s" not in client.get_run(rep).data.metrics

    monkeypatch.undo()  # the store answers again; a later start ended the runs KILLED meanwhile
    client.set_terminated(rep, "KILLED")
    assert local_copy.main([str(folder)]) == 0
    run = client.get_run(rep)
    assert run.info.status == "FAILED" and run.data.metrics == {"energy_j_total": 3.5, "latency_p50_s": 0.25}
    assert run.data.params["repetition"] == "0" and client.get_run(parent).info.status == "FAILED"
    assert not list(folder.glob("*.json")) and len(list((folder / "imported").glob("*.json"))) == 2


def test_a_refusal_of_what_was_logged_is_no_store_gone():
    from mlflow.exceptions import MlflowException

    assert not local_copy.went_away(MlflowException("Changing param values is not allowed"))
    assert local_copy.went_away(_caught())


def _drop():
    raise OperationalError("INSERT INTO metrics", {}, Exception("server closed the connection unexpectedly"))


def _caught() -> BaseException:
    try:
        _drop()
    except OperationalError as err:
        return err


def test_runs_a_signal_cannot_end_on_a_store_gone_are_kept_locally(tmp_path, client, monkeypatch):
    """Ctrl-C while the store does not answer: `end_open_runs` (what the signal handler calls) writes each copy."""
    from sustainable_ipa.tracking.runs import end_open_runs

    monkeypatch.setattr(local_copy, "_folder", tmp_path / "unsent")
    experiment_id = open_store(client.tracking_uri, "stopped", None)
    with pytest.raises(local_copy.StoreWentAway):
        with tracked_run(client, experiment_id, "job") as run_id:
            log(client, run_id, metrics={"energy_j_total": 2.0})
            monkeypatch.setattr(client, "set_terminated", lambda *a, **k: _drop())
            failed = end_open_runs()
            assert failed == {run_id: f"the store does not answer; what the run logged is kept in "
                                      f"{tmp_path / 'unsent' / run_id}.json"}
    copy = json.loads((tmp_path / "unsent" / f"{run_id}.json").read_text())
    assert copy["status"] == "KILLED" and copy["metrics"][0][:2] == ["energy_j_total", 2.0]


def test_the_import_command_says_in_one_line_what_it_cannot_read(tmp_path, capsys):
    assert local_copy.main([str(tmp_path / "nowhere")]) == 2
    assert capsys.readouterr().err.strip().splitlines() == [
        f"error: no local copies at {tmp_path / 'nowhere'}. Fix: pass tracking.local_copy_dir or one of its .json files"]
    (tmp_path / "broken.json").write_text("{not json")
    assert local_copy.main([str(tmp_path)]) == 2
    [line] = capsys.readouterr().err.strip().splitlines()
    assert line.startswith(f"error: {tmp_path / 'broken.json'} is not a local copy of a run")


def test_a_locked_or_mismatched_database_is_not_a_store_gone_away():
    """Contention and schema errors say the store answered: the run is not left RUNNING as if it had gone away."""
    assert local_copy.went_away(_caught())  # the connection dropped
    assert not local_copy.went_away(OperationalError("INSERT …", {}, Exception("database is locked")))
    assert not local_copy.went_away(OperationalError("SELECT …", {}, Exception("no such table: runs")))
