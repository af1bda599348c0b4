"""Profile the configured space on the configured hardware (only what the cache lacks), recorded in MLflow."""

from __future__ import annotations

import time
from contextlib import contextmanager
from pathlib import Path
from types import SimpleNamespace

import psutil
import torch
from omegaconf import DictConfig, OmegaConf
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, TextColumn, TimeElapsedColumn

from sustainable_ipa.config import validate
from sustainable_ipa.data import load_dataset
from sustainable_ipa.db_driver import without_password
from sustainable_ipa.energy.session import EnergySession
from sustainable_ipa.errors import UserError
from sustainable_ipa.families import stage_families, variant_model
from sustainable_ipa.metrics.energy import active_by_curve_j, active_energy_j
from sustainable_ipa.progress import progress_bar
from sustainable_ipa.fingerprint import this_machine
from sustainable_ipa.search.profiler import (QualityLimits, Reduction, cache_path, import_profiles, missing_profiles,
                                             plan_profiles, profile_space, read_cache)
from sustainable_ipa.search.profiling_plan import (PlanClock, memory_needed, minutes, narrow_to_budget,
                                                   probe_variants)
from sustainable_ipa.search.profiles import ProfileTable
from sustainable_ipa.search.space import SearchSpace, configured_space, skipped_line
from sustainable_ipa.search.workload import Workload, pipeline_workload
from sustainable_ipa.tracking.runs import common_tags, log, tracked_run
from sustainable_ipa.tracking.links import print_where_to_look
from sustainable_ipa.tracking.store import open_store


def build_stage_model(cfg: DictConfig, workload: Workload | None = None, say=None):
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
            made = model.use_openvino(Path(cfg.export_dir), workload.inputs[stage])
            if say and not made.cached:
                say(made.line(stage))
        return model

    return build


def profile_job(cfg: DictConfig, console: Console | None = None, space: SearchSpace | None = None) -> ProfileTable:
    """The profiles of `space` (search.space by default) on this machine: those the cache lacks timed or fitted, after
    a plan that says what that takes. Under `profiling.budget_s` the plan may narrow search.space (in `cfg`, so that
    the caller's search or adapter reads the narrowed space again) and says what it left out."""
    from mlflow.tracking import MlflowClient

    console = console or Console(stderr=True)
    validate(cfg)
    p = cfg.profiling
    space = space or configured_space(cfg, max_cores=None)
    machine, path, cached, workload = profiling_inputs(cfg, console, space)
    reduction = reduction_of(p)
    plan = plan_profiles(space, cached, reduction)
    if not plan.timed and not plan.fitted:
        console.print(f"profiles: all {len(space_keys(space))} of the space from the cache {path} (measured on "
                      f"{escape(machine.key)})")
        warn_flagged(cached, console)
        export(cached, p, console)
        return cached
    build = build_stage_model(cfg, workload, say=lambda line: console.print(escape(line)))
    space, plan, clock = plan_within(cfg, console, space, cached, reduction, build, workload)
    experiment_id = open_store(cfg.tracking.uri, cfg.tracking.experiment, cfg.tracking.artifact_root)
    client = MlflowClient(tracking_uri=cfg.tracking.uri)
    with profiling_session(cfg, console) as energy:
        with tracked_run(client, experiment_id, f"profile-{cfg.hardware.name}",
                         tags=profiling_tags(cfg, energy, machine.key)) as run_id:
            log(client, run_id, params={**profiling_params(p), "profiles_timed": len(plan.timed),
                                        "profiles_fitted": len(plan.fitted), "profiles_cached": plan.cached},
                metrics={"plan_estimate_s": clock.left_s()})
            began = time.perf_counter()
            table = timed_with_progress(cfg, console, space, workload, build, energy_window_of(energy),
                                        energy.source_tag, cached, reduction, clock, machine.key)
            table.save(path)
            client.log_text(run_id, table.to_csv(), "profiles.csv")
            flagged = table.flagged()
            residuals = [r.fit_residual for r in table.fitted()]
            log(client, run_id, metrics={"profiles_flagged": len(flagged), "profiling_wall_s":
                                         time.perf_counter() - began, "fit_residual_max": max(residuals, default=0.0)},
                tags={"profiles_quality": "flagged" if flagged else "ok"})
    console.print(f"profiles: {len(plan.timed)} timed and {len(plan.fitted)} fitted in "
                  f"{minutes(time.perf_counter() - began)}, {len(table.rows)} in {path} (this machine: "
                  f"{escape(machine.key)})")
    print_where_to_look(console, cfg.tracking.uri, cfg.tracking.experiment, experiment_id, run_id)
    warn_flagged(table, console)
    export(table, p, console)
    return table


