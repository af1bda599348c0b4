"""The report's figures as interactive plotly charts: hovering a point names its configuration and its figures.

One panel per hardware, as the PNG copies (plots.py) have. The page inlines plotly.js once (html.py), so the report
stays one file that opens offline.
"""

from __future__ import annotations

import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from sustainable_ipa.report.analysis import ENERGY, Correlation
from sustainable_ipa.report.labels import axis_title

HEIGHT_PX = 430
MARKERS = ["circle", "square", "diamond", "triangle-up", "triangle-down", "cross", "x", "star"]
COLOURS = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b", "#e377c2", "#17becf"]  # plotly's own
PARETO_KINDS = {"none": ("dominated", dict(color="lightgray", symbol="circle", size=9)),
                "both": ("Pareto without energy", dict(color="#1f77b4", symbol="circle", size=10)),
                "energy": ("Pareto only with energy", dict(color="#2ca02c", symbol="star", size=16))}


def _panels(summary: pd.DataFrame, title: str, note: str, scene: bool = False, titles=None):
    hardware = sorted(summary["hardware"].unique())
    specs = [[{"type": "scene"} for _ in hardware]] if scene else None
    fig = make_subplots(rows=1, cols=len(hardware), specs=specs, horizontal_spacing=0.12,
                        subplot_titles=[titles(h) if titles else h for h in hardware])
    heading = f"{title}<br><sup style='color:#c0392b'>⚠ {note}</sup>" if note else title
    fig.update_layout(title=dict(text=heading, font=dict(size=14)), height=HEIGHT_PX, autosize=True,
                      margin=dict(l=60, r=30, t=90 if note else 70, b=60), hoverlabel=dict(namelength=-1),
                      legend=dict(orientation="h", y=-0.25, font=dict(size=10)))
    fig.update_annotations(font_size=11)  # the panels' titles
    return fig, [(h, summary[summary["hardware"] == h], i + 1) for i, h in enumerate(hardware)]


def _hover(data: pd.DataFrame, fields: dict[str, str]) -> dict:
    """customdata and hovertemplate naming the configuration, then each field (column → label)."""
    columns = ["adaptation", "numerics", *fields]
    present = [c if c in data else None for c in columns]
    custom = [[row.get(c, "") if c else "" for c in present] for row in data.to_dict("records")]
    lines = ["<b>%{customdata[0]}</b>", "precision/runtime: %{customdata[1]}"]
    lines += [f"{label}: %{{customdata[{i + 2}]:.4g}}" for i, label in enumerate(fields.values())]
    return dict(customdata=custom, hovertemplate="<br>".join(lines) + "<extra></extra>")


def _error(data: pd.DataFrame, column: str) -> dict | None:
    if f"{column}_ci95_low" not in data:
        return None
    high = (data[f"{column}_ci95_high"] - data[column]).fillna(0).clip(lower=0)
    low = (data[column] - data[f"{column}_ci95_low"]).fillna(0).clip(lower=0)
    return dict(type="data", array=high.tolist(), arrayminus=low.tolist(), color="gray", thickness=1, width=2)


def _axes(fig, col: int, x: str, y: str) -> None:
    fig.update_xaxes(title_text=x, row=1, col=col, automargin=True)
    fig.update_yaxes(title_text=y, row=1, col=col, automargin=True)


FIELDS = {"accuracy_reference": "accuracy (PAS)", "cost_usd_per_1k": "USD per 1k requests",
          "latency_p99_s": "p99 latency (s)", ENERGY: "J per request", "sla_attainment": "SLA attainment",
          f"{ENERGY}_low": "J per request, power model's low end", f"{ENERGY}_high": "J per request, its high end"}
LABELLED_POINTS = 12  # up to this many points in a panel carry their configuration's name; more would overlap


def _names(points: pd.DataFrame, panel: pd.DataFrame) -> dict:
    """Markers named on the chart itself where their panel has few points (hovering names them all the same)."""
    if len(panel) > LABELLED_POINTS:
        return dict(mode="markers")
    return dict(mode="markers+text", text=points["adaptation"].tolist(), textposition="top center",
                textfont=dict(size=9))


def _fields(data: pd.DataFrame) -> dict[str, str]:
    return {c: label for c, label in FIELDS.items() if c in data}


