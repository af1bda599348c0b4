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


def core_budget(cfg: DictConfig) -> int:
    """The cores a study may allocate: `available_cores`, yet never fewer than one per stage (a pipeline with more
    stages than cores runs one thread per stage on shared cores, `minimal_footprint`)."""
    return max(available_cores(cfg.hardware), len(cfg.pipeline.stages))


def adaptation_cores(cfg: DictConfig) -> int:
    return sum(cfg.adaptation[s].threads * cfg.adaptation[s].replicas for s in cfg.pipeline.stages)


def check_run_fits(cfg: DictConfig) -> None:
    """A run pins each stage replica to cores of its own: they must exist here. (`hardware.cores` may describe a
    bigger machine, which composition may assume, but a run on this one cannot.)"""
    cores, usable = adaptation_cores(cfg), len(os.sched_getaffinity(0))
    if cores > usable and not minimal_footprint(cfg):
        raise UserError(f"adaptation '{cfg.adaptation.name}' needs {cores} cores but this process may run on "
                        f"{usable} (hardware.cores={cfg.hardware.cores} is more than it has): its stage workers "
                        "would share cores", "lower adaptation.<stage>.threads or .replicas, or run it where that "
                        "many cores are free")


def validate(cfg: DictConfig) -> None:
    """Reject a config before anything is started or loaded: every setting against its declaration in
    `schema.py`, then what only the whole config can tell (the stages' families and their settings, the
    catalogue, the cores)."""
    from sustainable_ipa.schema import check_settings

    check_settings(cfg)
    families = check_pipeline(cfg.pipeline)
    catalogue = cfg.pipeline.variants
    for stage, family in families.items():
        if stage not in cfg.adaptation:
            raise UserError(f"adaptation '{cfg.adaptation.name}' has no '{stage}' stage",
                            f"add adaptation.{stage}.variant|batch_size|threads|replicas (pipeline "
                            f"'{cfg.pipeline.name}' has stages {', '.join(cfg.pipeline.stages)})")
        choice = cfg.adaptation[stage]
        if choice.variant not in catalogue[stage]:
            raise UserError(f"unknown {stage} variant '{choice.variant}'",
                            f"choose one of {', '.join(catalogue[stage])} for adaptation.{stage}.variant")
        if choice.precision == "int8" and choice.runtime != "openvino":
            raise UserError(f"adaptation.{stage}.precision=int8 runs on OpenVINO (NNCF's post-training "
                            f"quantisation), not on runtime={choice.runtime}",
                            f"pass adaptation.{stage}.runtime=openvino")
        if choice.runtime not in family.runtimes:
            raise UserError(f"adaptation.{stage}.runtime={choice.runtime} is not built for the {stage} stage's "
                            f"family ({type(family).__name__} runs on {', '.join(family.runtimes)})",
                            f"pass adaptation.{stage}.runtime=torch")
    extra = sorted(set(cfg.adaptation) - {"name", *cfg.pipeline.stages})
    if extra:
        raise UserError(f"adaptation '{cfg.adaptation.name}' sets stage(s) {', '.join(extra)}, which pipeline "
                        f"'{cfg.pipeline.name}' does not have (its stages: {', '.join(cfg.pipeline.stages)})",
                        "choose an adaptation of this pipeline (adaptation=<pipeline>-default, or one naming its "
                        "stages), or another pipeline")
    cores = adaptation_cores(cfg)
    available = available_cores(cfg.hardware)
    if cores > available and not minimal_footprint(cfg):
        raise UserError(f"adaptation '{cfg.adaptation.name}' needs {cores} cores (threads × replicas summed over "
                        f"stages) but hardware '{cfg.hardware.name}' has {available}",
                        "lower adaptation.<stage>.threads or .replicas, or set hardware.cores")
    if cfg.hardware.device == "cuda":
        import torch

        if not torch.cuda.is_available():
            raise UserError("hardware=cuda but torch sees no CUDA device", "use hardware=cpu or install a CUDA build of torch")


def check_pipeline(pipeline: DictConfig):
    """The stages' families (`families.stage_families`), every catalogue entry's `model` checked by its family, and
    no stage defined or catalogued that `pipeline.stages` does not list."""
    from sustainable_ipa.families import stage_families, variant_model

    families = stage_families(pipeline)
    defined = {k for k in pipeline if k not in ("name", "stages", "sla_s", "variants")}
    for where, names in (("pipeline", defined), ("pipeline.variants", set(pipeline.variants))):
        unlisted = sorted(names - set(pipeline.stages))
        if unlisted:
            raise UserError(f"{where}.{unlisted[0]} is a stage pipeline.stages does not list "
                            f"({', '.join(pipeline.stages)})", f"add {unlisted[0]} to pipeline.stages or remove it")
    for stage, family in families.items():
        if stage not in pipeline.variants:
            raise UserError(f"pipeline '{pipeline.name}' has no variant catalogue for stage '{stage}'",
                            f"add pipeline.variants.{stage} (each variant with reference_accuracy and source)")
        for variant in pipeline.variants[stage]:
            family.check(variant, variant_model(family, pipeline, variant))
    return families


def minimal_footprint(cfg: DictConfig) -> bool:
    """Whether every stage runs one thread in one replica: the least a pipeline can run on. A pipeline with more
    stages than this process has cores still runs so, its stage workers sharing cores (said, and tagged
    `cores_shared`), rather than not at all."""
    return all(cfg.adaptation[s].threads == 1 and cfg.adaptation[s].replicas == 1 for s in cfg.pipeline.stages)
