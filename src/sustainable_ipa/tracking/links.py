"""Where a user looks at a run: its address in the MLflow UI and, for a local store, the command that serves it."""

from __future__ import annotations

LOCAL_UI = "http://127.0.0.1:5000"  # where `mlflow ui` listens unless told otherwise


def run_url(tracking_uri: str, experiment_id: str, run_id: str | None = None) -> str:
    """The UI page of a run, or of an experiment's runs table: on the tracking server itself, else on the UI that
    `ui_command` starts."""
    base = tracking_uri.rstrip("/") if tracking_uri.startswith(("http://", "https://")) else LOCAL_UI
    page = f"{base}/#/experiments/{experiment_id}/runs"
    return f"{page}/{run_id}" if run_id else page


def ui_command(tracking_uri: str) -> str | None:
    """The command that serves the UI on a local store; None for a tracking server, which serves its own."""
    if tracking_uri.startswith(("http://", "https://")):
        return None
    return f"mlflow ui --backend-store-uri {tracking_uri}"


def where_to_look(tracking_uri: str, experiment: str, experiment_id: str, run_id: str) -> list[str]:
    """The lines a job ends with: the run, its store, and how to open it."""
    lines = [f"run {run_id} in experiment '{experiment}' of {tracking_uri}"]
    command = ui_command(tracking_uri)
    url = run_url(tracking_uri, experiment_id, run_id)
    lines.append(f"open it: {command}, then {url}" if command else f"open it: {url}")
    return lines
