"""Runs on an `mlflow server` backed by PostgreSQL with proxied artifacts, read back through its REST API; the server
going away mid-run loses no figure; a server or database URL that is wrong is one line."""

from __future__ import annotations

import http.server
import json
import subprocess
import sys
import threading
import time
import urllib.request

import pytest

from fake_profiles import ONE_CONFIGURATION, use_fake_profiles
from mlflow_server import MlflowServer, values
from sustainable_ipa.config import PROJECT_ROOT
from sustainable_ipa.errors import UserError
from sustainable_ipa.fingerprint import this_machine
from sustainable_ipa.search.profiler import cache_path
from sustainable_ipa.tracking.store import open_store

SMALL_RUN = ["weights=random", "trial.warmup=0", "hardware.cores=2", "energy.idle_s=0.3", "energy.poll_interval_s=0.2"]


@pytest.fixture(scope="module")
def tracking_server(postgres, tmp_path_factory):
    folder = tmp_path_factory.mktemp("mlflow-server")
    server = MlflowServer(postgres.new_database(), folder / "artifacts", folder / "server.log").start()
    try:
        yield server
    finally:
        server.kill()


@pytest.fixture
def live_server(tracking_server):
    """The module's server, started again if a test killed it."""
    return tracking_server if tracking_server.running() else tracking_server.start()


def main_args(tmp_path, server_url: str, experiment: str, *overrides: str) -> list[str]:
    """`python src/main.py` on the tracking server, with everything local (lock, idle cache, copies) under tmp_path."""
    return [sys.executable, str(PROJECT_ROOT / "src" / "main.py"), *SMALL_RUN, f"tracking.uri={server_url}",
            f"tracking.experiment={experiment}", f"tracking.artifact_root={tmp_path}/local-artifacts",
            f"tracking.local_copy_dir={tmp_path}/unsent", f"energy.idle_cache={tmp_path}/idle.json",
            f"energy.lock_path={tmp_path}/energy.lock", *overrides]


@pytest.mark.slow
def test_the_study_and_the_report_work_against_the_tracking_server(live_server, make_cfg, tmp_path, monkeypatch):
    """The profile evaluator's study records its parent and trial runs on the server, with its pareto.csv in the
    server's artifact store, and the report reads those trials back from it and logs itself there."""
    from sustainable_ipa.report.report_job import report_job
    from sustainable_ipa.search.search_job import search_job

    use_fake_profiles(monkeypatch)  # no model is built
    cfg = make_cfg(*ONE_CONFIGURATION, f"tracking.uri={live_server.url}", "tracking.experiment=study",
                   "search.n_trials=1", f"search.storage=sqlite:///{tmp_path}/optuna.db",
                   f"profiling.cache_dir={tmp_path}/profiles",
                   f"report.out_dir={tmp_path}/reports", "report.study=video-cpu")
    outcome = search_job(cfg)
    runs = {r["info"]["run_id"]: r for r in live_server.runs("study")}
    parent = runs[outcome.parent_run_id]
    trials = [r for r in runs.values() if values(r["data"]["tags"]).get("mlflow.parentRunId") == outcome.parent_run_id]
    assert parent["info"]["status"] == "FINISHED" and len(trials) == 1  # a space of one configuration
    assert all("objective_energy_per_request" in values(t["data"]["metrics"]) for t in trials)
    path = f"{parent['info']['experiment_id']}/{outcome.parent_run_id}/artifacts"
    listed = live_server.get("/api/2.0/mlflow-artifacts/artifacts", path=path)["files"]
    assert "pareto.csv" in {f["path"] for f in listed}
    assert cache_path(tmp_path / "profiles", "cpu", this_machine()).is_file()

    folder = report_job(cfg)
    assert (folder / "report.html").is_file()
    reports = [r for r in live_server.runs("study") if values(r["data"]["tags"]).get("report") == "true"]
    assert len(reports) == 1 and reports[0]["info"]["status"] == "FINISHED"
    assert not (tmp_path / "mlruns" / "artifacts" / "study").exists()  # nothing written beside the client


@pytest.mark.slow  # a real server's answer; without one: the 404 case below
def test_a_tracking_url_with_a_wrong_path_is_one_line(live_server):
    with pytest.raises(UserError, match=r"is no MLflow tracking server's address \(HTTP 404.*Fix: pass the server's"):
        open_store(f"{live_server.url}/mlflow", "x", None)


class _Answers(http.server.BaseHTTPRequestHandler):
    status, body, kind = 500, b'{"error_code": "INTERNAL_ERROR", "message": "database is down"}', "application/json"

    def do_GET(self):
        self.send_response(self.status)
        self.send_header("Content-Type", self.kind)
        self.end_headers()
        self.wfile.write(self.body)

    def log_message(self, *args):
        pass


@pytest.mark.parametrize("status,body,kind,expected", [
    (500, b'{"error_code": "INTERNAL_ERROR", "message": "database is down"}', "application/json",
     r"answers with an error \(HTTP 500: database is down\)"),
    (200, b"<html>a web page</html>", "text/html", r"does not answer as an MLflow tracking server \(HTTP 200"),
    (401, b"", "text/plain", r"refuses the request \(HTTP 401\).*MLFLOW_TRACKING_USERNAME"),
    (404, b"<!doctype html><title>404 Not Found</title>", "text/html",  # a path the server does not serve
     r"is no MLflow tracking server's address \(HTTP 404 at /api/2.0/mlflow/experiments/get-by-name\)"),
])
def test_a_server_that_answers_errors_or_is_not_mlflow_is_one_line_at_once(status, body, kind, expected):
    handler = type("Handler", (_Answers,), {"status": status, "body": body, "kind": kind})
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        started = time.monotonic()
        with pytest.raises(UserError, match=expected):
            open_store(f"http://127.0.0.1:{httpd.server_address[1]}", "x", None)
        assert time.monotonic() - started < 10  # one request, not MLflow's minutes of retries on a 500
    finally:
        httpd.shutdown()
        httpd.server_close()


