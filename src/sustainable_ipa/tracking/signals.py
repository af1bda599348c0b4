"""SIGINT and SIGTERM as exceptions in the main thread: one stop, which no later signal cuts short.

Two things break runs when signals come in bursts. A signal raised in the middle of a run's start or end leaves the
run RUNNING, or created and unknown to the process: inside `signals_held()` a signal is noted instead and raised when
the block ends. And a second signal raised while the first one's exception unwinds interrupts the clean-up on the
way (a store transaction's rollback: a SQLite write lock then stays held, and every later write waits on it): once
a stop has begun, further signals are only noted. Either hold gives way after HANG_S, so that a clean-up that hangs
can still be interrupted. Python runs signal handlers in the main thread only, so only the main thread's blocks hold.
"""

from __future__ import annotations

import signal
import threading
import time
from contextlib import contextmanager
from typing import Iterator

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)
EXIT_CODES = {signal.SIGINT: 130, signal.SIGTERM: 143}  # 128 + the signal's number, as shells report it
HANG_S = 10.0  # a hold this old is a clean-up that hangs (a tracking server retries for minutes): a signal breaks it


class Terminated(BaseException):
    """SIGTERM, raised in the main thread so that open runs end KILLED."""


_depth = 0  # nesting of signals_held() in the main thread
_held_since = 0.0  # when the outermost signals_held() began (time.monotonic)
_stopping_since: float | None = None  # when this process raised its stop (time.monotonic)
_held: list[int] = []  # signals noted and not acted on
_first: int | None = None  # the first stop signal this process received


def stop_error(signum: int) -> BaseException:
    return KeyboardInterrupt() if signum == signal.SIGINT else Terminated()


def _on_signal(signum: int, frame) -> None:
    global _first, _stopping_since
    if _first is None:
        _first = signum
    since = _held_since if _depth else _stopping_since
    if since is not None and time.monotonic() - since < HANG_S:
        _held.append(signum)
        return
    _stopping_since = time.monotonic()
    raise stop_error(signum)


def install_stop_handlers() -> None:
    """SIGINT raises KeyboardInterrupt and SIGTERM raises Terminated, once, and not inside `signals_held()`."""
    for signum in STOP_SIGNALS:
        signal.signal(signum, _on_signal)


@contextmanager
def signals_held() -> Iterator[None]:
    """The block runs to its end; a SIGINT or SIGTERM that came meanwhile is raised after it (the first, if several),
    unless the process is stopping already.

    Needs `install_stop_handlers()` (each entry point has it through `hydra_entry`); elsewhere it holds nothing."""
    global _depth, _held_since, _stopping_since
    if threading.current_thread() is not threading.main_thread():
        yield  # no signal handler runs in this thread: nothing can interrupt it
        return
    if not _depth:
        _held_since = time.monotonic()
    _depth += 1
    try:
        yield
    finally:
        _depth -= 1
        if not _depth and _held and _stopping_since is None:
            signum = _held[0]
            _held.clear()
            _stopping_since = time.monotonic()
            raise stop_error(signum)


def begin_stop() -> None:
    """From now on signals are only noted (unless the stop hangs): for a stop that did not come through a handler."""
    global _stopping_since
    if _stopping_since is None:
        _stopping_since = time.monotonic()


def first_signal(error: BaseException) -> int:
    """The signal that began the stop: the first handled, else the one `error` stands for."""
    if _first is not None:
        return _first
    return signal.SIGINT if isinstance(error, KeyboardInterrupt) else signal.SIGTERM
