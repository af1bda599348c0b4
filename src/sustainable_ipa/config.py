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


# Stages whose model can run on OpenVINO.
OPENVINO_STAGES = ("detector", "classifier")


def available_cores(hardware: DictConfig) -> int:
    """`hardware.cores`, else the cores this process may run on (its affinity, as a container or `taskset` sets it;
    not `os.cpu_count()`, the machine's): the stage workers are pinned within them."""
    return int(hardware.cores) if hardware.cores is not None else len(os.sched_getaffinity(0))


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
    """Reject a config before anything is started or loaded: every setting against its declaration in
    `schema.py`, then what only the whole config can tell (stages, the catalogue, the cores)."""
    from sustainable_ipa.schema import check_settings

    check_settings(cfg)
    catalogue = cfg.pipeline.variants
    for stage in cfg.pipeline.stages:
        if stage not in cfg.adaptation:
            raise UserError(f"adaptation '{cfg.adaptation.name}' has no '{stage}' stage",
                            f"add adaptation.{stage}.variant|batch_size|threads|replicas")
        choice = cfg.adaptation[stage]
        if choice.variant not in catalogue[stage]:
            raise UserError(f"unknown {stage} variant '{choice.variant}'",
                            f"choose one of {', '.join(catalogue[stage])} for adaptation.{stage}.variant")
        if choice.precision == "int8" and choice.runtime != "openvino":
            raise UserError(f"adaptation.{stage}.precision=int8 runs on OpenVINO (NNCF's post-training "
                            f"quantisation), not on runtime={choice.runtime}",
                            f"pass adaptation.{stage}.runtime=openvino")
        if choice.runtime == "openvino" and stage not in OPENVINO_STAGES:
            raise UserError(f"adaptation.{stage}.runtime=openvino is not built yet (only for "
                            f"{', '.join(OPENVINO_STAGES)})", f"pass adaptation.{stage}.runtime=torch")
    cores = adaptation_cores(cfg)
    available = available_cores(cfg.hardware)
    if cores > available:
        raise UserError(f"adaptation '{cfg.adaptation.name}' needs {cores} cores (threads × replicas summed over "
                        f"stages) but hardware '{cfg.hardware.name}' has {available}",
                        "lower adaptation.<stage>.threads or .replicas, or set hardware.cores")
    if cfg.hardware.device == "cuda":
        import torch

        if not torch.cuda.is_available():
            raise UserError("hardware=cuda but torch sees no CUDA device", "use hardware=cpu or install a CUDA build of torch")
