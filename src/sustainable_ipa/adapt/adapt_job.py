"""`python src/adapt.py`: IPA's objective vs energy-aware vs carbon-aware on the same traces, recorded in MLflow."""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
from mlflow.tracking import MlflowClient
from omegaconf import DictConfig
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from sustainable_ipa.adapt.optimizer import Weights
from sustainable_ipa.adapt.plots import timeline
from sustainable_ipa.adapt.capacity import capacity
from sustainable_ipa.adapt.forecast import Predictor, make_predictor
from sustainable_ipa.adapt.comparison import against_ipa
from sustainable_ipa.adapt.simulate import (Policy, deferrable_job, interval_loads, precompute_options, simulate,
                                            totals)
from sustainable_ipa.adapt.traces import (CARBON_COLUMNS, CARBON_GENERATORS, LOAD_COLUMNS, LOAD_GENERATORS, Trace,
                                          Window, generate_carbon, generate_load, open_trace, replay_window, scaled)
from sustainable_ipa.energy.carbon import carbon_intensity_g_per_kwh
from sustainable_ipa.metrics.accuracy import option_accuracies
from sustainable_ipa.search.space import configured_space
from sustainable_ipa.tracking.runs import common_tags, log, tracked_run
from sustainable_ipa.tracking.links import print_where_to_look
from sustainable_ipa.tracking.store import open_store


def policies(a: DictConfig) -> list[Policy]:
    """IPA's objective, energy-aware and carbon-aware, each held to the same budgets (`adapt.power_budget_w`,
    `adapt.carbon_budget_g_per_h`)."""
    common = dict(alpha=a.alpha, beta=a.beta, accuracy=a.accuracy)
    budgets = dict(power_budget_w=a.power_budget_w, carbon_budget_g_per_h=a.carbon_budget_g_per_h)
    return [Policy("ipa", Weights(delta=0.0, **common), **budgets),
            Policy("energy", Weights(delta=a.delta_energy, objective="power", **common), **budgets),
            Policy("carbon", Weights(delta=a.delta_carbon, objective="carbon", **common), **budgets)]


def over_budget_line(a: DictConfig, table: pd.DataFrame, intervals: int) -> str | None:
    """One line when some policy served intervals over the budget (`table`: per policy, `intervals_over_budget` and
    `intervals_nothing_within_budget`), else None."""
    over = table[table["intervals_over_budget"] > 0]
    if over.empty:
        return None
    budgets = " and ".join(f"adapt.{k}={a[k]:g}" for k in ("power_budget_w", "carbon_budget_g_per_h")
                           if a[k] is not None)
    shown = ", ".join(f"{name} {row.intervals_over_budget:.0f} of {intervals} (nothing fitted it in "
                      f"{row.intervals_nothing_within_budget:.0f})" for name, row in over.iterrows())
    return (f"over budget: {budgets} exceeded in {shown} intervals: where nothing fits it the least power that meets "
            "the SLA is served, elsewhere the load rose above the forecast (metrics <policy>_intervals_over_budget)")


@dataclass(frozen=True)
class Replay:
    """The traces cut to the replayed span (re-based to its start), with what the cut found."""

    load: Trace
    carbon: Trace
    span_s: float
    load_window: Window
    carbon_window: Window

    def tags(self) -> dict[str, str]:
        return {**self.load_window.tags("load"), **self.carbon_window.tags("carbon"), "replay_span_s": str(self.span_s)}

    def reports(self) -> list[str]:
        return [line for line in (self.load_window.report("load"), self.carbon_window.report("carbon")) if line]


def replay_traces(cfg: DictConfig) -> Replay:
    """The load (scaled by `adapt.load_scale`) and carbon traces of the config, cut to the replayed span: from
    `adapt.start` for `adapt.duration_s`. A trace file that does not cover it is refused in one line unless
    `adapt.fill` says how to fill; generated traces are made for the span."""
    a = cfg.adapt
    mean_intensity = carbon_intensity_g_per_kwh(cfg.energy.carbon_intensity_g_per_kwh,
                                                cfg.hardware.carbon.country_iso_code, cfg.hardware.carbon.region)
    span_s = float(a.duration_s)
    load = generate_load(a.load, span_s, a.step_s, a.mean_rps, cfg.trial.seed) if a.load in LOAD_GENERATORS else \
        open_trace(a.load, LOAD_COLUMNS, a.trace_tz)
    carbon = generate_carbon(a.carbon, span_s, a.step_s, mean_intensity) if a.carbon in CARBON_GENERATORS else \
        open_trace(a.carbon, CARBON_COLUMNS, a.trace_tz)
    load, carbon, load_window, carbon_window = replay_window(scaled(load, float(a.load_scale)), carbon, a.start,
                                                             a.trace_tz, span_s, a.fill)
    return Replay(load, carbon, span_s, load_window, carbon_window)


