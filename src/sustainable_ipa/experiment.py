"""One job: an adaptation run `trial.repetitions` times on a dataset, recorded in MLflow."""

from __future__ import annotations

import json
import os
import tempfile
from contextlib import ExitStack
from dataclasses import asdict, dataclass, field
from itertools import cycle, islice
from pathlib import Path

import numpy as np
import torch
from omegaconf import DictConfig, OmegaConf
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, TextColumn, TimeElapsedColumn
from rich.table import Table

from sustainable_ipa.config import adaptation_cores, check_run_fits, validate
from sustainable_ipa.data import load_dataset
from sustainable_ipa.db_driver import mask_passwords
from sustainable_ipa.energy.session import EnergySession, estimate_line
from sustainable_ipa.energy.timeseries import load_csv, plot_power, power_csv
from sustainable_ipa.errors import UserError
from sustainable_ipa.fingerprint import this_machine
from sustainable_ipa.families import stage_families, variant_model, worker_modules
from sustainable_ipa.metrics.accuracy import option_accuracies, option_accuracy_pct, pipeline_accuracy
from sustainable_ipa.metrics.cost import cost_cores
from sustainable_ipa.metrics.energy import codecarbon_metrics, window_energy_metrics
from sustainable_ipa.metrics.record import TrialContext, aggregate, outputs_json, requests_csv, trial_metrics
from sustainable_ipa.metrics.stats import interval_text
from sustainable_ipa.models.precision import emulated_stages
from sustainable_ipa.models.runtimes import fidelity_metrics, use_runtimes
from sustainable_ipa.models.weights import RANDOM, plan_weights
from sustainable_ipa.pipeline import replicas
from sustainable_ipa.pipeline.load import arrival_offsets_s, load_tags
from sustainable_ipa.pipeline.runner import StageRunner, StageSettings, StageSpec
from sustainable_ipa.progress import progress_bar
from sustainable_ipa.search.workload import pipeline_workload
from sustainable_ipa.tracking.links import follow_line, print_where_to_look, tag_for_the_ui
from sustainable_ipa.tracking.runs import common_tags, log, tracked_run
from sustainable_ipa.tracking.store import open_store

SUMMARY = ["accuracy_reference", "accuracy_measured", "latency_p50_s", "latency_p99_s", "throughput_rps",
           "sla_attainment", "cost_cores", "cost_usd_per_1k", "energy_j_per_request", "power_w_mean", "idle_power_w",
           "emissions_g_per_1k"]


@dataclass
class JobOutcome:
    run_id: str
    metrics: dict[str, float]  # the job's record: one trial's metrics, or means and CIs over repetitions
    repetition_run_ids: list[str] = field(default_factory=list)


def flatten(cfg: DictConfig) -> dict[str, object]:
    flat: dict[str, object] = {}

    def walk(node, prefix: str) -> None:
        if isinstance(node, dict):
            for k, v in node.items():
                walk(v, f"{prefix}{k}.")
        else:
            flat[prefix[:-1]] = node if not isinstance(node, list) else json.dumps(node)

    container = OmegaConf.to_container(cfg, resolve=True)
    for unrelated in ("search", "profiling", "report", "adapt"):  # settings of other entry points, not of this run
        container.pop(unrelated, None)
    # the whole catalogue (hundreds of hyper-parameters) is in config.yaml; the run's params name its own choices
    container["pipeline"].pop("variants", None)
    walk(container, "")
    return flat


def build_models(cfg: DictConfig, families: dict, plan) -> dict:
    """Each stage's variant in its precision, with the plan's weights (random init: the same for the same seed);
    random weights hand on the items' references, pretrained ones what their models make."""
    torch.manual_seed(cfg.trial.seed)
    handoff = "reference" if plan.kind == RANDOM else "model"
    return {stage: family.build(cfg.adaptation[stage].variant,
                                variant_model(family, cfg.pipeline, cfg.adaptation[stage].variant),
                                plan.files[stage], cfg.adaptation[stage].precision, cfg.hardware.device, handoff)
            for stage, family in families.items()}


