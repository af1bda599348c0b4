"""Profile the configured space on the configured hardware (only what the cache lacks), recorded in MLflow."""

from __future__ import annotations

from contextlib import contextmanager
from pathlib import Path
from types import SimpleNamespace

import torch
from omegaconf import DictConfig, OmegaConf
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, TextColumn, TimeElapsedColumn

from sustainable_ipa.config import validate
from sustainable_ipa.data import load_dataset
from sustainable_ipa.energy.session import EnergySession
from sustainable_ipa.errors import UserError
from sustainable_ipa.families import stage_families, variant_model
from sustainable_ipa.metrics.energy import active_energy_j
from sustainable_ipa.progress import progress_bar
from sustainable_ipa.fingerprint import this_machine
from sustainable_ipa.search.profiler import QualityLimits, cache_path, missing_profiles, profile_space, read_cache
from sustainable_ipa.search.profiles import ProfileTable
from sustainable_ipa.search.space import SearchSpace, configured_space, skipped_line
from sustainable_ipa.search.workload import Workload, pipeline_workload
from sustainable_ipa.tracking.runs import common_tags, log, tracked_run
from sustainable_ipa.tracking.links import print_where_to_look
from sustainable_ipa.tracking.store import open_store


def build_stage_model(cfg: DictConfig, workload: Workload | None = None):
    """`build(stage, variant, precision, runtime)`: a stage's model as its family builds it, with random weights
    (profiles measure compute and energy, which weights do not change) handing on the items' references, as a
    random-weight run does. A stage on OpenVINO is exported as a run exports it (`models/runtimes.py`): into
    `export_dir`, int8 calibrated on the stage's inputs in the workload, or read from that cache."""
    families = stage_families(cfg.pipeline)

    def build(stage: str, variant: str, precision: str = "fp32", runtime: str = "torch"):
        if stage not in families:
            raise UserError(f"no model to profile for stage '{stage}'", "profile a pipeline whose stages have models")
        family = families[stage]
        torch.manual_seed(cfg.trial.seed)
        model = family.build(variant, variant_model(family, cfg.pipeline, variant), None, precision,
                             cfg.hardware.device, "reference")
        if runtime == "openvino":
            if workload is None:
                raise ValueError("a stage on OpenVINO is calibrated on the workload's inputs: pass the workload")
            model.use_openvino(Path(cfg.export_dir), workload.inputs[stage])
        return model

    return build