def cost_vs_accuracy(summary: pd.DataFrame, note: str = "") -> list[go.Figure]:
    """Cost against accuracy, coloured by SLA attainment; the same coloured and sized by energy; and in 3D."""
    figures = []
    fig, panels = _panels(summary, "Cost against accuracy: colour = SLA attainment", note)
    for _, data, col in panels:
        fig.add_trace(go.Scatter(x=data["accuracy_reference"], y=data["cost_usd_per_1k"], **_names(data, data),
                                 error_x=_error(data, "accuracy_reference"), error_y=_error(data, "cost_usd_per_1k"),
                                 marker=dict(color=data.get("sla_attainment"), colorscale="RdYlGn", cmin=0, cmax=1,
                                             size=11, line=dict(color="black", width=1),
                                             colorbar=dict(title="SLA", len=0.8) if col == 1 else None,
                                             showscale=col == 1),
                                 showlegend=False, **_hover(data, _fields(data))), row=1, col=col)
        _axes(fig, col, axis_title("accuracy_reference"), axis_title("cost_usd_per_1k"))
    figures.append(fig)

    fig, panels = _panels(summary, "Cost against accuracy: colour and size = J per request", note)
    low, high = summary[ENERGY].min(), summary[ENERGY].max()
    for _, data, col in panels:
        size = 8 + 22 * (data[ENERGY] - low) / max(high - low, 1e-12)
        fig.add_trace(go.Scatter(x=data["accuracy_reference"], y=data["cost_usd_per_1k"], **_names(data, data),
                                 marker=dict(color=data[ENERGY], colorscale="Viridis", cmin=low, cmax=high,
                                             size=size.fillna(8), line=dict(color="black", width=1),
                                             colorbar=dict(title="J/req", len=0.8) if col == 1 else None,
                                             showscale=col == 1),
                                 showlegend=False, **_hover(data, _fields(data))), row=1, col=col)
        _axes(fig, col, axis_title("accuracy_reference"), axis_title("cost_usd_per_1k"))
    figures.append(fig)

    fig, panels = _panels(summary, "Accuracy, cost and energy (drag to turn)", note, scene=True)
    for _, data, col in panels:
        fig.add_trace(go.Scatter3d(x=data["accuracy_reference"], y=data["cost_usd_per_1k"], z=data[ENERGY],
                                   mode="markers", marker=dict(color=data[ENERGY], colorscale="Viridis", size=5),
                                   showlegend=False, **_hover(data, _fields(data))), row=1, col=col)
    fig.update_scenes(xaxis_title="accuracy", yaxis_title="USD per 1k", zaxis_title="J per request")
    fig.update_layout(height=HEIGHT_PX + 80)
    figures.append(fig)
    return figures


def energy_versus(summary: pd.DataFrame, x: str, correlations: dict[str, Correlation | None],
                  note: str = "") -> go.Figure:
    """Energy per request against `x`, one marker per precision/runtime combination, the correlation per panel."""
    def title(hardware: str) -> str:
        c = correlations.get(hardware)
        if c is None:
            return hardware
        return f"{hardware}: " + c.text().replace(", Spearman", ",<br>Spearman")

    fig, panels = _panels(summary, f"Energy per request against {axis_title(x)}", note, titles=title)
    groups = sorted(summary["numerics"].unique()) if "numerics" in summary else [""]
    in_legend: set[str] = set()  # each combination once, where it first has points; the same look in every panel
    for _, data, col in panels:
        for i, numerics in enumerate(groups):
            part = data[data["numerics"] == numerics] if "numerics" in data else data
            if part.empty:
                continue
            fig.add_trace(go.Scatter(x=part[x], y=part[ENERGY], **_names(part, data), name=numerics or "all",
                                     legendgroup=numerics, showlegend=len(groups) > 1 and numerics not in in_legend,
                                     error_x=_error(part, x), error_y=_error(part, ENERGY),
                                     marker=dict(symbol=MARKERS[i % len(MARKERS)], color=COLOURS[i % len(COLOURS)],
                                                 size=10, line=dict(color="black", width=1)),
                                     **_hover(part, _fields(part))), row=1, col=col)
            in_legend.add(numerics)
        _axes(fig, col, axis_title(x), axis_title(ENERGY))
    if len(groups) > 1:
        fig.update_layout(legend_title_text="precision/runtime per stage")
    return fig


def pareto_plot(summary: pd.DataFrame, without: dict[str, set[str]], with_energy: dict[str, set[str]],
                note: str = "") -> go.Figure:
    fig, panels = _panels(summary, "Pareto sets over accuracy, cost, p99 latency (+ energy)", note)
    in_legend: set[str] = set()
    for hardware, data, col in panels:
        base = without.get(hardware, set())
        extra = with_energy.get(hardware, set()) - base
        kinds = data["adaptation"].map(lambda a: "both" if a in base else ("energy" if a in extra else "none"))
        for kind, (label, style) in PARETO_KINDS.items():
            part = data[kinds == kind]
            if part.empty:
                continue
            fig.add_trace(go.Scatter(x=part["accuracy_reference"], y=part["latency_p99_s"],
                                     **_names(part, data), name=label, legendgroup=kind,
                                     showlegend=kind not in in_legend,
                                     marker=dict(**style, line=dict(color="black", width=1)),
                                     **_hover(part, _fields(part))), row=1, col=col)
            in_legend.add(kind)
        _axes(fig, col, axis_title("accuracy_reference"), axis_title("latency_p99_s"))
    return fig


def carbon_bars(carbon: pd.DataFrame, note: str = "") -> go.Figure:
    labels = carbon["hardware"] + " · " + carbon["adaptation"]
    fig = go.Figure(go.Bar(x=carbon["emissions_g_per_1k"], y=labels, orientation="h", marker_color="#bcbd22",
                           hovertemplate="<b>%{y}</b><br>%{x:.4g} g CO2e per 1k requests<extra></extra>"))
    heading = "Emissions per 1k requests" + (f"<br><sup style='color:#c0392b'>⚠ {note}</sup>" if note else "")
    fig.update_layout(title=dict(text=heading, font=dict(size=14)), xaxis_title="g CO2e per 1k requests",
                      height=max(260, 60 + 24 * len(carbon)), autosize=True, margin=dict(l=20, r=30, t=80, b=50))
    fig.update_yaxes(automargin=True)
    return fig