def weights_wanted(cfg: DictConfig, families: dict) -> dict:
    """Each stage's pretrained weights source, for `plan_weights`."""
    return {stage: family.weights_source(cfg.adaptation[stage].variant,
                                         variant_model(family, cfg.pipeline, cfg.adaptation[stage].variant))
            for stage, family in families.items()}


def stage_settings(cfg: DictConfig, stage: str) -> StageSettings:
    s = cfg.adaptation[stage]
    return StageSettings(s.batch_size, s.threads, s.replicas)


@dataclass
class Prepared:
    """Everything a job needs before it records anything."""

    runner: StageRunner
    ctx: TrialContext
    items: list  # the dataset's items, one per request (cycled)
    plan: object
    measured: bool  # pretrained weights: accuracy is measured, not only referenced
    params: dict[str, object]
    fidelity: dict[str, float]  # stages below fp32 against fp32, same weights and inputs
    emulated: list[str]  # stages whose precision this CPU emulates (hardware.allow_emulated)
    export_tags: dict[str, str]  # exported models: built or cached, where
    input_kind: str  # what a request brings the first stage: frame, speech, text (the report's pipeline type)


def measured_accuracies(families: dict, models: dict, inputs: dict[str, list], dataset) -> dict[str, float]:
    """Each stage's accuracy on its reference inputs (`<stage>_<metric>`, fractions), and the pipeline's
    (`accuracy_measured`, their product over the stages' primary metrics) when every stage could be scored."""
    measured: dict[str, float] = {}
    primary = []
    for stage, family in families.items():
        scores = family.accuracy(models[stage], inputs[stage], dataset)
        measured.update({f"{stage}_{k}": v for k, v in scores.items() if np.isfinite(v)})
        primary.append(scores.get(family.metric, float("nan")))
    if primary and all(np.isfinite(primary)):
        measured["accuracy_measured"] = float(np.prod(primary))
    return measured


def prepare(cfg: DictConfig, console: Console) -> Prepared:
    """Validate, load the dataset, resolve the weights, build the models. Every bad input fails here, before the
    store gets its first run."""
    validate(cfg)
    check_run_fits(cfg)
    families = stage_families(cfg.pipeline)
    stages = list(families)
    emulated = emulated_stages({s: cfg.adaptation[s].precision for s in stages}, this_machine(),
                               cfg.hardware.allow_emulated)
    dataset = load_dataset(cfg.dataset)
    pipeline_workload(families, dataset)  # the dataset's items are what the first stage takes, before any build
    # the stage workers' forkserver imports torch and the families' modules while the models are built
    replicas.prestart(worker_modules(families))
    adaptation = cfg.adaptation
    plan = plan_weights(cfg.weights, cfg.weights_dir, weights_wanted(cfg, families))
    say_what_runs(console, cfg, plan, emulated)
    with console.status(f"building {' + '.join(adaptation[s].variant for s in stages)}"):
        models = build_models(cfg, families, plan)
    measured = plan.kind != RANDOM
    inputs = pipeline_workload(families, dataset, models).inputs  # each stage's own inputs, by the references
    export_metrics, export_tags = use_runtimes(cfg, models, inputs, console)
    with console.status("fidelity of the low-precision stages against fp32"):
        fidelity = {**fidelity_metrics(models, inputs), **export_metrics}
    for before, stage in zip(stages, stages[1:]):
        if not inputs[stage]:
            console.print(f"[yellow]note[/]: the dataset gives stage '{stage}' no items (stage '{before}' hands "
                          "none on its items' references): it will run only on what the models hand on")
    runner = StageRunner([StageSpec(stage, models[stage], stage_settings(cfg, stage)) for stage in stages])
    # the catalogue's published figure of each stage in its precision (fp32 reference + published change), as the
    # study composes it
    accuracies = option_accuracies(cfg.pipeline.variants)
    reference = [option_accuracy_pct(accuracies, s, adaptation[s].variant, adaptation[s].precision) for s in stages]
    with console.status("accuracy of each stage on its reference inputs"):
        accuracy = measured_accuracies(families, models, inputs, dataset) if measured else {}
    ctx = TrialContext(
        sla_s=cfg.trial.sla_s, cost_cores=cost_cores([(adaptation[s].threads, adaptation[s].replicas) for s in stages]),
        price_usd_per_core_hour=cfg.hardware.price_usd_per_core_hour,
        accuracy_reference=pipeline_accuracy(reference), accuracy_measured=accuracy)
    return Prepared(runner, ctx, list(dataset.items), plan, measured, run_params(cfg, models), fidelity, emulated,
                    export_tags, families[stages[0]].consumes)


