"""One energy-measured run per machine: machine-wide counters cannot be split between concurrent runs."""

from __future__ import annotations

import fcntl
import os
import time
from pathlib import Path
from typing import Callable

from sustainable_ipa.errors import UserError


class MachineLock:
    """An exclusive `flock` on `path`, held while a run measures energy. A second run waits up to `wait_s`, saying
    so in a line (a spinner alone shows nothing in a log), then refuses with one line naming the holder."""

    def __init__(self, path: str | Path, wait_s: float = 0.0, poll_s: float = 0.2,
                 on_wait: Callable[[str], None] | None = None, report_every_s: float = 60.0):
        self.path = Path(path)
        self.wait_s = wait_s
        self.poll_s = poll_s
        self.on_wait = on_wait
        self.report_every_s = report_every_s
        self._fd: int | None = None

    def acquire(self) -> "MachineLock":
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o666)
        start = time.monotonic()
        next_report = start
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                now = time.monotonic()
                holder = os.pread(fd, 64, 0).decode(errors="replace").strip() or "another process"
                if now - start >= self.wait_s:
                    os.close(fd)
                    raise UserError(
                        f"another energy-measured run (pid {holder}) holds the machine lock {self.path}: two runs "
                        "at once slow each other's latency and share the machine's energy counters, which cannot be "
                        "split between them",
                        "wait for it to finish (sweeps: one job at a time, Hydra's basic launcher), or pass "
                        "energy.lock_wait_s=<seconds> to queue behind it "
                        "(energy.lock_path names the lock: runs on one machine must share it, e.g. a host folder "
                        "mounted in every container, and runs on different machines must not)") from None
                if self.on_wait is not None and now >= next_report:
                    self.on_wait(f"waiting for the machine lock {self.path} held by pid {holder} "
                                 f"({now - start:.0f} of energy.lock_wait_s={self.wait_s:g} s)")
                    next_report = now + self.report_every_s
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