def test_wrong_postgresql_credentials_in_tracking_uri_are_one_line_without_the_password(postgres):
    url = postgres.new_database().replace(":sipa-test@", ":not-the-password@")
    started = time.monotonic()
    with pytest.raises(UserError) as caught:
        open_store(url, "x", None)
    message = str(caught.value)
    assert "password authentication failed" in message and "Fix: put the right user and password" in message
    assert "not-the-password" not in message and "***" in message
    assert time.monotonic() - started < 10  # MLflow alone retries a refused database for about 100 s
    missing = url.replace(":not-the-password@", ":sipa-test@").rsplit("/", 1)[0] + "/no_such_db"
    with pytest.raises(UserError, match="does not exist.*Fix: create the database first"):
        open_store(missing, "x", None)


@pytest.mark.slow  # MLflow makes its tables in the new database: 2-4 s
def test_mlflow_accepts_psycopg3_urls_as_a_tracking_store(postgres, tmp_path):
    """psycopg 3 is the driver installed: `postgresql+psycopg://` works directly as tracking.uri too."""
    from mlflow.tracking import MlflowClient

    url = postgres.new_database()
    experiment_id = open_store(url, "direct", str(tmp_path / "artifacts"))
    client = MlflowClient(tracking_uri=url)
    run = client.create_run(experiment_id)
    client.log_metric(run.info.run_id, "energy_j_total", 1.5)
    assert client.get_run(run.info.run_id).data.metrics == {"energy_j_total": 1.5}
    assert client.get_experiment(experiment_id).artifact_location == (tmp_path / "artifacts" / "direct").as_uri()


@pytest.mark.slow
def test_runs_on_a_tracking_server_read_back_through_its_rest_api_and_a_server_gone_mid_run_loses_nothing(
        live_server, tmp_path):
    """One job of two repetitions: the first is logged whole and read back over plain HTTP (metrics, tags, artifacts
    through the server's proxy); the server is killed while the second measures, and what it measured is kept
    locally (its import once the server answers again: tests/test_local_copy.py)."""
    server = live_server  # killed below: the last test of the module, so that no other waits for a restart
    job = subprocess.Popen(main_args(tmp_path, server.url, "gone", "trial.repetitions=2", "trial.requests=6",
                                     "trial.rate_rps=2", "tracking.server_retries=1"),
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=tmp_path)
    deadline = time.monotonic() + 300
    while True:  # the second repetition measures: its params logged, its metrics not yet
        assert job.poll() is None and time.monotonic() < deadline, job.communicate()[1][-2000:]
        runs = {r["info"]["run_name"]: r for r in server.runs("gone")}
        second = runs.get("default-cpu-rep1")
        if second and "repetition" in values(second["data"].get("params")):
            break
        time.sleep(0.1)
    first = runs["default-cpu-rep0"]
    # the first repetition's artifacts, listed and read through the server's artifact proxy
    path = f"{first['info']['experiment_id']}/{first['info']['run_id']}/artifacts"
    listed = {f["path"] for f in server.get("/api/2.0/mlflow-artifacts/artifacts", path=path)["files"]}
    with urllib.request.urlopen(f"{server.url}/api/2.0/mlflow-artifacts/artifacts/{path}/requests.csv") as response:
        requests_csv = response.read().decode()
    server.kill()
    _, stderr = job.communicate(timeout=300)

    assert {"requests.csv", "power.csv", "replicas.json"} <= listed
    assert len(requests_csv.strip().splitlines()) == 1 + 6  # header + one line per request
    assert first["info"]["artifact_uri"].startswith("mlflow-artifacts:")  # the server's store, not a client's path
    assert not (tmp_path / "local-artifacts").exists()  # the client wrote no artifact to a path of its own
    # the first repetition, as any HTTP client reads it
    assert first["info"]["status"] == "FINISHED"
    metrics, tags = values(first["data"]["metrics"]), values(first["data"]["tags"])
    assert metrics["latency_p50_s"] > 0 and metrics["energy_j_per_request"] > 0
    assert tags["owner_pid"] == str(job.pid) and tags["machine_id"] == this_machine().tags()["machine_id"]
    # the job's outcome: one line, exit != 0, the second repetition's figures kept locally
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert job.returncode == 2 and lines[-1].startswith("error: tracking store") and \
        sum(line.startswith("error:") for line in lines) == 1, stderr[-2000:]
    rep1 = runs["default-cpu-rep1"]["info"]["run_id"]
    assert f"stopped answering during run {rep1} (Connection refused)" in lines[-1]
    assert f"kept in {tmp_path}/unsent" in lines[-1]
    copy = json.loads((tmp_path / "unsent" / f"{rep1}.json").read_text())
    kept = {key: value for key, value, _, _ in copy["metrics"]}
    assert kept["latency_p50_s"] > 0 and kept["energy_j_per_request"] > 0
    assert copy["params"]["repetition"] == "1" and copy["status"] == "FAILED"
    parent = runs["default-cpu"]["info"]["run_id"]
    assert json.loads((tmp_path / "unsent" / f"{parent}.json").read_text())["params"]["adaptation.name"] == "default"