def say_what_runs(console: Console, cfg: DictConfig, plan, emulated: list[str]) -> None:
    """The warnings a run starts with: random weights, an emulated precision, stages sharing cores."""
    if plan.kind == RANDOM and str(cfg.weights) != RANDOM:
        console.print(f"[bold yellow]WARNING: RANDOM WEIGHTS[/] — {plan.reason}. Latency, throughput and energy are "
                      "real; accuracy is the reference accuracy only (tag weights_kind=random). Put the files in "
                      f"{cfg.weights_dir} for measured accuracy, or pass weights=random to silence this.")
    if emulated:
        console.print(f"[bold yellow]WARNING: EMULATED PRECISION[/] — {', '.join(emulated)}: this CPU lacks the "
                      "native instructions, so latency and energy measure an emulation (tag emulated=true)")
    usable = len(os.sched_getaffinity(0))
    if adaptation_cores(cfg) > usable:
        console.print(f"[yellow]note[/]: pipeline '{cfg.pipeline.name}' has {len(cfg.pipeline.stages)} stages and "
                      f"this process may use {usable} cores: its stage workers share cores (tag cores_shared), so "
                      "latency includes waiting for a core")


def run_params(cfg: DictConfig, models: dict) -> dict[str, object]:
    """The run's settings as params, each stage's static facts (`<stage>.params`, …) and where its reference accuracy
    was published."""
    params = flatten(cfg)
    for stage, model in models.items():
        entry = cfg.pipeline.variants[stage][cfg.adaptation[stage].variant]
        params.update({f"{stage}.{key}": value for key, value in model.describe().items()})
        params.update({f"{stage}.reference_accuracy": entry.reference_accuracy,
                       f"{stage}.accuracy_source": entry.source})
    return params


def run_job(cfg: DictConfig, outer_run_id: str | None = None, nest_under_outer: bool = False,
            sweep_id: str | None = None, console: Console | None = None) -> JobOutcome:
    """Run the repetitions and record them. `outer_run_id`: a run made by `mlflow run`, adopted as this job's
    run, or its parent when `nest_under_outer` (one job of a multirun, or a search trial)."""
    from mlflow.tracking import MlflowClient

    console = console or Console(stderr=True)
    job = prepare(cfg, console)
    experiment_id = open_store(cfg.tracking.uri, cfg.tracking.experiment, cfg.tracking.artifact_root)
    client = MlflowClient(tracking_uri=cfg.tracking.uri)
    if outer_run_id:  # children live in the experiment of the run `mlflow run` made
        experiment_id = outer_experiment(cfg, client, outer_run_id, console)
    tags = run_tags(cfg, job, sweep_id)
    name = f"{cfg.adaptation.name}-{cfg.hardware.name}"
    adopt = outer_run_id if outer_run_id and not nest_under_outer else None
    parent = outer_run_id if outer_run_id and nest_under_outer else None
    with ExitStack() as stack:
        stack.callback(job.runner.close)  # the stage workers end with the job, however it ends
        energy = start_measuring(cfg, job, stack, console)
        tags.update(energy.tags())
        note = f" — {energy.meter.fallback_reason}, so energy is estimated: {estimate_line(energy.meter.tags)}" \
            if energy.meter.fallback_reason else ""
        console.print(f"energy: {energy.source_tag}{note}; idle {energy.idle_power_w:.1f} W ({tags['idle_baseline']})")
        with tracked_run(client, experiment_id, name, parent_run_id=parent, existing_run_id=adopt,
                         tags=tags) as job_run:
            log(client, job_run, params=job.params, metrics=job.fidelity)
            console.print(follow_line(cfg.tracking.uri, experiment_id, job_run), soft_wrap=True,
                          highlight=False, markup=False)  # whole: a URL cut by wrapping cannot be opened
            client.log_text(job_run, mask_passwords(OmegaConf.to_yaml(cfg, resolve=True)), "config.yaml")
            record, child_ids = run_repetitions(cfg, job, client, experiment_id, job_run, name, tags, energy, console)
    console.print(summary_table(name, record, cfg.trial.repetitions, job.plan.kind))
    print_where_to_look(console, cfg.tracking.uri, client.get_experiment(experiment_id).name, experiment_id, job_run)
    return JobOutcome(job_run, record, child_ids)