def traces(cfg: DictConfig) -> tuple[Trace, Trace]:
    """(load, carbon) cut to the replayed span (`replay_traces`)."""
    replay = replay_traces(cfg)
    return replay.load, replay.carbon


def adapt_params(a) -> dict:
    """The adapt settings as MLflow params (the forecaster's as adapt.forecast.*), for the replay and the live run."""
    params = {f"adapt.{k}": v for k, v in a.items() if k not in ("job", "forecast")}
    params.update({f"adapt.forecast.{k}": v for k, v in a.forecast.items()})
    return params


def switch_costs(cfg: DictConfig, stage_space: dict, cores: list[int], console: Console) -> dict | None:
    """`adapt.switch_cost`: None (switches free, as before) or every option's bring-up on `cores`, measured here
    (`adapt/bring_up.py`) or read from where that was kept."""
    if cfg.adapt.switch_cost == "none":
        return None
    from sustainable_ipa.adapt.bring_up import measured_bring_ups

    return measured_bring_ups(cfg, stage_space, cores, lambda line: console.print(escape(line)))


def adapter_cores(max_cores: int) -> list[int]:
    """The cores the adapter's configurations run on: this process's first `max_cores` (as the live loop's)."""
    return sorted(os.sched_getaffinity(0))[:max_cores]


def predictor(cfg: DictConfig) -> Predictor:
    """The predictor `adapt.predictor` names, with `adapt.forecast`'s settings."""
    f = cfg.adapt.forecast
    return make_predictor(cfg.adapt.predictor, int(f.window), float(f.quantile), f.level)


