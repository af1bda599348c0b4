"""Passwords in URL settings (tracking.uri, search.storage…) masked where Hydra shows or saves them: its log lines
(a multirun lists each job's overrides) and the files it writes before the job runs. The connection itself is made
with the real URL; only what is shown or stored is masked."""

from __future__ import annotations

import logging
from pathlib import Path

from hydra.experimental.callback import Callback
from hydra.types import RunMode
from omegaconf import DictConfig

from sustainable_ipa.db_driver import mask_passwords


class MaskPasswordsFilter(logging.Filter):
    """On a logging handler (conf/config.yaml names it for Hydra's handlers): each line leaves with URLs' passwords
    masked."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        masked = mask_passwords(message)
        if masked != message:
            record.msg, record.args = masked, ()
        return True


def mask_file(path: Path) -> None:
    """Rewrite `path` with its URLs' passwords masked, where it holds one."""
    text = path.read_text(encoding="utf-8")
    masked = mask_passwords(text)
    if masked != text:
        path.write_text(masked, encoding="utf-8")


def saved_configs(config: DictConfig) -> list[Path]:
    """The files Hydra has saved for this job: .hydra/{config,hydra,overrides}.yaml, and a sweep's multirun.yaml."""
    hydra = config.hydra
    files = []
    if hydra.output_subdir is not None:
        files += sorted((Path(hydra.runtime.output_dir) / hydra.output_subdir).glob("*.yaml"))
    if hydra.mode == RunMode.MULTIRUN:
        files.append(Path(hydra.sweep.dir) / "multirun.yaml")
    return [path for path in files if path.is_file()]


class MaskPasswords(Callback):
    """Hydra writes the job's config, overrides and its own settings as given on the command line, before the job
    starts (hydra.core.utils.run_job): they are rewritten masked before the job's first line of work."""

    def on_job_start(self, config: DictConfig, **kwargs) -> None:
        for path in saved_configs(config):
            mask_file(path)
