"""Search the adaptation space with an Optuna multi-objective study (Optuna driven directly, configs by Hydra).

    python src/search.py                                   # profile evaluator, TPE, 100 trials
    python src/search.py search.evaluator=run search.n_trials=10 trial.requests=8
    python src/search.py search.sampler=nsga2 'search.objectives=[accuracy,latency_p99,emissions]'
Rerunning the same command resumes the study; several workers may share one search.storage.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from sustainable_ipa.cli import hydra_entry  # noqa: E402


def work(cfg):
    from sustainable_ipa.search.search_job import search_job

    search_job(cfg)


if __name__ == "__main__":
    hydra_entry(work)