def profiling_inputs(cfg: DictConfig, console: Console, space: SearchSpace):
    """(this machine, its cache file, the cached table or None, the workload): the profiles of another machine
    imported first (`profiling.import_from`), the cache checked against the dataset's items per request."""
    p = cfg.profiling
    if skipped_line(space):
        console.print(f"[dim]{escape(skipped_line(space))}[/]")
    machine = this_machine()
    path = cache_path(p.cache_dir, cfg.hardware.name, machine)
    if p.import_from:
        added = import_profiles(str(p.import_from), machine, path, cfg.hardware.name)
        console.print(f"profiles: {added} imported from {escape(without_password(str(p.import_from)))} into {path}")
    cached = None if p.refresh else read_cache(path, machine, lambda line: warn(console, line))
    workload = pipeline_workload(stage_families(cfg.pipeline), load_dataset(cfg.dataset))
    check_items(cached, workload, path, cfg.dataset.name)
    return machine, path, cached, workload


def profiling_session(cfg: DictConfig, console: Console) -> EnergySession:
    """The energy session profiles are measured in. A window per batch, tens of ms each: CodeCarbon's cross-check
    would start and stop its own tracker inside every one and bill that to the batch; it belongs to whole runs."""
    energy_cfg = OmegaConf.merge(cfg.energy, {"compare": "none"})
    return EnergySession(energy_cfg, cfg.hardware, lambda line: warn(console, line))


def energy_window_of(energy: EnergySession):
    """`profile_space`'s energy window: the idle-subtracted joules of one batch, as `active_j` once it exits, and
    with the estimate the same under each other curve of its power model's interval, as `active_by_curve_j`."""
    @contextmanager
    def energy_window():
        holder = SimpleNamespace(active_j=float("nan"), active_by_curve_j=())
        with energy.window("profile") as window:
            yield holder
        m = window.measurement
        holder.active_j = active_energy_j(m.total_j, energy.idle_power_w, m.duration_s)
        holder.active_by_curve_j = active_by_curve_j(m, energy.idle_power_w)

    return energy_window


def profiling_tags(cfg: DictConfig, energy: EnergySession, fingerprint: str) -> dict:
    """The profiling run's tags: what it is, its energy source, the hardware and the machine measured."""
    return {**common_tags("profiling", "random"), **energy.tags(), "hardware": cfg.hardware.name,
            "fingerprint": fingerprint}


def profiling_params(p: DictConfig) -> dict:
    return {f"profiling.{key}": p[key] for key in ("repeats", "retries", "tolerance", "min_repeats",
                                                    "timed_batch_sizes", "batch_fit", "lazy")}


def plan_within(cfg: DictConfig, console: Console, space: SearchSpace, cached, reduction: Reduction, build,
                workload: Workload):
    """The plan, its estimate from a probe of every variant, checked against this machine's memory and, under
    `profiling.budget_s`, narrowed to fit; each said in a line before any profile is timed."""
    p = cfg.profiling
    plan = plan_profiles(space, cached, reduction)
    variants = list(dict.fromkeys((stage, variant) for stage, variant, *_ in plan.groups))
    console.print(f"profiling plan: {len(space_keys(space))} profiles in the space, {plan.cached} cached; "
                  f"{len(plan.timed)} to time on {len(plan.groups)} models ({plan.exports} OpenVINO exports), "
                  f"{len(plan.fitted)} fitted from their timed batch sizes; at most "
                  f"{len(plan.timed) * (int(p.repeats) + 1)} batches. Probing {len(variants)} variants for an "
                  "estimate (a build and one batch each)")
    with console.status("probing"):
        probes = probe_variants(variants, build, workload.inputs)
    repeats = int(p.repeats)

    def estimate_s(candidate) -> float:
        try:
            narrowed = SearchSpace.from_config(candidate, cfg.pipeline, space.max_cores, this_machine(),
                                               bool(cfg.hardware.allow_emulated))
        except UserError:  # nothing of a stage left that this machine runs, or nothing fits the cores
            return float("inf")
        return PlanClock(plan_profiles(narrowed, cached, reduction), probes, repeats).left_s()

    if p.budget_s and estimate_s(cfg.search.space) > float(p.budget_s):
        before = estimate_s(cfg.search.space)
        left_out = narrow_to_budget(cfg.search.space, float(p.budget_s), estimate_s)
        space = SearchSpace.from_config(cfg.search.space, cfg.pipeline, space.max_cores, this_machine(),
                                        bool(cfg.hardware.allow_emulated))
        plan = plan_profiles(space, cached, reduction)
        console.print(f"profiling.budget_s={p.budget_s}: the whole space would take up to {minutes(before)}; the plan "
                      f"keeps {escape(' '.join(left_out)) or 'all of it (nothing left to leave out)'}")
    clock = PlanClock(plan, probes, repeats)
    need, what = memory_needed(plan, probes)
    available = psutil.virtual_memory().available
    if need > available:
        raise UserError(f"profiling {what} needs about {need / 2**30:.1f} GiB and this machine has "
                        f"{available / 2**30:.1f} GiB available",
                        "leave it out of search.space (or set profiling.budget_s), or profile on a larger machine")
    console.print(f"estimate: about {minutes(clock.left_s())} ({len(plan.timed)} profiles, {clock.batches_left()} "
                  f"batches at most, {len(plan.groups)} builds; from the probe's batches of one item, refined as "
                  f"profiles are timed); memory: about {need / 2**30:.1f} GiB at most ({what}) of "
                  f"{available / 2**30:.1f} GiB available")
    return space, plan, clock


