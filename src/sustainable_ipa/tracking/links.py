"""Where a user looks at a run: its address in the MLflow UI and, for a local store, the command that serves it.

MLflow 3.17's UI shows every experiment in its GenAI view (traces, token usage) unless the page asks for the
model-training view (`workflowType=machine_learning`, else the user's last choice); the runs table opens with the
project's key figures as columns through the saved view `tracking/store.py` records in each experiment.
"""

from __future__ import annotations

import json
import shlex
import sys
import time
import urllib.request
from pathlib import Path
from urllib.parse import urlencode, urlsplit

from sustainable_ipa.db_driver import without_password

LOCAL_UI = "http://127.0.0.1:5000"  # where `mlflow ui` listens unless told otherwise
NO_JOB_EXECUTION = "MLFLOW_SERVER_ENABLE_JOB_EXECUTION=false"  # else `mlflow ui` starts 7 job consumers
MODEL_TRAINING = {"workflowType": "machine_learning"}  # the UI's own query parameter and value (3.17)
SAVED_VIEW_PARAM = "viewStateShareKey"  # the runs page's query parameter that opens a saved view
KEY_FIGURES_VIEW = "key-figures"  # the id of the saved view of the key figures (tracking/store.py)
# The figures to compare runs on: a job with repetitions logs `<metric>_mean`, a single trial the plain name.
KEY_FIGURES = ["energy_j_per_request", "cost_usd_per_1k", "latency_p99_s", "accuracy_reference", "throughput_rps"]
EXPERIMENT_KIND = {"mlflow.experimentKind": "custom_model_development"}  # the UI's kind for training-like work
SHARED_VIEW_TAG = "mlflow.sharedViewState."  # the UI's prefix for a saved view's experiment tag (3.17)


def experiment_tags(now_ms: int | None = None) -> dict[str, str]:
    """The tags that make the UI treat an experiment as model training and offer the view "Key figures": the
    runs table with the key figures as its first columns, the means of jobs with repetitions first, then the single
    values of one-trial runs and study trials. The envelope and state are the UI's own saved-view format (a JSON
    state inside a JSON envelope); `columnOrder` puts the columns in that order (the UI would sort them by name)."""
    columns = [f"metrics.`{m}{suffix}`" for suffix in ("_mean", "") for m in KEY_FIGURES]
    state = json.dumps({"selectedColumns": columns, "columnOrder": columns, "orderByKey": "attributes.start_time",
                        "orderByAsc": False})
    created = int(time.time() * 1000) if now_ms is None else now_ms
    envelope = json.dumps({"name": "Key figures", "createdAt": created, "updatedAt": created, "state": state})
    return {**EXPERIMENT_KIND, SHARED_VIEW_TAG + KEY_FIGURES_VIEW: envelope}


def ui_base(tracking_uri: str) -> str:
    """The UI's address: the tracking server itself (without user and password: the browser asks for them), else
    the UI that `ui_command` starts."""
    if not _is_server(tracking_uri):
        return LOCAL_UI
    parts = urlsplit(tracking_uri.rstrip("/"))
    return parts._replace(netloc=parts.netloc.rpartition("@")[2]).geturl()


def runs_view_url(tracking_uri: str, experiment_id: str) -> str:
    """The experiment's runs table in the model-training view, with the key figures as columns."""
    query = urlencode({**MODEL_TRAINING, SAVED_VIEW_PARAM: KEY_FIGURES_VIEW})
    return f"{ui_base(tracking_uri)}/#/experiments/{experiment_id}/runs?{query}"


def run_url(tracking_uri: str, experiment_id: str, run_id: str) -> str:
    """The UI page of one run."""
    return f"{ui_base(tracking_uri)}/#/experiments/{experiment_id}/runs/{run_id}?{urlencode(MODEL_TRAINING)}"


def ids_from_url(url: str) -> tuple[str, str | None]:
    """(experiment id, run id or None) of a URL made here: what the UI reads from it."""
    parts = url.split("#/experiments/", 1)[1].split("?", 1)[0].split("/")
    return parts[0], (parts[2] if len(parts) > 2 and parts[2] else None)


def _is_server(tracking_uri: str) -> bool:
    return tracking_uri.startswith(("http://", "https://"))


