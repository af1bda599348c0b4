"""`python src/report.py`: read trials from the store, answer "does energy change which configuration is best?",
write a report folder (HTML + PNG + CSV) and log it as a report run."""

from __future__ import annotations

import html
import time
from pathlib import Path

import pandas as pd
from mlflow.tracking import MlflowClient
from omegaconf import DictConfig
from rich.console import Console

from sustainable_ipa.report import analysis, plots
from sustainable_ipa.report.carbon_view import EQUIVALENTS_SOURCE, carbon_table, regions_table
from sustainable_ipa.report.collect import Selection, trials
from sustainable_ipa.report.html import image, page, table
from sustainable_ipa.tracking.runs import common_tags, log, tracked_run
from sustainable_ipa.tracking.store import open_store

METRICS = ["accuracy_reference", "accuracy_measured", "latency_p50_s", "latency_p99_s", "throughput_rps",
           "sla_attainment", "cost_cores", "cost_usd_per_1k", "energy_j_per_request", "energy_j_total",
           "power_w_mean", "idle_power_w", "emissions_g_per_1k", "energy_delay_j_s"]
VERSUS = ["cost_usd_per_1k", "latency_p99_s", "accuracy_reference"]


def report_job(cfg: DictConfig, console: Console | None = None) -> Path:
    console = console or Console(stderr=True)
    r = cfg.report
    experiment_id = open_store(cfg.tracking.uri, r.experiment or cfg.tracking.experiment, cfg.tracking.artifact_root)
    client = MlflowClient(tracking_uri=cfg.tracking.uri)
    selection = Selection(r.experiment or cfg.tracking.experiment, r.sweep_id, r.study)
    data = trials(client, selection)
    folder = Path(r.out_dir) / time.strftime("%Y-%m-%d_%H-%M-%S")
    folder.mkdir(parents=True, exist_ok=True)
    summary = analysis.summarise(data, [m for m in METRICS if m in data])
    warnings = analysis.mixed_energy_sources(data)
    if data["energy_source"].astype(str).str.contains("estimate").any():
        warnings.append("energy from the estimate meter is CPU time × hardware.estimate constants: it follows CPU "
                        "time, hence cost and latency, by construction; correlations with them say nothing about "
                        "measured power. Measure with RAPL or NVML for that")
    if set(data["weights_kind"]) - {"pretrained"}:
        warnings.append("some runs use random weights: their accuracy is the reference accuracy, not measured")
    sections = [("The question", _answer(summary))]

    paths = plots.cost_vs_accuracy(summary, folder) if analysis.ENERGY in summary else []
    sections.append(("Cost, accuracy and energy", "".join(image(p, p.stem) for p in paths)))

    corr_rows, corr_html = [], []
    if analysis.ENERGY in summary:
        for x in VERSUS:
            per_hardware = {h: analysis.correlation(g, x) for h, g in summary.groupby("hardware")}
            corr_html.append(image(plots.energy_versus(summary, x, per_hardware, folder), x))
            corr_rows += [{"hardware": h, "energy per request vs": x, "n": c.n, "Pearson r": c.pearson_r,
                           "r 95% CI": f"[{c.pearson_ci[0]:.2f}, {c.pearson_ci[1]:.2f}]", "Spearman ρ": c.spearman_rho,
                           "ρ 95% CI": f"[{c.spearman_ci[0]:.2f}, {c.spearman_ci[1]:.2f}]"}
                          for h, c in per_hardware.items() if c is not None]
    correlations = pd.DataFrame(corr_rows)
    sections.append(("Does energy follow cost, latency or accuracy?",
                     (table(correlations, 3) if len(correlations) else "<p>Too few configurations (need 4) for "
                      "correlations.</p>") + "".join(corr_html)))

    without, with_energy, pareto_rows, trade_rows = {}, {}, [], []
    for hardware, group in summary.groupby("hardware"):
        if analysis.ENERGY not in group:
            continue
        w, e, tradeoffs = analysis.pareto_change(group)
        without[hardware], with_energy[hardware] = w, e
        pareto_rows.append({"hardware": hardware, "Pareto without energy": ", ".join(sorted(w)),
                            "enter with energy": ", ".join(sorted(e - w)) or "none",
                            "leave with energy": ", ".join(sorted(w - e)) or "none"})
        trade_rows += [{"hardware": hardware, **t.__dict__} for t in tradeoffs]
    pareto_html = table(pd.DataFrame(pareto_rows))
    if trade_rows:
        pareto_html += "<p>Sensitivity: energy saved by each configuration energy brings in, against the " \
                       "most accurate configuration that beat it without energy.</p>" + table(pd.DataFrame(trade_rows), 3)
    if without:
        pareto_html += image(plots.pareto_plot(summary, without, with_energy, folder), "pareto")
    sections.append(("Pareto sets with and without energy", pareto_html))

    order = [(a, b, "distinguishable" if d else "intervals overlap: not an ordering")
             for _, g in summary.groupby("hardware") for a, b, d in analysis.distinguishable(g, analysis.ENERGY)] \
        if analysis.ENERGY in summary else []
    sections.append(("Per adaptation: mean [95 % CI] over trials",
                     table(_ci_table(summary)) + "<p>Neighbours by energy per request:</p>" +
                     table(pd.DataFrame(order, columns=["lower", "higher", "verdict"]))))

    carbon = carbon_table(summary, float(r.request_rate_rps), float(cfg.hardware.pue))
    regions = regions_table(summary, list(r.regions), float(r.request_rate_rps), float(cfg.hardware.pue))
    carbon_html = (f"<p>At {r.request_rate_rps} requests/s all year. Equivalents: {html.escape(EQUIVALENTS_SOURCE)}."
                   f"</p>{table(carbon, 3)}")
    if len(carbon):
        carbon_html += image(plots.carbon_bars(carbon, folder), "emissions")
    carbon_html += "<p>The same energy in other regions (kg CO2e per year; CodeCarbon's offline national " \
                   f"averages, {html.escape('Our World in Data')}):</p>{table(regions, 3)}"
    sections.append(("Carbon", carbon_html))

    for name, frame in {"trials.csv": data, "summary.csv": summary, "correlations.csv": correlations,
                        "carbon.csv": carbon, "regions.csv": regions}.items():
        frame.to_csv(folder / name, index=False)
    title = f"Sustainable-IPA report: {selection.experiment}" + (f", sweep {r.sweep_id}" if r.sweep_id else "") + \
        (f", study {r.study}" if r.study else "")
    (folder / "report.html").write_text(page(title, sections, warnings))
    for w in warnings:
        console.print(f"[yellow]warning[/]: {w}")

    tags = {**common_tags("report", ",".join(sorted(set(data["weights_kind"])))), "report": "true"}
    with tracked_run(client, experiment_id, f"report-{folder.name}", tags=tags) as run_id:
        log(client, run_id, params={"report.trials": len(data), "report.adaptations": len(summary)})
        client.log_artifacts(run_id, str(folder), "report")
    console.print(f"report: {folder / 'report.html'}")
    return folder


