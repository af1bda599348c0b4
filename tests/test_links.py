"""Where a job tells its user to look: a local store gets the command that serves its UI, a server its own pages;
every experiment the project opens is tagged so that MLflow's UI shows it as model training with the key figures.
(That the printed URLs resolve on a real server, and what its UI then shows: tests/test_browser.py.)"""

import http.server
import json
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from sustainable_ipa.config import PROJECT_ROOT
from sustainable_ipa.tracking import links
from sustainable_ipa.tracking.links import (EXPERIMENT_KIND, KEY_FIGURES, KEY_FIGURES_VIEW, SHARED_VIEW_TAG,
                                            default_store, follow_line, ids_from_url, run_url, runs_view_url,
                                            ui_command, ui_shows_run, where_to_look)
from sustainable_ipa.tracking.store import open_store

KIND = "mlflow.experimentKind"


def test_a_local_store_gets_the_ui_command_the_runs_table_and_the_run():
    lines = where_to_look("sqlite:////data/mlflow.db", "sustainable-ipa", "3", "abc123", ui_answers=False)
    assert lines == ["run abc123 in experiment 'sustainable-ipa' of sqlite:////data/mlflow.db",
                     f"serve the UI: {ui_command('sqlite:////data/mlflow.db')}",
                     "runs table (key figures): http://127.0.0.1:5000/#/experiments/3/runs"
                     "?workflowType=machine_learning&viewStateShareKey=key-figures",
                     "this run: http://127.0.0.1:5000/#/experiments/3/runs/abc123?workflowType=machine_learning"]
    # a UI that shows the run needs no command
    assert not any("serve the UI" in line for line in where_to_look("sqlite:////d.db", "e", "3", "r", ui_answers=True))


FRESH_SHELL = {"PATH": "/usr/bin:/bin", "HOME": "/nonexistent"}  # nothing of this venv on PATH, nothing exported


def test_the_ui_command_works_from_a_fresh_shell(tmp_path):
    """The venv's mlflow is not on a new shell's PATH: the command names it by its absolute path (with the job
    consumers off); `--help` shows it starts the UI without starting one."""
    command = ui_command(f"sqlite:///{tmp_path}/mlflow.db")
    assert "MLFLOW_SERVER_ENABLE_JOB_EXECUTION=false" in command
    out = subprocess.run(["sh", "-c", f"{command} --help"], env=FRESH_SHELL, cwd="/", capture_output=True,
                         text=True, timeout=120)
    assert out.returncode == 0 and "--backend-store-uri" in out.stdout, out.stderr[-2000:]


def test_the_projects_own_store_gets_make_ui_from_any_folder():
    command = ui_command(default_store())
    if Path(sys.executable).parent.parent != PROJECT_ROOT / ".venv":
        pytest.skip("not run from the project's own venv, which `make ui` uses")
    assert command == f"make -C {PROJECT_ROOT} ui"
    out = subprocess.run(["sh", "-c", f"{command} -n"], env=FRESH_SHELL, cwd="/", capture_output=True, text=True,
                         timeout=60)  # -n: what make would run, run nowhere
    assert out.returncode == 0 and "mlflow ui" in out.stdout, out.stderr[-2000:]


class _FakeUi(http.server.BaseHTTPRequestHandler):
    """A UI on a store that holds run `known` only: MLflow's REST answer for it, 404 for any other run."""
    def do_GET(self):
        self.send_response(200 if self.path.endswith("run_id=known") else 404)
        self.end_headers()
        self.wfile.write(b"{}")

    def log_message(self, *_):
        pass


def test_follow_this_run_only_where_a_ui_shows_it(monkeypatch):
    server = http.server.HTTPServer(("127.0.0.1", 0), _FakeUi)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        monkeypatch.setattr(links, "LOCAL_UI", f"http://127.0.0.1:{server.server_port}")
        assert follow_line("sqlite:////d.db", "3", "known").startswith("follow this run: http://127.0.0.1:")
        other = follow_line("sqlite:////d.db", "3", "other")  # the UI of another store holds the port
        assert other.startswith("run other started; to follow it, serve the UI (") and "follow this run" not in other
    finally:
        server.shutdown()
        server.server_close()
    # nothing listens there now: no UI answers
    assert not ui_shows_run("sqlite:////d.db", "known")
    assert follow_line("http://mlflow.lab:5000", "3", "r").startswith("follow this run: http://mlflow.lab:5000/#/")