def adapt_job(cfg: DictConfig, console: Console | None = None) -> pd.DataFrame:
    from sustainable_ipa.search.profiling_job import profile_job

    console = console or Console(stderr=True)
    a = cfg.adapt
    compared = policies(a)
    replay = replay_traces(cfg)
    load, carbon = replay.load, replay.carbon
    for line in replay.reports():
        console.print(line)
    forecaster = predictor(cfg)
    if cfg.profiling.lazy:  # never silently: the setting is shared with the study
        console.print(LAZY_NOT_HERE)
    # the thread counts no decision within adapt.max_cores can use are neither profiled nor decided between
    profiles = profile_job(cfg, console, configured_space(cfg, int(a.max_cores)))
    stage_space = configured_space(cfg, int(a.max_cores)).profile_grid()  # as profiling left it (profiling.budget_s)
    reference = option_accuracies(cfg.pipeline.variants)  # fp32 reference + published change per precision
    bring_ups = switch_costs(cfg, stage_space, adapter_cores(int(a.max_cores)), console)
    planned = interval_loads(load, replay.span_s, float(a.step_s), a.plan_for)
    ceiling = capacity(profiles, stage_space, int(a.max_cores), planned, float(a.load_scale))
    if ceiling.line():
        console.print(ceiling.line())
    experiment_id = open_store(cfg.tracking.uri, cfg.tracking.experiment, cfg.tracking.artifact_root)
    client = MlflowClient(tracking_uri=cfg.tracking.uri)
    results, runs = {}, {}
    precompute_s = precompute_options(profiles, stage_space, reference, planned)
    for policy in compared:
        def replayed(aware: bool = True) -> list:
            return simulate(policy, profiles, stage_space, reference, load, carbon, cfg.trial.sla_s,
                            int(a.max_cores), float(a.step_s), float(cfg.hardware.pue), forecaster, a.plan_for,
                            replay.span_s, bring_ups, switch_aware=aware)

        runs[policy.name] = replayed()
        results[policy.name] = totals(runs[policy.name])
        if bring_ups is not None:  # the same policy blind to switch costs, charged them all the same
            blind = totals(replayed(aware=False))
            results[policy.name].update({f"switch_blind_{m}": blind[m] for m in SWITCH_BLIND})
    heaviest = max(runs["ipa"], key=lambda i: i.power_w)
    job = deferrable_job(carbon, float(a.job.duration_s), float(a.job.window_s), heaviest.power_w, float(a.step_s))
    table = pd.DataFrame(results).T
    over = over_budget_line(a, table, len(runs["ipa"]))
    if over:
        console.print(over)
    against_ipa(table)
    tags = {**common_tags("adapt", "profiles"), "load_trace": load.name, "carbon_trace": carbon.name,
            "profiles_flagged": str(len(profiles.flagged())),  # measured under contention or too noisy
            "profiles_fingerprint": profiles.fingerprint or "unknown",  # the machine they were measured on
            **replay.tags(), "predictor": forecaster.name, "capacity": ceiling.line() or "every interval fits",
            "figures": "composed prediction (profiles replayed by the simulator), not measured"}
    params = adapt_params(a)
    with tracked_run(client, experiment_id, f"adapt-{load.name}-{carbon.name}", tags=tags) as run_id:
        log(client, run_id, params=params,
            metrics={**{f"{p}_{m}": v for p, row in table.iterrows() for m, v in row.items()}, **job,
                     "options_precompute_s": precompute_s, **ceiling.metrics()})
        client.log_text(run_id, table.to_csv(), "comparison.csv")
        for name, intervals in runs.items():
            client.log_text(run_id, pd.DataFrame([i.row() for i in intervals]).to_csv(index=False),
                            f"intervals_{name}.csv")
        with tempfile.TemporaryDirectory() as folder:
            client.log_artifact(run_id, str(timeline(runs, Path(folder) / "timeline.png")))
    flat = len({i.carbon_intensity_g_per_kwh for i in runs["ipa"]}) == 1
    console.print(comparison_table(table, job, flat_carbon=flat))
    print_where_to_look(console, cfg.tracking.uri, cfg.tracking.experiment, experiment_id, run_id)  # its own run
    return table


LAZY_NOT_HERE = ("profiling.lazy=true applies to the study: the adapter's program weighs every option at every "
                 "decision, so it profiles its whole space first (profiling.budget_s plans it within a time budget)")
SWITCH_BLIND = ("energy_j", "emissions_g", "sla_attainment", "switches", "switch_energy_j")
SHOWN = ["energy_j", "energy_j_low", "energy_j_high", "emissions_g", "accuracy_mean", "sla_attainment",
         "energy_saved_fraction_vs_ipa", "emissions_saved_fraction_vs_ipa", "accuracy_given_up_vs_ipa", "switches",
         "decision_ms_p50"]  # energy_j_low/_high: the power model's interval, where the profiles carry one


def comparison_table(table: pd.DataFrame, job: dict, flat_carbon: bool = False) -> Table:
    """One row per metric, one column per policy: it stays readable in an 80-column terminal. Savings are shown as
    percentages of IPA's figure; the caption says the figures are composed predictions, and why the energy and
    carbon columns agree where the carbon intensity is flat."""
    out = Table(title="policies on the same traces: composed predictions (profiles replayed), not measurements")
    out.add_column("metric")
    for name in table.index:
        out.add_column(str(name), justify="right")
    for metric in (m for m in SHOWN if m in table.columns):
        shown = "{:.1%}" if metric.endswith("_fraction_vs_ipa") else "{:.4g}"
        out.add_row(metric, *(shown.format(value) for value in table[metric]))
    caption = [f"saved_fraction: share of IPA's objective's figure saved (negative: more). Deferrable job: "
               f"{job['job_emissions_now_g']:.3g} g now, {job['job_emissions_best_g']:.3g} g at the cleanest start "
               f"(+{job['job_best_start_s'] / 3600:.1f} h): {job['job_saved_fraction']:.1%} saved"]
    if flat_carbon:
        caption.append("the carbon intensity is flat over this span, so emissions are energy × one constant: the "
                       "carbon-aware policy decides as the energy one does, and their columns agree by construction")
    out.caption = ". ".join(caption)
    return out
