"""Where a job tells its user to look: a local store gets the command that serves its UI, a server its own pages;
every experiment the project opens is tagged so that MLflow's UI shows it as model training with the key figures.
(That the printed URLs resolve on a real server, and what its UI then shows: tests/test_browser.py.)"""

import json

from mlflow.tracking import MlflowClient

from sustainable_ipa.tracking.links import (EXPERIMENT_KIND, KEY_FIGURES, KEY_FIGURES_VIEW, SHARED_VIEW_TAG,
                                            ids_from_url, run_url, runs_view_url, where_to_look)
from sustainable_ipa.tracking.store import open_store

KIND = "mlflow.experimentKind"


def test_a_local_store_gets_the_ui_command_the_runs_table_and_the_run():
    lines = where_to_look("sqlite:////data/mlflow.db", "sustainable-ipa", "3", "abc123")
    assert lines == ["run abc123 in experiment 'sustainable-ipa' of sqlite:////data/mlflow.db",
                     "serve the UI: mlflow ui --backend-store-uri sqlite:////data/mlflow.db",
                     "runs table (key figures): http://127.0.0.1:5000/#/experiments/3/runs"
                     "?workflowType=machine_learning&viewStateShareKey=key-figures",
                     "this run: http://127.0.0.1:5000/#/experiments/3/runs/abc123?workflowType=machine_learning"]


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
