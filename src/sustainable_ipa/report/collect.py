"""Trials read back from the tracking store: one row per repetition (or per study trial), with its labels."""

from __future__ import annotations

import json
from dataclasses import dataclass

import pandas as pd
from mlflow.tracking import MlflowClient

from sustainable_ipa.errors import UserError
from sustainable_ipa.fingerprint import machine_id
from sustainable_ipa.search.space import numerics_label

NOT_JOBS = {"profiling", "adapt", "adapt-live", "report"}  # runs of the other entry points carry these `adaptation` tags


@dataclass(frozen=True)
class Selection:
    experiment: str
    sweep_id: str | None = None  # a multirun's tag
    study_name: str | None = None  # an Optuna study's trials


def trials(client: MlflowClient, selection: Selection) -> pd.DataFrame:
    """Columns: run_id, adaptation, pipeline, hardware, machine, evaluator, energy_source, load, weights_kind, numerics,
    then every metric.

    Jobs with repetitions contribute their child runs (one per trial); single-repetition jobs their own run.
    Report runs and study parents are left out. `evaluator`: `run` (measured) or `profile` (composed from stage
    profiles); jobs of src/main.py are measured runs, a study trial without the tag (older stores) is `unknown`.
    `load`: the arrival process (`poisson` or `offline`), from the tag or the logged `trial.load`.
    `machine`: the fingerprint of the machine the figures were measured on (a composed trial's: its profiles'), and
    `hardware` is the hardware config's name on that machine's short id, so that every comparison below stays
    within one machine: one config name runs on other CPUs from one day to the next.
    """
    experiment = client.get_experiment_by_name(selection.experiment)
    if experiment is None:
        raise UserError(f"no experiment '{selection.experiment}' in the tracking store",
                        "pass report.experiment=<name> (see `make ui`), or run the experiment first")
    runs = client.search_runs([experiment.experiment_id], max_results=50_000,
                              filter_string="attributes.status = 'FINISHED'")
    if selection.study_name:
        parents = {r.info.run_id for r in runs if r.data.tags.get("study_name") == selection.study_name
                   and r.info.run_name.startswith("study-")}
        rows = [r for r in runs if r.data.tags.get("mlflow.parentRunId") in parents]
    else:
        jobs = {r.info.run_id: r for r in runs if "adaptation" in r.data.tags
                and r.data.tags["adaptation"] not in NOT_JOBS
                and (selection.sweep_id is None or r.data.tags.get("sweep_id") == selection.sweep_id)}
        children = {}
        for r in runs:
            parent = r.data.tags.get("mlflow.parentRunId")
            if parent in jobs:
                children.setdefault(parent, []).append(r)
        rows = [child for job_id, job in jobs.items() if job.data.tags.get("mlflow.parentRunId") not in jobs
                for child in children.get(job_id, [job])]
    if not rows:
        what = f"sweep {selection.sweep_id}" if selection.sweep_id else \
            f"study {selection.study_name}" if selection.study_name else "finished runs"
        raise UserError(f"experiment '{selection.experiment}' has no {what} to report on",
                        "run `python src/main.py` (or the experiment) first, or check report.sweep_id / report.study")
    records = []
    for r in rows:
        tags, params = r.data.tags, r.data.params
        label = tags.get("adaptation") or _study_label(params)
        evaluator = tags.get("evaluator", "unknown" if selection.study_name else "run")
        machine = measured_on(tags, evaluator)
        hardware = params.get("hardware.name", tags.get("hardware", "cpu"))
        records.append({"run_id": r.info.run_id, "adaptation": label,
                        "pipeline": tags.get("pipeline", params.get("pipeline.name", "video")),
                        "pipeline_input": tags.get("pipeline_input", "frame"),  # runs before the tag: video
                        "hardware": f"{hardware} on {machine_id(machine)}" if machine else f"{hardware} on an "
                                    "unrecorded machine", "machine": machine or "unrecorded",
                        "evaluator": evaluator,
                        "energy_source": tags.get("energy_source", "unknown"),
                        "load": tags.get("load", params.get("trial.load", "unknown")),
                        "weights_kind": tags.get("weights_kind", "unknown"),
                        "numerics": trial_numerics(params), "sla_s": float(params.get("trial.sla_s", "nan")),
                        **r.data.metrics})
    return pd.DataFrame.from_records(records)


def measured_on(tags: dict, evaluator: str) -> str | None:
    """The fingerprint key of the machine a row's figures come from: the profiles' for a composed trial, the run's
    own otherwise (`machine` is on every run; `profiles_fingerprint` on every study and adapter run)."""
    if evaluator == "profile":
        found = tags.get("profiles_fingerprint")
        return None if found in (None, "", "unknown") else found
    return tags.get("machine") or None


def row_stages(params: dict) -> list[str]:
    """A row's stages in pipeline order: a run logs `pipeline.stages`; a study trial only `<stage>.variant` (its
    stages in the order they were logged); runs older than the pipeline setting were the video pipeline's."""
    if "pipeline.stages" in params:
        return list(json.loads(params["pipeline.stages"]))
    prefixed = [k.removeprefix("adaptation.").removesuffix(".variant") for k in params
                if k.endswith(".variant") and k.count(".") == (2 if k.startswith("adaptation.") else 1)]
    return list(dict.fromkeys(prefixed))


def trial_numerics(params: dict) -> str:
    """Each stage's precision/runtime in pipeline order: `int8/openvino + fp32/torch`. A run records them as
    `adaptation.<stage>.precision` (a study trial as `<stage>.precision`); runs made before the knobs existed
    record neither and ran fp32 on torch."""
    def pair(stage: str) -> str:
        for prefix in (f"adaptation.{stage}.", f"{stage}."):
            if f"{prefix}precision" in params:
                return numerics_label(params[f"{prefix}precision"], params[f"{prefix}runtime"])
        return numerics_label("fp32", "torch")

    return " + ".join(pair(stage) for stage in row_stages(params))


def _study_label(params: dict) -> str:
    """The whole configuration (threads, replicas, precision and runtime too: trials that differ only there are not
    repetitions). Trials of studies older than the precision knobs record none."""
    def numerics(s: str) -> str:
        if f"{s}.precision" not in params:
            return ""
        return f" {numerics_label(params[f'{s}.precision'], params[f'{s}.runtime'])}"

    return " + ".join(f"{params.get(f'{s}.variant')} b{params.get(f'{s}.batch_size')} t{params.get(f'{s}.threads')} "
                      f"r{params.get(f'{s}.replicas')}{numerics(s)}" for s in row_stages(params))