def outer_experiment(cfg: DictConfig, client, outer_run_id: str, console: Console) -> str:
    """The experiment of the run `mlflow run` made, which this job's runs join; a note when it is not the
    configured one."""
    try:
        experiment_id = client.get_run(outer_run_id).info.experiment_id
    except Exception:
        raise UserError(f"MLFLOW_RUN_ID {outer_run_id} is not a run in tracking store {cfg.tracking.uri}",
                        "unset MLFLOW_RUN_ID, or set MLFLOW_TRACKING_URI to the store that holds it") from None
    tag_for_the_ui(client, experiment_id)  # an experiment `mlflow run` made (its Default) opens as ours do
    chosen = client.get_experiment(experiment_id).name
    if chosen != cfg.tracking.experiment:  # `mlflow run` picks the experiment before this code runs
        console.print(f"[yellow]note[/]: `mlflow run` made this run in experiment '{chosen}', not "
                      f"'{cfg.tracking.experiment}': pass --experiment-name {cfg.tracking.experiment} to mlflow "
                      f"run (or export MLFLOW_EXPERIMENT_NAME={cfg.tracking.experiment}) to record it there",
                      soft_wrap=True)
    return experiment_id


def start_measuring(cfg: DictConfig, job: Prepared, stack: ExitStack, console: Console) -> EnergySession:
    """The stage workers started, then the energy session (open until `stack` closes): the idle baseline is
    taken with the workers loaded and waiting."""
    with console.status("starting the stage workers"):
        job.runner.start()  # before the idle baseline: the workers load their stage, then wait idle
    with console.status("energy: taking the machine lock and the idle baseline"):
        return stack.enter_context(EnergySession(cfg.energy, cfg.hardware,
                                                 lambda line: console.print(f"[yellow]warning[/]: {line}")))


def run_repetitions(cfg: DictConfig, job: Prepared, client, experiment_id: str, job_run: str, name: str,
                    tags: dict[str, str], energy: EnergySession,
                    console: Console) -> tuple[dict[str, float], list[str]]:
    """`trial.repetitions` trials with a progress bar: one alone is recorded in the job's run, several each in a
    child run and their means and intervals in the job's. Returns (the job's record, the child runs)."""
    repetitions = cfg.trial.repetitions
    per_repetition: list[dict[str, float]] = []
    child_ids: list[str] = []
    with progress_bar(console, TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                      TimeElapsedColumn()) as progress:
        for rep in range(repetitions):
            task = progress.add_task(f"{name} rep {rep + 1}/{repetitions}", total=cfg.trial.requests)
            advance = lambda _, task=task: progress.advance(task)  # noqa: E731
            if repetitions == 1:
                per_repetition.append(_repetition(cfg, job, client, job_run, rep, energy, advance))
                continue
            with tracked_run(client, experiment_id, f"{name}-rep{rep}", parent_run_id=job_run, tags=tags) as rep_run:
                log(client, rep_run, params={**job.params, "repetition": rep})
                per_repetition.append(_repetition(cfg, job, client, rep_run, rep, energy, advance))
                child_ids.append(rep_run)
    record = per_repetition[0] if repetitions == 1 else aggregate(per_repetition)
    if repetitions > 1:
        log(client, job_run, metrics=record)
    return record, child_ids


