"""Study storage from a URL: any SQLAlchemy URL (RDB, with heartbeat) or `journal:<path>` (JournalStorage)."""

from __future__ import annotations

import time
import warnings
from pathlib import Path

import optuna

from sustainable_ipa.db_driver import check_db_driver
from sustainable_ipa.errors import UserError

FIX = "pass search.storage=sqlite:////abs/path/optuna.db, a postgresql:// URL, or journal:/abs/path/study.log"
CREATION_ATTEMPTS = 4


def lost_creation_race(err: Exception) -> bool:
    """Whether opening an RDB storage failed because another worker was creating the same tables."""
    text = str(err).lower()
    return "alembic_version" in text or "already exists" in text


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
        check_db_driver(url, "search.storage")
        if url.startswith("sqlite:///"):
            Path(url[len("sqlite:///"):]).parent.mkdir(parents=True, exist_ok=True)
        kwargs = {}
        if heartbeat_s:
            kwargs = {"heartbeat_interval": heartbeat_s, "grace_period": 2 * heartbeat_s,
                      "heartbeat_stale_trial_callback": optuna.storages.RetryHeartbeatStaleTrialCallback(max_retry=1)}
        for attempt in range(CREATION_ATTEMPTS):
            try:
                return optuna.storages.RDBStorage(url, engine_kwargs={"pool_pre_ping": True}, **kwargs)
            except Exception as err:
                # Workers started together on a new database race to create its tables (optuna/optuna#1092):
                # the loser sees them half-made; a moment later they are complete and it can open them.
                if attempt + 1 == CREATION_ATTEMPTS or not lost_creation_race(err):
                    raise
                time.sleep(0.5 * (attempt + 1))
    except UserError:
        raise
    except Exception as err:  # SQLAlchemy/driver errors: unreachable host, missing driver, unwritable file
        reason = (str(err).strip().splitlines() or [type(err).__name__])[0][:200]
        raise UserError(f"cannot open study storage {url} ({reason})", FIX) from None
