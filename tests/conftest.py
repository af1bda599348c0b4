"""Configs composed with Hydra's compose API, shrunk for a 2-core CPU, each test pointed at its own store."""

from __future__ import annotations

import os

import pytest

os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
os.environ.pop("MLFLOW_TRACKING_URI", None)
os.environ.pop("MLFLOW_RUN_ID", None)

from helpers import SMALL, store_overrides  # noqa: E402
from postgres_server import postgres  # noqa: E402,F401  (the session's throwaway PostgreSQL server)
from sustainable_ipa.config import compose  # noqa: E402


@pytest.fixture
def make_cfg(tmp_path):
    """`make_cfg(*overrides)`: the default config, small and with a store under tmp_path."""

    def make(*overrides: str):
        return compose(SMALL + store_overrides(tmp_path) + list(overrides))

    return make


@pytest.fixture
def client(tmp_path):
    from mlflow.tracking import MlflowClient

    return MlflowClient(tracking_uri=f"sqlite:///{tmp_path}/mlruns/mlflow.db")


