"""A tracking server (`mlflow server`) as the store: how long its REST client waits for it, and whether it answers
as one before the first run is made.

MLflow's REST client retries a server that does not answer 7 times with back-off (about 4 minutes) and waits up to
120 s for each answer; a run would hang that long on a server that went away. `use_settings` bounds both for the
job (tracking.server_retries, tracking.server_timeout_s), through MLflow's own variables, which win when exported.
"""

from __future__ import annotations

import os

from sustainable_ipa.errors import UserError

PROBE_TIMEOUT_S = 5
EXPORTED = {name for name in ("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "MLFLOW_HTTP_REQUEST_TIMEOUT") if name in os.environ}
PROBE_ENDPOINT = "/api/2.0/mlflow/experiments/get-by-name"


def use_settings(tracking) -> None:
    """Apply the tracking settings that are not the store's address: retries and timeout of MLflow's REST client,
    where runs' local copies go."""
    from sustainable_ipa.tracking import local_copy

    # What the user exported wins; otherwise each job's own settings (a multirun's jobs may differ).
    for name, value in (("MLFLOW_HTTP_REQUEST_MAX_RETRIES", tracking.server_retries),
                        ("MLFLOW_HTTP_REQUEST_TIMEOUT", int(tracking.server_timeout_s))):
        if name not in EXPORTED:
            os.environ[name] = str(value)
    local_copy.keep_in(tracking.local_copy_dir)


def check_server_answers(uri: str, experiment: str) -> None:
    """One request to the server's REST API, not retried: a URL whose path is not MLflow's, a server that refuses
    the credentials, answers errors or is not MLflow is one line, instead of minutes of retries and an HTML page."""
    from mlflow.utils.credentials import get_default_host_creds
    from mlflow.utils.rest_utils import http_request

    try:
        response = http_request(get_default_host_creds(uri), PROBE_ENDPOINT, "GET", max_retries=0, backoff_factor=0,
                                backoff_jitter=0, timeout=PROBE_TIMEOUT_S, raise_on_status=False,
                                params={"experiment_name": experiment})
    except Exception as err:  # the transport: refused, reset, timed out
        reason = (str(err).strip().splitlines() or [type(err).__name__])[0][-200:]
        raise UserError(f"tracking server {uri} does not answer ({reason})",
                        "start it (mlflow server --host HOST --port PORT) or correct tracking.uri") from None
    try:
        body = response.json()
    except ValueError:
        body = None
    status = response.status_code
    if status == 200 and isinstance(body, dict) or status == 404 and isinstance(body, dict) and "error_code" in body:
        return  # MLflow's answer (404: the experiment does not exist yet)
    what = f"HTTP {status}" + (f": {body.get('message', '')[:160]}" if isinstance(body, dict) else "")
    if status == 404:
        raise UserError(f"tracking.uri {uri} is no MLflow tracking server's address ({what} at {PROBE_ENDPOINT})",
                        "pass the server's root URL, e.g. http://HOST:PORT, with no path (plus its --static-prefix "
                        "if it was started with one)")
    if status in (401, 403):
        raise UserError(f"tracking server {uri} refuses the request ({what})",
                        "export MLFLOW_TRACKING_USERNAME and MLFLOW_TRACKING_PASSWORD (or MLFLOW_TRACKING_TOKEN) "
                        "with credentials the server accepts")
    if status >= 500:
        raise UserError(f"tracking server {uri} answers with an error ({what})",
                        "see the server's log: its backend store (--backend-store-uri) may be unreachable")
    raise UserError(f"{uri} does not answer as an MLflow tracking server ({what}, "
                    f"{response.headers.get('Content-Type', 'no content type')})",
                    "pass the URL of an `mlflow server` in tracking.uri")
