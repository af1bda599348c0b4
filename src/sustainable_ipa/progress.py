"""Progress of long work: rich's live bar on a terminal, a line every few seconds anywhere else.

rich draws nothing on a console that is no terminal (a log file, nohup, a batch scheduler, CI) until the work has
ended, so a 20-minute profiling job would look hung there. The same bar is printed there as a line instead.
"""

from __future__ import annotations

import time

from rich.console import Console
from rich.progress import Progress, ProgressColumn, TaskID


def progress_bar(console: Console, *columns: str | ProgressColumn, every_s: float = 10.0) -> Progress:
    """A rich `Progress` with these columns: live on a terminal; elsewhere a line per task at most every `every_s`
    seconds while it advances, and one when it finishes."""
    if console.is_interactive:
        return Progress(*columns, console=console)
    return _ProgressLines(*columns, console=console, every_s=every_s)


class _ProgressLines(Progress):
    """rich's bookkeeping with its live display off; each task's row is printed as a line instead."""

    def __init__(self, *columns: str | ProgressColumn, console: Console, every_s: float):
        super().__init__(*columns, console=console, disable=True)
        self._every_s = every_s
        self._printed: dict[TaskID, tuple[float, float]] = {}  # task → (when, completed) of its last line

    def advance(self, task_id: TaskID, advance: float = 1) -> None:
        super().advance(task_id, advance)
        self._print(task_id)

    def update(self, task_id: TaskID, **fields) -> None:
        super().update(task_id, **fields)
        self._print(task_id)

    def stop(self) -> None:
        for task in self.tasks:  # work that ended early (an error, a study stopped by another worker)
            self._print(task.id, due=True)
        super().stop()

    def _print(self, task_id: TaskID, due: bool = False) -> None:
        with self._lock:
            task = self._tasks[task_id]
            when, completed = self._printed.get(task_id, (-float("inf"), None))
            now = time.monotonic()
            if task.completed == completed or not (due or task.finished or now - when >= self._every_s):
                return
            self._printed[task_id] = (now, task.completed)
            self.console.print(self.make_tasks_table([task]))  # under the lock: replicas advance from their threads