def timed_with_progress(cfg, console, space, workload, build, energy_window, source, cached, reduction, clock,
                        fingerprint) -> ProfileTable:
    """`profile_space` under a progress bar that counts batches and shows the time the plan has left."""
    p = cfg.profiling
    with progress_bar(console, TextColumn("profiling {task.fields[what]}"), BarColumn(), MofNCompleteColumn(),
                      TextColumn("batches, about {task.fields[left]} left"), TimeElapsedColumn()) as progress:
        task = progress.add_task("", total=clock.batches_left(), what="", left=minutes(clock.left_s()))

        def batch_done(key, seconds: float, timed: bool):
            clock.timed(key, seconds, timed)
            stage, variant, batch_size, threads, precision, runtime = key
            progress.update(task, advance=1, left=minutes(clock.left_s()),
                            what=f"{stage} {variant} b{batch_size} t{threads} {precision}/{runtime}")

        def stopped(key, _unused_rounds: int):
            clock.stopped(key)
            progress.update(task, total=progress.tasks[0].completed + clock.batches_left())

        return profile_space(space, workload, build, int(p.repeats), energy_window, source, cfg.hardware.name,
                             cached, batch_done, quality_limits(p), int(p.retries),
                             on_retry=lambda n: progress.update(task, total=progress.tasks[0].total + n),
                             fingerprint=fingerprint, reduction=reduction, on_stop=stopped, on_model=clock.built)


def check_items(cached: ProfileTable | None, workload: Workload, path: Path, dataset: str) -> None:
    """The cache must have been measured on as many items per request at each stage as this dataset brings: the
    latency replay runs on the cached items per request (crops per frame), and another dataset's would compose
    silently wrong."""
    expected_items = workload.items_per_request()
    if cached is None or cached.items_per_request == expected_items:
        return
    stage = next(s for s in {**expected_items, **cached.items_per_request}
                 if cached.items_per_request.get(s) != expected_items.get(s))
    raise UserError(f"the profile cache {path} was measured on a dataset with other {stage} items per request "
                    f"({' '.join(map(str, cached.items_per_request.get(stage, ())))}) than dataset "
                    f"'{dataset}' ({' '.join(map(str, expected_items.get(stage, ())))})",
                    "profile this dataset with profiling.refresh=true, or give it its own profiling.cache_dir")


FIT_DEGREE = {"linear": 1, "quadratic": 2}


def reduction_of(profiling: DictConfig) -> Reduction:
    return Reduction(int(profiling.timed_batch_sizes), FIT_DEGREE[profiling.batch_fit], float(profiling.tolerance),
                     int(profiling.min_repeats))


def space_keys(space: SearchSpace) -> list:
    return missing_profiles(space, None)


def export(table: ProfileTable, profiling: DictConfig, console: Console) -> None:
    """`profiling.export_to`: the table written there too, for another machine of this fingerprint to import."""
    if profiling.export_to:
        table.save(Path(str(profiling.export_to)))
        console.print(f"profiles: {len(table.rows)} exported to {escape(str(profiling.export_to))} (import them on a "
                      "machine of the same fingerprint with profiling.import_from=...)")


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
