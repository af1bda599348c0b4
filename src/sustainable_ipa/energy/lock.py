"""One energy-measured run per machine: machine-wide counters cannot be split between concurrent runs."""

from __future__ import annotations

import fcntl
import os
import time
from pathlib import Path

from sustainable_ipa.errors import UserError


class MachineLock:
    """An exclusive `flock` on `path`, held while a run measures energy. A second run waits up to `wait_s`,
    then refuses with one line naming the holder."""

    def __init__(self, path: str | Path, wait_s: float = 0.0, poll_s: float = 0.2):
        self.path = Path(path)
        self.wait_s = wait_s
        self.poll_s = poll_s
        self._fd: int | None = None

    def acquire(self) -> "MachineLock":
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o666)
        deadline = time.monotonic() + self.wait_s
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    holder = os.pread(fd, 64, 0).decode(errors="replace").strip() or "another process"
                    os.close(fd)
                    raise UserError(f"another energy-measured run (pid {holder}) holds {self.path}; energy of two "
                                    "runs at once cannot be told apart",
                                    "run sweeps one job at a time (Hydra's basic launcher), wait, or raise "
                                    "energy.lock_wait_s") from None
                time.sleep(self.poll_s)
        os.ftruncate(fd, 0)
        os.pwrite(fd, str(os.getpid()).encode(), 0)
        self._fd = fd
        return self

    def release(self) -> None:
        if self._fd is not None:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None

    def __enter__(self) -> "MachineLock":
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()