def run_tags(cfg: DictConfig, job: Prepared, sweep_id: str | None) -> dict[str, str]:
    """What a job's runs are tagged with: the adaptation, pipeline and weights, and whatever makes their figures
    differ from a plain measurement (emulated precision, shared cores, exports)."""
    tags = {**common_tags(cfg.adaptation.name, job.plan.kind), **load_tags(cfg.trial.load),
            "pipeline": cfg.pipeline.name, "pipeline_input": job.input_kind,
            # random weights: stages hand on their items' references and generate reference-length outputs
            "handoff": "reference" if job.plan.kind == RANDOM else "model", **job.export_tags}
    if sweep_id:
        tags["sweep_id"] = sweep_id
    if job.plan.reason:
        tags["weights_note"] = job.plan.reason
    if job.emulated:
        tags.update({"emulated": "true", "emulated_stages": ",".join(job.emulated)})
    usable = len(os.sched_getaffinity(0))
    if adaptation_cores(cfg) > usable:
        tags["cores_shared"] = f"{adaptation_cores(cfg)} stage cores on {usable}"
    return tags


def _repetition(cfg, job: Prepared, client, run_id: str, rep: int, energy: EnergySession,
                on_done) -> dict[str, float]:
    """One trial: warm-up, then the measured requests inside an energy window; its record logged to `run_id`."""
    runner, ctx = job.runner, job.ctx
    if cfg.trial.warmup:
        warmup = list(islice(cycle(job.items), cfg.trial.warmup))
        runner.run(warmup, np.zeros(len(warmup)))
    items = list(islice(cycle(job.items), cfg.trial.requests))  # requests cycle over the dataset's items
    offsets = arrival_offsets_s(len(items), cfg.trial.load, cfg.trial.rate_rps, cfg.trial.seed + rep)
    with energy.window(f"rep{rep}") as window:  # the measured requests only, not the warm-up
        result = runner.run(items, offsets, on_request_done=on_done)
    metrics = trial_metrics(result, ctx)
    m = window.measurement
    metrics.update(window_energy_metrics(m, energy.idle_power_w, len(result.requests), metrics["latency_mean_s"],
                                         result.stage_cpu_s(), energy.carbon_intensity_g_per_kwh, energy.pue))
    if window.cross_check is not None:
        metrics.update(codecarbon_metrics(window.cross_check, m))
    log(client, run_id, metrics=metrics)
    client.log_text(run_id, requests_csv(result), "requests.csv")
    client.log_dict(run_id, outputs_json(result), "outputs.json")
    # what each replica ran with, measured in its worker (cores, torch threads, busy OS threads, CPU seconds)
    client.log_dict(run_id, [asdict(r) for r in result.replicas], "replicas.json")
    client.log_text(run_id, power_csv(window.samples, window.start_s), "power.csv")
    if window.load_samples:
        client.log_text(run_id, load_csv(window.load_samples, window.start_s), "load.csv")
    with tempfile.TemporaryDirectory() as folder:
        path = plot_power(window.samples, window.start_s, Path(folder) / "power.png",
                          f"{cfg.adaptation.name} rep {rep}: {energy.source_tag}", energy.idle_power_w)
        client.log_artifact(run_id, str(path))
    return metrics


def summary_table(name: str, record: dict[str, float], repetitions: int, weights_kind: str) -> Table:
    suffix = "_mean" if repetitions > 1 else ""
    table = Table(title=f"{name} — {repetitions} repetition(s), weights {weights_kind}")
    table.add_column("metric", no_wrap=True)  # short headers below: the whole table fits 80 columns
    table.add_column("mean" if repetitions > 1 else "value", justify="right")
    if repetitions > 1:
        table.add_column("95 % CI of mean", justify="right")
    modelled = f"energy_j_per_request_low{suffix}" in record
    if modelled:  # the estimate: the range its reference data give, beside the statistical interval
        table.add_column("model range", justify="right")
    for metric in SUMMARY:
        value = record.get(metric + suffix)
        if value is None:
            continue
        interval = [interval_text(record.get(f"{metric}_ci95_low"), record.get(f"{metric}_ci95_high"),
                                  repetitions)] if repetitions > 1 else []
        low, high = record.get(f"{metric}_low{suffix}"), record.get(f"{metric}_high{suffix}")
        model_range = [f"{low:.4g} … {high:.4g}" if low is not None and high is not None else ""] if modelled else []
        table.add_row(metric, f"{value:.4g}", *interval, *model_range)
    if modelled:
        table.caption = "energy estimated from the load by a power model (model range: its reference data), not measured"
    return table
