"""Where a job tells its user to look: a local store gets the command that serves its UI, a server its own pages."""

from sustainable_ipa.tracking.links import run_url, where_to_look


def test_a_local_store_gets_the_ui_command_and_the_page_it_serves():
    lines = where_to_look("sqlite:////data/mlflow.db", "sustainable-ipa", "3", "abc123")
    assert lines == ["run abc123 in experiment 'sustainable-ipa' of sqlite:////data/mlflow.db",
                     "open it: mlflow ui --backend-store-uri sqlite:////data/mlflow.db, then "
                     "http://127.0.0.1:5000/#/experiments/3/runs/abc123"]


def test_a_tracking_server_is_its_own_ui():
    assert where_to_look("http://mlflow.lab:5000/", "e", "7", "r1")[1] == "open it: http://mlflow.lab:5000/#/experiments/7/runs/r1"
    assert run_url("https://mlflow.lab", "7") == "https://mlflow.lab/#/experiments/7/runs"  # the runs table
