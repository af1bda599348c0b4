"""Run one adaptation of the pipeline and record it in MLflow: `python src/main.py [overrides]` (`-m` sweeps)."""

from __future__ import annotations

import os
import signal
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))  # the package beside this file, installed or not

import hydra  # noqa: E402
from omegaconf import DictConfig  # noqa: E402

from sustainable_ipa.cli import check_group_choices, fail, normalize_argv  # noqa: E402
from sustainable_ipa.config import CONFIG_DIR  # noqa: E402
from sustainable_ipa.errors import UserError  # noqa: E402
from sustainable_ipa.tracking.runs import Terminated  # noqa: E402

# `mlflow run` exports the id of the run it made; only the first start_run would pick it up, so read it once here
# and hand it to every job of a multirun explicitly.
OUTER_RUN_ID = os.environ.pop("MLFLOW_RUN_ID", None)


@hydra.main(config_path=str(CONFIG_DIR), config_name="config", version_base="1.3")
def main(cfg: DictConfig) -> float | None:
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    from sustainable_ipa.experiment import run_job

    hydra_cfg = HydraConfig.get()
    multirun = hydra_cfg.mode == RunMode.MULTIRUN
    sweep_id = hydra_cfg.sweep.dir if multirun else None
    try:
        outcome = run_job(cfg, outer_run_id=OUTER_RUN_ID, nest_under_outer=multirun, sweep_id=sweep_id)
    except UserError as err:
        fail(str(err))
    return outcome.metrics.get("throughput_rps", outcome.metrics.get("throughput_rps_mean"))


def _terminate(signum, frame):
    raise Terminated()


if __name__ == "__main__":
    signal.signal(signal.SIGTERM, _terminate)
    sys.argv[1:] = normalize_argv(sys.argv[1:])
    check_group_choices(sys.argv[1:])
    try:
        main()
    except (KeyboardInterrupt, Terminated) as stopped:
        what, code = ("interrupted", 130) if isinstance(stopped, KeyboardInterrupt) else ("terminated", 143)
        print(f"error: {what}: the open MLflow runs were ended KILLED", file=sys.stderr, flush=True)
        sys.stdout.flush()
        # The runs are closed; skip interpreter teardown, where torch's native worker threads can abort the process.
        os._exit(code)
