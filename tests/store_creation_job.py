"""`signal_job.py` interrupted from inside the store's work: SIGINT at its Nth SQL statement (argv[1]) and again
10 ms later, as a Ctrl-C pressed twice lands at that moment of a first run (making the store, or later).

`python tests/store_creation_job.py N [overrides]`."""

from __future__ import annotations

import os
import signal
import sys
import threading
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from sqlalchemy import event  # noqa: E402
from sqlalchemy.engine import Engine  # noqa: E402

import signal_job  # noqa: E402
from sustainable_ipa.cli import hydra_entry  # noqa: E402

AT = int(sys.argv.pop(1))
_count = 0


@event.listens_for(Engine, "before_cursor_execute")
def _interrupt(*_) -> None:
    global _count
    _count += 1
    if _count == AT:
        os.kill(os.getpid(), signal.SIGINT)
        threading.Timer(0.01, os.kill, (os.getpid(), signal.SIGINT)).start()


if __name__ == "__main__":
    hydra_entry(signal_job.work, from_mlflow=False)