def profile_job(cfg: DictConfig, console: Console | None = None, space: SearchSpace | None = None) -> ProfileTable:
    from mlflow.tracking import MlflowClient

    console = console or Console(stderr=True)
    validate(cfg)
    space = space or configured_space(cfg, max_cores=None)
    if skipped_line(space):
        console.print(f"[dim]{escape(skipped_line(space))}[/]")
    dataset = load_dataset(cfg.dataset)
    machine = this_machine()
    path = cache_path(cfg.profiling.cache_dir, cfg.hardware.name, machine)
    cached = None if cfg.profiling.refresh else read_cache(path, machine, lambda line: warn(console, line))
    workload = pipeline_workload(stage_families(cfg.pipeline), dataset)
    expected_items = workload.items_per_request()
    if cached is not None and cached.items_per_request != expected_items:
        # the latency replay runs on the cached items per request (crops per frame): another dataset's would
        # compose silently wrong
        stage = next(s for s in {**expected_items, **cached.items_per_request}
                     if cached.items_per_request.get(s) != expected_items.get(s))
        raise UserError(f"the profile cache {path} was measured on a dataset with other {stage} items per request "
                        f"({' '.join(map(str, cached.items_per_request.get(stage, ())))}) than dataset "
                        f"'{cfg.dataset.name}' ({' '.join(map(str, expected_items.get(stage, ())))})",
                        "profile this dataset with profiling.refresh=true, or give it its own profiling.cache_dir")
    if int(cfg.profiling.repeats) < 20:
        console.print(f"[yellow]warning[/]: profiling.repeats={cfg.profiling.repeats}: with fewer than 20 timed batches "
                      "a profile's p99 is about its slowest batch, and composed p99 latencies are rough")
    todo = len(missing_profiles(space, cached))
    if todo == 0:
        console.print(f"profiles: all {len(cached.rows)} rows from the cache {path} (measured on {escape(machine.key)})")
        warn_flagged(cached, console)
        return cached
    experiment_id = open_store(cfg.tracking.uri, cfg.tracking.experiment, cfg.tracking.artifact_root)
    client = MlflowClient(tracking_uri=cfg.tracking.uri)
    # A window per batch, tens of ms each: CodeCarbon's cross-check would start and stop its own tracker inside
    # every one and bill that to the batch. The cross-check belongs to whole runs.
    energy_cfg = OmegaConf.merge(cfg.energy, {"cross_check_codecarbon": False})
    with EnergySession(energy_cfg, cfg.hardware, lambda line: warn(console, line)) as energy:
        @contextmanager
        def energy_window():
            holder = SimpleNamespace(active_j=float("nan"))
            with energy.window("profile") as window:
                yield holder
            m = window.measurement
            holder.active_j = active_energy_j(m.total_j, energy.idle_power_w, m.duration_s)

        tags = {**common_tags("profiling", "random"), **energy.tags(), "hardware": cfg.hardware.name,
                "fingerprint": machine.key}
        with tracked_run(client, experiment_id, f"profile-{cfg.hardware.name}", tags=tags) as run_id:
            log(client, run_id, params={"profiling.repeats": cfg.profiling.repeats, "profiles_measured": todo,
                                        "profiling.retries": cfg.profiling.retries})
            rounds = int(cfg.profiling.repeats) + 1  # a warm-up round, then the timed ones
            with progress_bar(console, TextColumn("profiling {task.fields[what]}"), BarColumn(),
                              MofNCompleteColumn(), TextColumn("batches"), TimeElapsedColumn()) as progress:
                task = progress.add_task("", total=todo * rounds, what="")

                def done(key):
                    stage, variant, batch_size, threads, precision, runtime = key
                    progress.update(task, advance=1,
                                    what=f"{stage} {variant} b{batch_size} t{threads} {precision}/{runtime}")

                table = profile_space(space, workload, build_stage_model(cfg, workload), int(cfg.profiling.repeats),
                                      energy_window, energy.source_tag, cfg.hardware.name, cached, done,
                                      quality_limits(cfg.profiling), int(cfg.profiling.retries),
                                      on_retry=lambda n: progress.update(task, total=progress.tasks[0].total + n),
                                      fingerprint=machine.key)
            table.save(path)
            client.log_text(run_id, table.to_csv(), "profiles.csv")
            flagged = table.flagged()
            log(client, run_id, metrics={"profiles_flagged": len(flagged)},
                tags={"profiles_quality": "flagged" if flagged else "ok"})
    console.print(f"profiles: {todo} measured, {len(table.rows)} in {path} (this machine: {escape(machine.key)})")
    print_where_to_look(console, cfg.tracking.uri, cfg.tracking.experiment, experiment_id, run_id)
    warn_flagged(table, console)
    return table


def quality_limits(profiling: DictConfig) -> QualityLimits:
    return QualityLimits(float(profiling.max_others_cpu_share), float(profiling.max_steal_share),
                         float(profiling.max_p90_over_p50))


def warn(console: Console, line: str) -> None:
    console.print(f"[yellow]warning[/]: {escape(line)}")  # plain text: a fingerprint's [flags] are no markup


def warn_flagged(table: ProfileTable, console: Console) -> None:
    """One line naming the profiles that were measured under contention or too noisy: they are used, never silently."""
    flagged = table.flagged()
    if flagged:
        names = ", ".join(f"{p.label} ({p.quality}: others "
                          f"{p.others_cpu_share:.0%}, steal {p.steal_share:.0%}, p90/p50 "
                          f"{p.latency_p90_s / p.latency_p50_s:.2f})" for p in flagged[:5])
        more = f" and {len(flagged) - 5} more" if len(flagged) > 5 else ""
        console.print(f"[yellow]warning[/]: {len(flagged)} of {len(table.rows)} profiles were measured on a busy "
                      f"or noisy machine: {names}{more}. Their predictions are less trustworthy; rerun "
                      "`python src/profiling.py profiling.refresh=true` on a quiet machine")
