"""`python src/report.py`: read trials from the store, answer "does energy change which configuration is best?",
write a report folder (HTML + PNG + CSV) and log it as a report run."""

from __future__ import annotations

import html
import time
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
from mlflow.tracking import MlflowClient
from omegaconf import DictConfig
from rich.console import Console

from sustainable_ipa.metrics.stats import interval_text
from sustainable_ipa.report import analysis, interactive, labels, plots
from sustainable_ipa.report.carbon_view import EQUIVALENTS_SOURCE, carbon_table, regions_table
from sustainable_ipa.report.collect import Selection, trials
from sustainable_ipa.report.html import figure, page, table
from sustainable_ipa.metrics.energy import PER_MODEL
from sustainable_ipa.tracking.links import print_where_to_look
from sustainable_ipa.tracking.runs import common_tags, log, tracked_run
from sustainable_ipa.tracking.store import open_store

METRICS = ["accuracy_reference", "accuracy_measured", "latency_p50_s", "latency_p99_s", "throughput_rps",
           "sla_attainment", "cost_cores", "cost_usd_per_1k", "energy_j_per_request", "energy_j_total",
           "power_w_mean", "idle_power_w", "emissions_g_per_1k", "energy_delay_j_s",
           "energy_j_per_request_low", "energy_j_per_request_high"]  # the estimate's power-model range
VERSUS = ["cost_usd_per_1k", "latency_p99_s", "accuracy_reference"]


def report_job(cfg: DictConfig, console: Console | None = None) -> Path:
    console = console or Console(stderr=True)
    r = cfg.report
    experiment_id = open_store(cfg.tracking.uri, r.experiment or cfg.tracking.experiment, cfg.tracking.artifact_root)
    client = MlflowClient(tracking_uri=cfg.tracking.uri)
    selection = Selection(r.experiment or cfg.tracking.experiment, r.sweep_id, r.study)
    data = trials(client, selection)
    by_pipeline, by_type = analysis.energy_by(data, "pipeline"), analysis.energy_by(data, "type")
    several = data["pipeline"].nunique() > 1
    if several:  # configurations of different pipelines are compared only by type, below
        data["hardware"] = data["pipeline"] + " · " + data["hardware"]
    folder = Path(r.out_dir) / time.strftime("%Y-%m-%d_%H-%M-%S")
    folder.mkdir(parents=True, exist_ok=True)
    summary = analysis.summarise(data, [m for m in METRICS if m in data] + [c for c in data if c.startswith(PER_MODEL)])
    warnings = analysis.several_machines(data) + analysis.mixed_energy_sources(data) + labels.warnings(data)
    if set(data["weights_kind"]) - {"pretrained"}:
        warnings.append("some runs use random weights: their accuracy is the reference accuracy, not measured")
    notes = _Notes(labels.section_note(summary), labels.figure_note(summary))
    answers = _answers(summary)
    sections = [("The question", notes.section + _answer_html(answers)),
                ("Where the figures were measured", "<p>Each hardware label names the machine's fingerprint; "
                 "figures of different machines are never compared in one set.</p>" + table(analysis.machines(data)))]
    sections.append(_cost_section(summary, folder, notes))
    correlations, section = _correlation_section(summary, folder, notes)
    sections += [section, _pareto_section(summary, folder, notes), _ordering_section(summary, notes)]
    type_answers = {h: analysis.type_answer(g) for h, g in by_type.groupby("hardware")} if several else {}
    if type_answers:
        sections.append(("Energy per request by pipeline type",
                         notes.section + _types_html(by_pipeline, by_type, type_answers)))
    carbon, regions, section = _carbon_section(cfg, summary, folder, notes)
    sections.append(section)

    for name, frame in {"trials.csv": data, "summary.csv": summary, "correlations.csv": correlations,
                        "carbon.csv": carbon, "regions.csv": regions, "pipelines.csv": by_pipeline,
                        "pipeline_types.csv": by_type}.items():
        frame.to_csv(folder / name, index=False)
    title = f"Sustainable-IPA report: {selection.experiment}" + (f", sweep {r.sweep_id}" if r.sweep_id else "") + \
        (f", study {r.study}" if r.study else "")
    (folder / "report.html").write_text(page(title, sections, warnings))
    _print_answers(console, warnings, answers, type_answers)
    run_id = _record_report(client, experiment_id, folder, data, summary)
    console.print(f"report: {folder / 'report.html'}")
    print_where_to_look(console, cfg.tracking.uri, selection.experiment, experiment_id, run_id)
    return folder


