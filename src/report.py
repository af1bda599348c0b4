"""Report on runs in the tracking store: does energy change which configuration is best?

    python src/report.py                                  # every finished job of tracking.experiment
    python src/report.py report.sweep_id=multirun/2026-11-23/10-00-00
    python src/report.py report.study=video-cpu           # the trials of an Optuna study
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from sustainable_ipa.cli import hydra_entry  # noqa: E402


def work(cfg):
    from sustainable_ipa.report.report_job import report_job

    report_job(cfg)


if __name__ == "__main__":
    hydra_entry(work)
