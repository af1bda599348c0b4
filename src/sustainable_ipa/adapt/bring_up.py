"""What bringing up each stage option costs on this machine (issue 29, item 1): measured as the live loop prepares a
configuration, and cached beside the profile table, keyed like it.

One replica of the option is started, loaded and warmed alone (`ServingPipeline.start`: its worker process, the
model sent to it, one batch through it) on the cores the adapter allocates: its seconds, its active joules (a meter
window, the idle baseline subtracted) and the share of those cores it left idle, which is what a configuration
serving beside it keeps (`switching.BringUp.serving_share`: 1 − the machine's CPU seconds meanwhile ÷ (seconds ×
cores)). Measured once per model and thread count, at the line's largest batch (the warm-up batch the live loop
runs), and recorded for each batch size of the line: process start and model load dominate, the batch does not.
"""

from __future__ import annotations

import csv
import itertools
from pathlib import Path
from typing import Callable

from omegaconf import DictConfig

from sustainable_ipa.adapt.switching import BringUp, BringUps
from sustainable_ipa.energy.estimate import vcpus_busy_s
from sustainable_ipa.metrics.energy import active_energy_j
from sustainable_ipa.pipeline.serving import ServingPipeline
from sustainable_ipa.pipeline.stage import StageSettings, StageSpec
from sustainable_ipa.search.space import NUMERICS

KEY = ("stage", "variant", "batch_size", "threads", "precision", "runtime")
COLUMNS = (*KEY, "prepare_s", "energy_j", "serving_share")


def bring_ups_path(profile_cache: Path) -> Path:
    """Beside the profile cache, for the same machine and hardware: `bring-ups-<its name>`."""
    return profile_cache.with_name(f"bring-ups-{profile_cache.name}")


def read_bring_ups(path: Path) -> dict:
    if not path.is_file():
        return {}
    with open(path, newline="") as f:
        return {(r["stage"], r["variant"], int(r["batch_size"]), int(r["threads"]), r["precision"], r["runtime"]):
                BringUp(float(r["prepare_s"]), float(r["energy_j"]), float(r["serving_share"]))
                for r in csv.DictReader(f)}


def save_bring_ups(path: Path, ups: BringUps) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(COLUMNS)
        for key, up in sorted(ups.items()):
            writer.writerow([*key, repr(up.prepare_s), repr(up.energy_j), repr(up.serving_share)])


def measure_bring_up(stage: str, model, batch_size: int, threads: int, items: list, cores: list[int],
                     energy) -> BringUp:
    """One replica of the option brought up alone on `cores` (`energy`: an `EnergySession`)."""
    pipeline = ServingPipeline([StageSpec(stage, model, StageSettings(batch_size, threads, 1))], cores)
    try:
        before = vcpus_busy_s(cores)  # the adapter's cores only: what serving would have had
        with energy.window("bring-up") as window:
            prepare_s = pipeline.start(items)
        busy_s = vcpus_busy_s(cores) - before
    finally:
        pipeline.close()
    m = window.measurement
    share = 1.0 - min(1.0, busy_s / (prepare_s * len(cores))) if prepare_s > 0 else 1.0
    # a cost, never a reward: a noisy idle baseline can put a short window's active energy below 0
    return BringUp(prepare_s, max(active_energy_j(m.total_j, energy.idle_power_w, m.duration_s), 0.0), share)


def missing_lines(space: dict, ups: BringUps) -> list[tuple]:
    """The lines of `space` (`SearchSpace.profile_grid()`) `ups` lacks: (stage, variant, threads, precision, runtime,
    batch sizes)."""
    lines = [(stage, v, t, precision, runtime, tuple(o["batch_size"])) for stage, o in space.items()
             for v, t, (precision, runtime) in itertools.product(o["variants"], o["threads"], o[NUMERICS])]
    return [line for line in lines if any((*line[:2], b, *line[2:5]) not in ups for b in line[5])]


def measured_bring_ups(cfg: DictConfig, space: dict, cores: list[int], say: Callable[[str], None]) -> dict:
    """Every option of `space` brought up on `cores` (`adapt.switch_cost=measured`): from the cache beside the
    profile table, the lines it lacks measured now with the models the live loop builds, and saved there."""
    from sustainable_ipa.data import load_dataset
    from sustainable_ipa.energy.session import EnergySession
    from sustainable_ipa.families import stage_families, worker_modules
    from sustainable_ipa.fingerprint import this_machine
    from sustainable_ipa.pipeline import replicas
    from sustainable_ipa.search.profiler import cache_path
    from sustainable_ipa.search.profiling_job import build_stage_model
    from sustainable_ipa.search.workload import pipeline_workload

    path = bring_ups_path(cache_path(cfg.profiling.cache_dir, cfg.hardware.name, this_machine()))
    ups = read_bring_ups(path)
    missing = missing_lines(space, ups)
    if not missing:
        return ups
    say(f"switch costs: bringing up {len(missing)} stage options, one replica each, to measure them (kept in {path})")
    families = stage_families(cfg.pipeline)
    replicas.prestart(worker_modules(families))  # as the live loop does: the workers' imports are not a switch's
    workload = pipeline_workload(families, load_dataset(cfg.dataset))
    build = build_stage_model(cfg, workload)
    with EnergySession(cfg.energy, cfg.hardware, lambda line: say(f"warning: {line}")) as energy:
        for stage, v, t, precision, runtime, batches in missing:
            up = measure_bring_up(stage, build(stage, v, precision, runtime), max(batches), t,
                                  workload.inputs[stage], cores, energy)
            ups.update({(stage, v, b, t, precision, runtime): up for b in batches})
            save_bring_ups(path, ups)  # line by line: an interrupted measurement resumes
    return ups
