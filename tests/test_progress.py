"""Progress where no terminal shows rich's live bar (logs, nohup, CI): lines, not silence until the end."""

import io

import pytest
from rich.console import Console
from rich.progress import MofNCompleteColumn, Progress, TextColumn

from sustainable_ipa.progress import progress_bar


def log_console() -> tuple[Console, io.StringIO]:
    out = io.StringIO()
    return Console(file=out, width=100), out  # a file: no terminal


def lines(out: io.StringIO) -> list[str]:
    return [" ".join(line.split()) for line in out.getvalue().splitlines() if line.strip()]  # MofN pads


def test_a_log_gets_a_line_as_the_work_advances_not_only_at_the_end():
    console, out = log_console()
    with progress_bar(console, TextColumn("{task.description}"), MofNCompleteColumn(), every_s=0) as progress:
        task = progress.add_task("profiling", total=3)
        for done in range(1, 4):
            progress.advance(task)
            assert lines(out)[-1] == f"profiling {done}/3"  # printed while the work runs
    assert lines(out) == ["profiling 1/3", "profiling 2/3", "profiling 3/3"]


def test_lines_come_at_most_every_every_s_plus_the_first_and_the_last():
    console, out = log_console()
    with progress_bar(console, TextColumn("{task.fields[what]}"), MofNCompleteColumn(), every_s=3600) as progress:
        task = progress.add_task("", total=50, what="")
        for i in range(50):
            progress.update(task, advance=1, what=f"batch {i}")
    assert lines(out) == ["batch 0 1/50", "batch 49 50/50"]


def test_work_that_stops_early_still_logs_where_it_stopped():
    console, out = log_console()
    with pytest.raises(RuntimeError):
        with progress_bar(console, TextColumn("{task.description}"), MofNCompleteColumn(), every_s=3600) as progress:
            task = progress.add_task("study", total=10, completed=4)  # resumed: 4 trials done before
            progress.advance(task)
            progress.advance(task)
            raise RuntimeError("a trial failed")
    assert lines(out) == ["study 5/10", "study 6/10"]


def test_a_terminal_gets_rich_s_live_bar():
    console = Console(file=io.StringIO(), force_terminal=True, force_interactive=True)
    assert type(progress_bar(console, MofNCompleteColumn())) is Progress
