"""Optuna's gRPC storage proxy in front of the study database: workers talk to this one process instead of each
holding its own pool of database connections (Optuna's advice beyond a few hundred workers).

    python src/storage_proxy.py search.storage=postgresql+psycopg://user:password@db-host:5432/optuna \\
        search.proxy.host=0.0.0.0 search.proxy.port=13000
    python src/search.py search.storage=grpc://proxy-host:13000          # on each worker

It serves until Ctrl-C or SIGTERM. Workers through the proxy keep the heartbeat (a killed worker's trial is failed
and retried); optuna-dashboard reads the database itself.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from sustainable_ipa.cli import hydra_entry  # noqa: E402


def work(cfg):
    from sustainable_ipa.search.storage import serve_proxy

    serve_proxy(cfg.search.storage, cfg.search.proxy.host, int(cfg.search.proxy.port),
                float(cfg.search.storage_timeout_s), ready=lambda line: print(line, flush=True))


if __name__ == "__main__":
    hydra_entry(work)
