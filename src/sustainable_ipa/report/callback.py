"""A Hydra callback: when a multirun ends, report on exactly that sweep."""

from __future__ import annotations

from hydra.experimental.callback import Callback
from omegaconf import DictConfig, open_dict


class ReportAfterSweep(Callback):
    def on_multirun_end(self, config: DictConfig, **kwargs) -> None:
        from sustainable_ipa.report.report_job import report_job

        cfg = config.copy()
        with open_dict(cfg):
            cfg.report.sweep_id = config.hydra.sweep.dir  # the tag every job of this sweep carries
        report_job(cfg)