@dataclass(frozen=True)
class _Notes:
    section: str  # what every section opens with: which figures it holds (`labels.section_note`)
    figure: str  # what every figure says under it (`labels.figure_note`)


def _cost_section(summary: pd.DataFrame, folder: Path, notes: _Notes) -> tuple[str, str]:
    paths = plots.cost_vs_accuracy(summary, folder, notes.figure) if analysis.ENERGY in summary else []
    figures = interactive.cost_vs_accuracy(summary, notes.figure) if paths else []
    return ("Cost, accuracy and energy", notes.section + "".join(figure(f, p) for f, p in zip(figures, paths)))


def _correlation_section(summary: pd.DataFrame, folder: Path, notes: _Notes) -> tuple[pd.DataFrame, tuple[str, str]]:
    """Energy per request against each of VERSUS, per hardware: the correlations (also correlations.csv) and the
    section with a figure for each."""
    corr_rows, corr_html = [], []
    if analysis.ENERGY in summary:
        for x in VERSUS:
            per_hardware = {h: analysis.correlation(g, x) for h, g in summary.groupby("hardware")}
            corr_html.append(figure(interactive.energy_versus(summary, x, per_hardware, notes.figure),
                                    plots.energy_versus(summary, x, per_hardware, folder, notes.figure)))
            corr_rows += [{"hardware": h, "energy per request vs": x, "n": c.n, "Pearson r": c.pearson_r,
                           "r 95% CI": interval_text(*c.pearson_ci, c.n, 2), "Spearman ρ": c.spearman_rho,
                           "ρ 95% CI": interval_text(*c.spearman_ci, c.n, 2)}
                          for h, c in per_hardware.items() if c is not None]
    correlations = pd.DataFrame(corr_rows)
    return correlations, ("Does energy follow cost, latency or accuracy?", notes.section +
                          (table(correlations, 3) if len(correlations) else "<p>Too few configurations (need 4) for "
                           "correlations.</p>") + "".join(corr_html))


def _pareto_section(summary: pd.DataFrame, folder: Path, notes: _Notes) -> tuple[str, str]:
    """Per hardware, the Pareto set without and with energy: who enters, who leaves, at what energy saved."""
    without, with_energy, pareto_rows, entry_rows, trade_rows = {}, {}, [], [], []
    for hardware, group in summary.groupby("hardware"):
        if analysis.ENERGY not in group:
            continue
        w, e, tradeoffs = analysis.pareto_change(group)
        without[hardware], with_energy[hardware] = w, e
        entries = analysis.energy_entries(group)
        pareto_rows.append({"hardware": hardware, "Pareto without energy": ", ".join(sorted(w)),
                            "enter with energy": ", ".join(f"{x.adaptation} ({x.verdict})" for x in entries) or "none",
                            "leave with energy": ", ".join(sorted(w - e)) or "none"})
        entry_rows += [{"hardware": hardware, "enters": x.adaptation, "beaten otherwise by": ", ".join(x.dominated_by),
                        "its energy CI high (J)": x.energy_ci95_high, "their lowest energy CI low (J)":
                        x.dominators_ci95_low, "verdict": x.verdict} for x in entries]
        trade_rows += [{"hardware": hardware, **t.__dict__} for t in tradeoffs]
    pareto_html = notes.section + table(pd.DataFrame(pareto_rows))
    if entry_rows:
        pareto_html += "<p>An entry counts only when its energy interval lies below those of every configuration " \
                       "that beats it on accuracy, cost and latency:</p>" + table(pd.DataFrame(entry_rows), 4)
    if trade_rows:
        pareto_html += "<p>Sensitivity: energy saved by each configuration energy brings in, against the " \
                       "most accurate configuration that beat it without energy.</p>" + table(pd.DataFrame(trade_rows), 3)
    if without:
        pareto_html += figure(interactive.pareto_plot(summary, without, with_energy, notes.figure),
                              plots.pareto_plot(summary, without, with_energy, folder, notes.figure))
    return ("Pareto sets with and without energy", pareto_html)


def _ordering_section(summary: pd.DataFrame, notes: _Notes) -> tuple[str, str]:
    """Each adaptation's means and intervals, and whether neighbours by energy are told apart."""
    verdicts = {True: "distinguishable", False: "intervals overlap: not an ordering",
                None: "no interval (one trial, or not measured): not an ordering"}
    order = [(a, b, verdicts[d])
             for _, g in summary.groupby("hardware") for a, b, d in analysis.distinguishable(g, analysis.ENERGY)] \
        if analysis.ENERGY in summary else []
    return ("Per adaptation: mean [95 % CI] over measured trials", notes.section +
            table(_ci_table(summary)) + "<p>Neighbours by energy per request:</p>" +
            table(pd.DataFrame(order, columns=["lower", "higher", "verdict"])))


