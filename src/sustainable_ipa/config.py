"""Config plumbing: the project root resolver, composing configs outside ``@hydra.main``, validation."""

from __future__ import annotations

import os
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from sustainable_ipa.errors import UserError

PROJECT_ROOT = Path(__file__).resolve().parents[2]
CONFIG_DIR = PROJECT_ROOT / "conf"

# Configs name default paths relative to the project, wherever the command is started from.
if not OmegaConf.has_resolver("sipa.root"):
    OmegaConf.register_new_resolver("sipa.root", lambda: str(PROJECT_ROOT))


def compose(overrides: list[str] | None = None) -> DictConfig:
    """The config `src/main.py` would run with these overrides (for tests, search and benchmarks)."""
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
        return hydra_compose(config_name="config", overrides=list(overrides or []))


def group_options(group: str) -> list[str]:
    return sorted(p.stem for p in (CONFIG_DIR / group).glob("*.yaml"))


def available_cores(hardware: DictConfig) -> int:
    """`hardware.cores`, else the cores this process may run on (its affinity, as a container or `taskset` sets it;
    not `os.cpu_count()`, the machine's): the stage workers are pinned within them."""
    return int(hardware.cores) if hardware.cores is not None else len(os.sched_getaffinity(0))


def is_number(value) -> bool:
    """An int or float from the config (YAML and the command line give numbers as such; `true` is no number)."""
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def is_positive_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value > 0


def adaptation_cores(cfg: DictConfig) -> int:
    return sum(cfg.adaptation[s].threads * cfg.adaptation[s].replicas for s in cfg.pipeline.stages)


def check_run_fits(cfg: DictConfig) -> None:
    """A run pins each stage replica to cores of its own: they must exist here. (`hardware.cores` may describe a
    bigger machine, which composition may assume, but a run on this one cannot.)"""
    cores, usable = adaptation_cores(cfg), len(os.sched_getaffinity(0))
    if cores > usable:
        raise UserError(f"adaptation '{cfg.adaptation.name}' needs {cores} cores but this process may run on "
                        f"{usable} (hardware.cores={cfg.hardware.cores} is more than it has): its stage workers "
                        "would share cores", "lower adaptation.<stage>.threads or .replicas, or run it where that "
                        "many cores are free")


def validate(cfg: DictConfig) -> None:
    """Reject an inconsistent run before anything is started or loaded."""
    catalogue = cfg.pipeline.variants
    for stage in cfg.pipeline.stages:
        if stage not in cfg.adaptation:
            raise UserError(f"adaptation '{cfg.adaptation.name}' has no '{stage}' stage",
                            f"add adaptation.{stage}.variant|batch_size|threads|replicas")
        spec = cfg.adaptation[stage]
        if spec.variant not in catalogue[stage]:
            raise UserError(f"unknown {stage} variant '{spec.variant}'",
                            f"choose one of {', '.join(catalogue[stage])} for adaptation.{stage}.variant")
        for key in ("batch_size", "threads", "replicas"):
            value = spec[key]
            if not is_positive_int(value):
                raise UserError(f"adaptation.{stage}.{key} must be a positive integer, got {value!r}",
                                f"pass adaptation.{stage}.{key}=1 or larger")
    cores = adaptation_cores(cfg)
    available = available_cores(cfg.hardware)
    if cores > available:
        raise UserError(f"adaptation '{cfg.adaptation.name}' needs {cores} cores (threads × replicas summed over "
                        f"stages) but hardware '{cfg.hardware.name}' has {available}",
                        "lower adaptation.<stage>.threads or .replicas, or set hardware.cores")
    trial = cfg.trial
    for key in ("requests", "repetitions"):
        if not isinstance(trial[key], int) or trial[key] <= 0:
            raise UserError(f"trial.{key} must be a positive integer, got {trial[key]!r}", f"pass trial.{key}=1 or larger")
    if not isinstance(trial.warmup, int) or trial.warmup < 0:
        raise UserError(f"trial.warmup must be 0 or a positive integer, got {trial.warmup!r}", "pass trial.warmup=0 or larger")
    if trial.load not in ("offline", "poisson"):
        raise UserError(f"unknown trial.load '{trial.load}'", "pass trial.load=offline or trial.load=poisson")
    if trial.load == "poisson" and not (is_number(trial.rate_rps) and trial.rate_rps > 0):
        raise UserError(f"trial.rate_rps must be a number more than 0 for poisson load, got {trial.rate_rps!r}",
                        "pass trial.rate_rps=2.0")
    if not (is_number(trial.sla_s) and trial.sla_s > 0):
        raise UserError(f"trial.sla_s must be a number more than 0, got {trial.sla_s!r}", "pass trial.sla_s=6.89")
    price = cfg.hardware.price_usd_per_core_hour
    if not (is_number(price) and price >= 0):
        raise UserError(f"hardware.price_usd_per_core_hour must be a number ≥ 0, got {price!r}",
                        "pass hardware.price_usd_per_core_hour=0.0425 (USD per core-hour)")
    if cfg.hardware.device == "cuda":
        import torch

        if not torch.cuda.is_available():
            raise UserError("hardware=cuda but torch sees no CUDA device", "use hardware=cpu or install a CUDA build of torch")
