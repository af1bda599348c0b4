"""Profile every stage variant × batch size × threads of `search.space` on this hardware.

    python src/profiling.py                      # only what the cache (mlruns/profiles/<hardware>.csv) lacks
    python src/profiling.py profiling.refresh=true
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from sustainable_ipa.cli import hydra_entry  # noqa: E402


def work(cfg):
    from sustainable_ipa.search.profiling_job import profile_job

    profile_job(cfg)


if __name__ == "__main__":
    hydra_entry(work)
