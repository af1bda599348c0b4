"""Report figures (PNG). One column per hardware when the runs span several."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from sustainable_ipa.report.analysis import ENERGY, Correlation  # noqa: E402
from sustainable_ipa.report.labels import axis_title  # noqa: E402


def _columns(summary: pd.DataFrame, projection=None, width=5.0, height=4.0):
    hardware = sorted(summary["hardware"].unique())
    fig = plt.figure(figsize=(width * len(hardware), height))
    axes = [fig.add_subplot(1, len(hardware), i + 1, projection=projection) for i in range(len(hardware))]
    return fig, list(zip(hardware, axes))


def _errorbars(ax, data, x, y):
    xerr = [data[x] - data[f"{x}_ci95_low"], data[f"{x}_ci95_high"] - data[x]] if f"{x}_ci95_low" in data else None
    yerr = [data[y] - data[f"{y}_ci95_low"], data[f"{y}_ci95_high"] - data[y]] if f"{y}_ci95_low" in data else None
    ax.errorbar(data[x], data[y], xerr=_clean(xerr), yerr=_clean(yerr), fmt="none", ecolor="gray", alpha=0.5)


def _clean(err):
    # a 2 × n array: matplotlib reads a list of one-element Series as scalars (and pandas warns)
    return None if err is None else np.vstack([e.fillna(0).clip(lower=0).to_numpy(dtype=float) for e in err])


MARKERS = "osD^vPX*"


def _scatter_by_numerics(ax, data, x, y):
    """One marker per precision/runtime combination, with a legend when there are several."""
    groups = list(data.groupby("numerics", sort=True)) if "numerics" in data else [("", data)]
    for i, (numerics, part) in enumerate(groups):
        ax.scatter(part[x], part[y], s=40, edgecolors="black", marker=MARKERS[i % len(MARKERS)], label=numerics)
    if len(groups) > 1:
        ax.legend(title="precision/runtime per stage", fontsize=6, title_fontsize=6)


def name_points(ax, data, x, y):
    """Name the points; `_save` places the names where they collide with no other name or point."""
    pending = getattr(ax, "_pending_labels", [])
    pending += [(str(row["adaptation"]), row[x], row[y]) for row in data.to_dict("records")
                if pd.notna(row[x]) and pd.notna(row[y])]
    ax._pending_labels = pending


# where a name may go around its point, in points: right-above first, then the other corners and sides
OFFSETS = [(4, 3), (4, -9), (-4, 3), (-4, -9), (0, 7), (0, -13), (7, -3), (-7, -3)]
POINT_PX = 4.0  # half the side of the box a point's marker is taken to occupy


def place_labels(fig) -> dict[str, int]:
    """Place the pending names of every axes of `fig` (after its layout is final): each at the first offset where
    its box overlaps no placed name, no other point and not the legend, inside the axes; a name with no such place
    is left out (the report's interactive figure names it on hover). Returns {"placed": n, "left_out": m}."""
    from matplotlib.transforms import Bbox

    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    counts = {"placed": 0, "left_out": 0}
    for ax in fig.axes:
        pending = getattr(ax, "_pending_labels", [])
        if not pending:
            continue
        points = [ax.transData.transform((px, py)) for _, px, py in pending]
        boxes = [Bbox.from_extents(u - POINT_PX, v - POINT_PX, u + POINT_PX, v + POINT_PX) for u, v in points]
        frame = ax.get_window_extent(renderer)
        placed: list = [ax.get_legend().get_window_extent(renderer)] if ax.get_legend() else []
        for i, (name, px, py) in enumerate(pending):
            obstacles = placed + boxes[:i] + boxes[i + 1:]
            for dx, dy in OFFSETS:
                text = ax.annotate(name, (px, py), xytext=(dx, dy), textcoords="offset points", fontsize=6,
                                   alpha=0.85, ha="left" if dx >= 0 else "right")
                box = text.get_window_extent(renderer)
                inside = frame.x0 <= box.x0 and box.x1 <= frame.x1 and frame.y0 <= box.y0 and box.y1 <= frame.y1
                if inside and not any(box.overlaps(o) for o in obstacles):
                    placed.append(box)
                    counts["placed"] += 1
                    break
                text.remove()
            else:
                counts["left_out"] += 1
        ax._pending_labels = []
    return counts


def cost_vs_accuracy(summary: pd.DataFrame, folder: Path, note: str = "") -> list[Path]:
    paths = []
    fig, panels = _columns(summary)
    for hardware, ax in panels:
        data = summary[summary["hardware"] == hardware]
        points = ax.scatter(data["accuracy_reference"], data["cost_usd_per_1k"], c=data.get("sla_attainment"),
                            cmap="RdYlGn", vmin=0, vmax=1, s=60, edgecolors="black")
        _errorbars(ax, data, "accuracy_reference", "cost_usd_per_1k")
        name_points(ax, data, "accuracy_reference", "cost_usd_per_1k")
        ax.set(xlabel="accuracy (PAS)", ylabel="cost (USD per 1k requests)", title=f"{hardware}: colour = SLA attainment")
        fig.colorbar(points, ax=ax)
    paths.append(_save(fig, folder / "cost_vs_accuracy.png"))

    fig, panels = _columns(summary)
    for hardware, ax in panels:
        data = summary[summary["hardware"] == hardware]
        energy = data[ENERGY]
        size = 30 + 270 * (energy - energy.min()) / max(energy.max() - energy.min(), 1e-12)
        points = ax.scatter(data["accuracy_reference"], data["cost_usd_per_1k"], c=energy, s=size, cmap="viridis",
                            edgecolors="black")
        name_points(ax, data, "accuracy_reference", "cost_usd_per_1k")
        ax.set(xlabel="accuracy (PAS)", ylabel="cost (USD per 1k requests)",
               title=f"{hardware}: colour and size = J per request")
        fig.colorbar(points, ax=ax, label="J per request")
    paths.append(_save(fig, folder / "cost_vs_accuracy_energy.png", note))

    fig, panels = _columns(summary, projection="3d", height=5.0)
    for hardware, ax in panels:
        data = summary[summary["hardware"] == hardware]
        ax.scatter(data["accuracy_reference"], data["cost_usd_per_1k"], data[ENERGY], c=data[ENERGY], cmap="viridis")
        ax.set(xlabel="accuracy", ylabel="USD per 1k", zlabel="J per request", title=hardware)
    paths.append(_save(fig, folder / "accuracy_cost_energy_3d.png", note))
    return paths


def energy_versus(summary: pd.DataFrame, x: str, correlations: dict[str, Correlation | None], folder: Path,
                  note: str = "") -> Path:
    fig, panels = _columns(summary)
    for hardware, ax in panels:
        data = summary[summary["hardware"] == hardware]
        _scatter_by_numerics(ax, data, x, ENERGY)
        _errorbars(ax, data, x, ENERGY)
        name_points(ax, data, x, ENERGY)
        c = correlations.get(hardware)
        title = hardware if c is None else f"{hardware}: {c.text()}"
        ax.set(xlabel=axis_title(x), ylabel=axis_title(ENERGY))
        ax.set_title(title, fontsize=8)
    return _save(fig, folder / f"energy_vs_{x}.png", note)


def pareto_plot(summary: pd.DataFrame, without: dict[str, set[str]], with_energy: dict[str, set[str]],
                folder: Path, note: str = "") -> Path:
    fig, panels = _columns(summary)
    for hardware, ax in panels:
        data = summary[summary["hardware"] == hardware]
        base, extra = without.get(hardware, set()), with_energy.get(hardware, set()) - without.get(hardware, set())
        kinds = data["adaptation"].map(lambda a: "both" if a in base else ("energy" if a in extra else "none"))
        for kind, style in {"none": dict(c="lightgray"), "both": dict(c="tab:blue"),
                            "energy": dict(c="tab:green", marker="*", s=160)}.items():
            part = data[kinds == kind]
            label = {"none": "dominated", "both": "Pareto without energy", "energy": "Pareto only with energy"}[kind]
            ax.scatter(part["accuracy_reference"], part["latency_p99_s"], label=label, edgecolors="black",
                       **{"s": 50, **style})
        name_points(ax, data, "accuracy_reference", "latency_p99_s")
        ax.set(xlabel="accuracy (PAS)", ylabel="p99 latency (s)")
        ax.set_title(f"{hardware}: Pareto over accuracy, cost, p99 latency (+ energy)", fontsize=8)
        ax.legend(fontsize=7)
    return _save(fig, folder / "pareto_with_and_without_energy.png", note)


def carbon_bars(carbon: pd.DataFrame, folder: Path, note: str = "") -> Path:
    fig, ax = plt.subplots(figsize=(7, 3.8))
    labels = carbon["hardware"] + " · " + carbon["adaptation"]
    ax.barh(labels, carbon["emissions_g_per_1k"], color="tab:olive")
    ax.set(xlabel="g CO2e per 1k requests", title="emissions per 1k requests")
    return _save(fig, folder / "emissions_per_1k.png", note)


def _save(fig, path: Path, note: str = "") -> Path:
    """`note`: what in the figure is not a measurement, written on it (a PNG travels without the page's warnings)."""
    if note:
        fig.suptitle(f"⚠ {note}", fontsize=8, color="tab:red")
    fig.tight_layout()
    left_out = place_labels(fig)["left_out"]
    if left_out:
        fig.text(0.99, 0.005, f"{left_out} name(s) left out where they would overlap: hover the report's figure",
                 fontsize=6, ha="right", va="bottom", color="gray")
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