def ui_command(tracking_uri: str) -> str | None:
    """The command that serves the UI on a local store, typed in a fresh shell (the venv's mlflow is not on PATH):
    `make -C <project> ui` for the project's own store, else the venv's mlflow by its absolute path, with MLflow's
    job consumers off (seven processes a UI does not use). None for a tracking server, which serves its own."""
    if _is_server(tracking_uri):
        return None
    from sustainable_ipa.config import PROJECT_ROOT

    venv = PROJECT_ROOT / ".venv"  # the Makefile's VENV
    if tracking_uri == default_store() and Path(sys.executable).parent.parent == venv:
        return f"make -C {shlex.quote(str(PROJECT_ROOT))} ui"
    mlflow = Path(sys.executable).with_name("mlflow")
    program = shlex.quote(str(mlflow)) if mlflow.is_file() else f"{shlex.quote(sys.executable)} -m mlflow"
    return f"{NO_JOB_EXECUTION} {program} ui --backend-store-uri {shlex.quote(without_password(tracking_uri))}"


def default_store() -> str:
    """The store of conf/tracking/mlflow.yaml when MLFLOW_TRACKING_URI is not set: `mlflow ui`'s default there."""
    from sustainable_ipa.config import PROJECT_ROOT

    return f"sqlite:///{PROJECT_ROOT}/mlflow.db"


def ui_shows_run(tracking_uri: str, run_id: str, timeout_s: float = 1.0) -> bool:
    """Whether a UI answers at `ui_base` with this run. A tracking server is the UI of its runs; a local store's run
    shows only in a UI started on that store (another store's UI may hold the port)."""
    if _is_server(tracking_uri):
        return True
    url = f"{LOCAL_UI}/api/2.0/mlflow/runs/get?{urlencode({'run_id': run_id})}"
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # the loopback is never proxied
    try:
        with opener.open(url, timeout=timeout_s) as response:
            return response.status == 200
    except (OSError, ValueError):  # refused, timed out, or an HTTP error: no UI of this store there
        return False


def follow_line(tracking_uri: str, experiment_id: str, run_id: str) -> str:
    """What a job says as its run starts: "follow this run" only where a UI answers with it, else how to start one."""
    url = run_url(tracking_uri, experiment_id, run_id)
    if ui_shows_run(tracking_uri, run_id):
        return f"follow this run: {url}"
    return f"run {run_id} started; to follow it, serve the UI ({ui_command(tracking_uri)}), then open {url}"


def where_to_look(tracking_uri: str, experiment: str, experiment_id: str, run_id: str,
                  ui_answers: bool | None = None) -> list[str]:
    """The lines a job ends with: the run, its store, how to serve the UI where none shows it (`ui_answers`: None
    asks the UI), the runs table and the run's page."""
    lines = [f"run {run_id} in experiment '{experiment}' of {without_password(tracking_uri)}"]
    if not (ui_shows_run(tracking_uri, run_id) if ui_answers is None else ui_answers):
        lines.append(f"serve the UI: {ui_command(tracking_uri)}")
    lines.append(f"runs table (key figures): {runs_view_url(tracking_uri, experiment_id)}")
    lines.append(f"this run: {run_url(tracking_uri, experiment_id, run_id)}")
    return lines


def report_command(sweep_id: str, tracking_uri: str, experiment: str) -> str:
    """The report on one sweep, typed in a fresh shell: the venv's python, the script's absolute path, and the
    store and experiment where they are not the defaults."""
    from omegaconf import OmegaConf

    from sustainable_ipa.config import CONFIG_DIR, PROJECT_ROOT

    args = [sys.executable, str(PROJECT_ROOT / "src" / "report.py"), f"report.sweep_id={sweep_id}"]
    if tracking_uri != default_store():
        args.append(f"tracking.uri={without_password(tracking_uri)}")
    if experiment != OmegaConf.load(CONFIG_DIR / "tracking" / "mlflow.yaml").experiment:
        args.append(f"tracking.experiment={experiment}")
    return shlex.join(args)


def print_where_to_look(console, tracking_uri: str, experiment: str, experiment_id: str, run_id: str) -> None:
    """`where_to_look` on a rich console, each line whole: a URL cut by wrapping cannot be opened."""
    for line in where_to_look(tracking_uri, experiment, experiment_id, run_id):
        console.print(line, soft_wrap=True, highlight=False, markup=False)


def tag_for_the_ui(client, experiment_id: str) -> None:
    """The UI's experiment kind (model training, not GenAI) and the saved view of the key figures, on an experiment
    that lacks them: a user's own choice of kind or edit of the view stays."""
    present = client.get_experiment(experiment_id).tags
    for key, value in experiment_tags().items():
        if key not in present:
            client.set_experiment_tag(experiment_id, key, value)