def _answer(summary: pd.DataFrame) -> str:
    if analysis.ENERGY not in summary:
        return "<p>No energy metrics in these runs.</p>"
    parts = []
    for hardware, group in summary.groupby("hardware"):
        without, with_energy, _ = analysis.pareto_change(group)
        entered = sorted(with_energy - without)
        verdict = (f"yes: {', '.join(entered)} become Pareto-optimal only when energy counts" if entered else
                   "no: the Pareto set over accuracy, cost and latency already holds every energy-optimal configuration")
        parts.append(f"<li><b>{html.escape(str(hardware))}</b> ({len(group)} adaptations): {html.escape(verdict)}.</li>")
    return "<p>Does energy change which configuration is best?</p><ul>" + "".join(parts) + "</ul>"


def _ci_table(summary: pd.DataFrame) -> pd.DataFrame:
    out = summary[["hardware", "adaptation", "n", "energy_source"]].copy()
    for metric in METRICS:
        if metric in summary:
            out[metric] = [f"{m:.4g} [{lo:.4g}, {hi:.4g}]" if pd.notna(lo) else f"{m:.4g}"
                           for m, lo, hi in zip(summary[metric], summary.get(f"{metric}_ci95_low", summary[metric] * float("nan")),
                                                summary.get(f"{metric}_ci95_high", summary[metric] * float("nan")))]
    return out
