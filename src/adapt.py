"""Replay load and carbon traces through IPA's optimiser: IPA's objective vs energy-aware vs carbon-aware.

    python src/adapt.py                                   # diurnal load, flat carbon (CodeCarbon's country figure)
    python src/adapt.py adapt.load=bursty adapt.carbon=diurnal
    python src/adapt.py adapt.load=my_load.csv adapt.carbon=my_grid_export.csv
    python src/adapt.py adapt.mode=live adapt.speedup=300  # the real pipeline serves the trace, beside the simulation
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from sustainable_ipa.cli import hydra_entry  # noqa: E402


def work(cfg):
    if cfg.adapt.mode == "live":
        from sustainable_ipa.adapt.live import live_job

        live_job(cfg)
        return
    from sustainable_ipa.adapt.adapt_job import adapt_job

    adapt_job(cfg)


if __name__ == "__main__":
    hydra_entry(work)
