"""A Hydra callback on every multirun: its last lines name the sweep and the command that reports on it (each job
has printed its own run; the sweep id is what groups them)."""

from __future__ import annotations

import sys

from hydra.experimental.callback import Callback
from omegaconf import DictConfig


def sweep_lines(sweep_id: str, tracking_uri: str, experiment: str) -> list[str]:
    from sustainable_ipa.db_driver import without_password
    from sustainable_ipa.tracking.links import report_command

    return [f"sweep {sweep_id}: its jobs are the runs tagged sweep_id={sweep_id} in experiment '{experiment}' of "
            f"{without_password(tracking_uri)}",
            f"report on the sweep: {report_command(sweep_id, tracking_uri, experiment)}"]


class SayWhereTheSweepIs(Callback):
    def on_multirun_end(self, config: DictConfig, **kwargs) -> None:
        lines = sweep_lines(config.hydra.sweep.dir, config.tracking.uri, config.tracking.experiment)
        print("\n".join(lines), file=sys.stderr, flush=True)
