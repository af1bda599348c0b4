"""Study storage from a URL: any SQLAlchemy URL (RDB, with heartbeat) or `journal:<path>` (JournalStorage)."""

from __future__ import annotations

from pathlib import Path

import warnings

import optuna

from sustainable_ipa.errors import UserError

FIX = "pass search.storage=sqlite:////abs/path/optuna.db, a postgresql:// URL, or journal:/abs/path/study.log"


def make_storage(url: str, heartbeat_s: int | None = 60):
    """Several workers (processes or machines) may share one storage.

    RDB storages record a heartbeat per running trial: a worker that dies leaves a trial RUNNING, and the next
    worker marks it FAIL (and the failed-trial callback re-queues its parameters), so no completed trial is lost.
    """
    # Heartbeats and the journal backend are marked experimental by Optuna; they are what multi-worker needs.
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    try:
        if url.startswith("journal:"):
            from optuna.storages.journal import JournalFileBackend, JournalStorage

            path = Path(url[len("journal:"):])
            path.parent.mkdir(parents=True, exist_ok=True)
            return JournalStorage(JournalFileBackend(str(path)))
        if "://" not in url:
            raise UserError(f"search.storage '{url}' is not a storage URL", FIX)
        if url.startswith("sqlite:///"):
            Path(url[len("sqlite:///"):]).parent.mkdir(parents=True, exist_ok=True)
        kwargs = {}
        if heartbeat_s:
            kwargs = {"heartbeat_interval": heartbeat_s, "grace_period": 2 * heartbeat_s,
                      "heartbeat_stale_trial_callback": optuna.storages.RetryHeartbeatStaleTrialCallback(max_retry=1)}
        return optuna.storages.RDBStorage(url, engine_kwargs={"pool_pre_ping": True}, **kwargs)
    except UserError:
        raise
    except Exception as err:  # SQLAlchemy/driver errors: unreachable host, missing driver, unwritable file
        reason = (str(err).strip().splitlines() or [type(err).__name__])[0][:200]
        raise UserError(f"cannot open study storage {url} ({reason})", FIX) from None