def _carbon_section(cfg: DictConfig, summary: pd.DataFrame, folder: Path,
                    notes: _Notes) -> tuple[pd.DataFrame, pd.DataFrame, tuple[str, str]]:
    """The emissions a year at `report.request_rate_rps` here and in `report.regions`: both tables and the section."""
    r = cfg.report
    carbon = carbon_table(summary, float(r.request_rate_rps), float(cfg.hardware.pue))
    regions = regions_table(summary, list(r.regions), float(r.request_rate_rps), float(cfg.hardware.pue))
    carbon_html = notes.section + (f"<p>At {r.request_rate_rps} requests/s all year. Equivalents: "
                                   f"{html.escape(EQUIVALENTS_SOURCE)}.</p>{table(carbon, 3)}")
    if len(carbon):
        carbon_html += figure(interactive.carbon_bars(carbon, notes.figure),
                              plots.carbon_bars(carbon, folder, notes.figure))
    carbon_html += "<p>The same energy in other regions (kg CO2e per year; CodeCarbon's offline national " \
                   f"averages, {html.escape('Our World in Data')}):</p>{table(regions, 3)}"
    return carbon, regions, ("Carbon", carbon_html)


def _print_answers(console: Console, warnings: list[str], answers: dict[str, tuple[int, str]],
                   type_answers: dict[str, str]) -> None:
    for w in warnings:
        console.print(f"[yellow]warning[/]: {w}")
    for hardware, (_, sentence) in answers.items():
        console.print(f"does energy change which configuration is best on {hardware}? {sentence}")
    for hardware, sentence in type_answers.items():
        console.print(f"energy per request by pipeline type on {hardware}: {sentence}")


def _record_report(client: MlflowClient, experiment_id: str, folder: Path, data: pd.DataFrame,
                   summary: pd.DataFrame) -> str:
    """The report folder logged as a report run; its id."""
    tags = {**common_tags("report", ",".join(sorted(set(data["weights_kind"])))), "report": "true"}
    with tracked_run(client, experiment_id, f"report-{folder.name}", tags=tags) as run_id:
        log(client, run_id, params={"report.trials": len(data), "report.adaptations": len(summary)})
        client.log_artifacts(run_id, str(folder), "report")
    return run_id


def _types_html(by_pipeline: pd.DataFrame, by_type: pd.DataFrame, answers: dict[str, str]) -> str:
    return ("<p>Per request, every trial of each pipeline's configurations pooled (mean [95 % "
            "interval]); the figure depends on which configurations ran.</p>" + table(by_pipeline, 3) +
            table(by_type, 3) + "<ul>" + "".join(f"<li><b>{html.escape(h)}</b>: {html.escape(a)}.</li>"
                                                 for h, a in answers.items()) + "</ul>")


def _answers(summary: pd.DataFrame) -> dict[str, tuple[int, str]]:
    """Per hardware: (configurations, the answer's sentence)."""
    if analysis.ENERGY not in summary:
        return {}
    return {str(hardware): (len(group), analysis.answer(group)[1]) for hardware, group in summary.groupby("hardware")}


def _answer_html(answers: dict[str, tuple[int, str]]) -> str:
    if not answers:
        return "<p>No energy metrics in these runs.</p>"
    parts = [f"<li><b>{html.escape(hardware)}</b> ({n} configurations): {html.escape(sentence)}.</li>"
             for hardware, (n, sentence) in answers.items()]
    return "<p>Does energy change which configuration is best?</p><ul>" + "".join(parts) + "</ul>"


def _ci_table(summary: pd.DataFrame) -> pd.DataFrame:
    out = summary[["hardware", "adaptation", "n", *[c for c in analysis.LABELS if c in summary]]].copy()
    for metric in METRICS:
        if metric in summary:
            nan = summary[metric] * float("nan")
            out[metric] = [f"{m:.4g} [{interval_text(lo, hi, n)}]" if measured else f"{m:.4g}"
                           for m, lo, hi, n, measured in zip(
                               summary[metric], summary.get(f"{metric}_ci95_low", nan),
                               summary.get(f"{metric}_ci95_high", nan), summary["n"],
                               summary.get("evaluator", pd.Series(analysis.MEASURED, summary.index)) == analysis.MEASURED)]
    return out
