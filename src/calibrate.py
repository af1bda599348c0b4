"""Measure this CPU's power against its load on its own counters (RAPL), for the estimate on VMs of the same CPU.

    python src/calibrate.py                      # energy.meter=auto: RAPL where readable
    python src/calibrate.py energy.calibration_dwell_s=30
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from sustainable_ipa.cli import hydra_entry  # noqa: E402


def work(cfg):
    from sustainable_ipa.energy.calibrate_job import calibrate_job

    calibrate_job(cfg)


if __name__ == "__main__":
    hydra_entry(work)