def test_a_tracking_server_is_its_own_ui():
    lines = where_to_look("http://mlflow.lab:5000/", "e", "7", "r1")
    assert not any(line.startswith("serve the UI") for line in lines)
    assert lines[-1] == "this run: http://mlflow.lab:5000/#/experiments/7/runs/r1?workflowType=machine_learning"
    assert runs_view_url("https://mlflow.lab", "7").startswith("https://mlflow.lab/#/experiments/7/runs?")


def test_the_ids_a_url_carries_are_the_ones_it_was_made_from():
    assert ids_from_url(run_url("http://h:1", "12", "f00d")) == ("12", "f00d")
    assert ids_from_url(runs_view_url("sqlite:///x.db", "12")) == ("12", None)


def tags_of(client, experiment_id):
    return client.get_experiment(experiment_id).tags


def test_every_experiment_opened_is_tagged_model_training_with_the_key_figures_view(tmp_path):
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    client = MlflowClient(tracking_uri=uri)
    new = open_store(uri, "made-here", str(tmp_path / "art"))
    older = client.create_experiment("made-before-the-tag")  # a store older than the tags gets them when opened
    mine = client.create_experiment("kind-chosen-by-its-user", tags={KIND: "genai_development"})
    for name in ("made-before-the-tag", "kind-chosen-by-its-user"):
        open_store(uri, name, str(tmp_path / "art"))
    for experiment_id in (new, older):
        assert tags_of(client, experiment_id)[KIND] == EXPERIMENT_KIND[KIND] == "custom_model_development"
    assert tags_of(client, mine)[KIND] == "genai_development"  # a user's own choice stays
    # the saved view, in the UI's envelope, lists the key figures (means and single values) as columns
    envelope = json.loads(tags_of(client, new)[SHARED_VIEW_TAG + KEY_FIGURES_VIEW])
    assert envelope["name"] == "Key figures" and isinstance(envelope["createdAt"], int)
    state = json.loads(envelope["state"])
    columns = state["selectedColumns"]
    for metric in KEY_FIGURES:
        assert f"metrics.`{metric}_mean`" in columns and f"metrics.`{metric}`" in columns
    assert state["columnOrder"][0] == "metrics.`energy_j_per_request_mean`"  # the means first, energy leading


def _sweep_end(script: str, monkeypatch) -> None:
    """The end of a multirun of `script` as Hydra calls it."""
    from omegaconf import OmegaConf

    from sustainable_ipa.tracking.sweep_end import SayWhereTheSweepIs

    monkeypatch.setattr(sys, "argv", [str(PROJECT_ROOT / "src" / script), "-m"])
    SayWhereTheSweepIs().on_multirun_end(OmegaConf.create({
        "hydra": {"sweep": {"dir": "multirun/2026-12-07/10-00-00"}},
        "tracking": {"uri": "sqlite:////data/mlflow.db", "experiment": "study"}}))


def test_a_multirun_of_main_ends_with_its_sweep_and_the_report_command(capsys, monkeypatch):
    _sweep_end("main.py", monkeypatch)
    sweep, report = capsys.readouterr().err.strip().splitlines()
    assert sweep.startswith("sweep multirun/2026-12-07/10-00-00: its jobs are the runs tagged sweep_id=")
    # typed in a fresh shell: the interpreter and script by absolute paths, the store and experiment that are not
    # the defaults
    assert report == ("report on the sweep: " + " ".join([
        sys.executable, str(PROJECT_ROOT / "src" / "report.py"), "report.sweep_id=multirun/2026-12-07/10-00-00",
        "tracking.uri=sqlite:////data/mlflow.db", "tracking.experiment=study"]))


def test_a_multirun_whose_runs_carry_no_sweep_tag_names_no_report(capsys, monkeypatch):
    _sweep_end("search.py", monkeypatch)  # its trials carry no sweep tag: the report would find none
    assert capsys.readouterr().err == ""
