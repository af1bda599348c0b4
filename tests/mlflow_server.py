"""An `mlflow server` for the tests: a backend store the test names (PostgreSQL from the `postgres` fixture), proxied
artifacts in a temporary folder, a free loopback port; stopped, with every process it started, by whoever starts it.
Also the plain HTTP the tests read it back with (its REST API, as any client in any language would)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

from postgres_server import free_port

START_S = 180  # the server imports MLflow's whole app: 20-30 s on a busy 2-core machine


@dataclass
class MlflowServer:
    backend_uri: str
    artifacts: Path
    log: Path
    port: int = field(default_factory=free_port)
    process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> "MlflowServer":
        """Start (or start again, on the same port and stores) and wait until it answers."""
        mlflow = Path(sys.executable).parent / "mlflow"
        env = {**os.environ, "MLFLOW_DISABLE_TELEMETRY": "true",
               "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}  # else it starts 7 job consumer processes
        with self.log.open("a") as log:
            self.process = subprocess.Popen(
                [str(mlflow), "server", "--backend-store-uri", self.backend_uri, "--artifacts-destination",
                 str(self.artifacts), "--host", "127.0.0.1", "--port", str(self.port), "--workers", "1"],
                stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True)  # its own group: uvicorn too
        deadline = time.monotonic() + START_S
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"mlflow server exited {self.process.returncode}: {self.log.read_text()[-1500:]}")
            try:
                urllib.request.urlopen(f"{self.url}/health", timeout=2).read()
                return self
            except OSError:
                time.sleep(0.3)
        self.kill()
        raise RuntimeError(f"mlflow server did not answer within {START_S} s: {self.log.read_text()[-1500:]}")

    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def kill(self) -> None:
        """SIGKILL the server and the processes it started (a server that goes away, not one that shuts down)."""
        if self.process is not None and self.process.poll() is None:
            try:
                os.killpg(self.process.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            self.process.wait(timeout=30)

    # plain HTTP ----------------------------------------------------------------------------------------------------
    def get(self, endpoint: str, **params) -> dict:
        query = f"?{urllib.parse.urlencode(params)}" if params else ""
        with urllib.request.urlopen(f"{self.url}{endpoint}{query}", timeout=30) as response:
            return json.load(response)

    def post(self, endpoint: str, body: dict) -> dict:
        request = urllib.request.Request(f"{self.url}{endpoint}", data=json.dumps(body).encode(),
                                         headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=30) as response:
            return json.load(response)

    def runs(self, experiment: str) -> list[dict]:
        """Every run of `experiment`, through /api/2.0/mlflow/runs/search."""
        try:
            found = self.get("/api/2.0/mlflow/experiments/get-by-name", experiment_name=experiment)
        except urllib.error.HTTPError as err:
            if err.code == 404:
                return []
            raise
        body = {"experiment_ids": [found["experiment"]["experiment_id"]], "max_results": 1000}
        return self.post("/api/2.0/mlflow/runs/search", body).get("runs", [])


def values(entries: list[dict] | None) -> dict[str, object]:
    """A run's `metrics`, `params` or `tags` list of the REST API as a dict."""
    return {e["key"]: e["value"] for e in entries or []}
