"""A Hydra callback on every multirun: a multirun of `src/main.py` ends naming its sweep and the command that reports
on it (each job has printed its own run; the sweep id tag is what groups them)."""

from __future__ import annotations

import sys
from pathlib import Path

from hydra.experimental.callback import Callback
from omegaconf import DictConfig


def sweep_lines(sweep_id: str, tracking_uri: str, experiment: str) -> list[str]:
    from sustainable_ipa.db_driver import without_password
    from sustainable_ipa.tracking.links import report_command

    return [f"sweep {sweep_id}: its jobs are the runs tagged sweep_id={sweep_id} in experiment '{experiment}' of "
            f"{without_password(tracking_uri)}",
            f"report on the sweep: {report_command(sweep_id, tracking_uri, experiment)}"]


# The scripts whose runs carry the tag the report selects on. By the script's name: Hydra names every job after
# cli.py, where `hydra_entry` declares it.
TAGGED_BY_SWEEP = ("main.py",)


class SayWhereTheSweepIs(Callback):
    def on_multirun_end(self, config: DictConfig, **kwargs) -> None:
        if Path(sys.argv[0]).name not in TAGGED_BY_SWEEP:
            return  # a multirun of search.py or adapt.py: each job has named its own run
        lines = sweep_lines(config.hydra.sweep.dir, config.tracking.uri, config.tracking.experiment)
        print("\n".join(lines), file=sys.stderr, flush=True)
