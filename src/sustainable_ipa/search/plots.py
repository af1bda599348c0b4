"""Study plots, written as PNG files: Pareto front projections (2-D pairs and 3-D) and hypervolume history."""

from __future__ import annotations

import itertools
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only, no display
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import optuna  # noqa: E402

from sustainable_ipa.search.configurations import configuration_means, configurations_pareto  # noqa: E402
from sustainable_ipa.search.hypervolume import hypervolume_history, reference_point  # noqa: E402


def plotted_points(study: optuna.Study):
    """One point per configuration, as the tables list them: the mean of its runs (`configurations.py`)."""
    means = configuration_means(study)
    best = {t.number for t in configurations_pareto(study)}
    feasible = [all(v <= 0 for v in t.constraints.values()) for t in means]
    return (np.array([t.values for t in means]), np.array([t.number in best for t in means], dtype=bool),
            np.array(feasible, dtype=bool), [t.number for t in means])


def plot_pareto(study: optuna.Study, names: list[str], folder: Path,
                labels: dict[int, str] | None = None) -> list[Path]:
    """`labels`: trial number → text written beside its point of the Pareto set (the stages' precision/runtime)."""
    values, best, feasible, numbers = plotted_points(study)
    paths = []
    if len(values) == 0:
        return paths
    for i, j in itertools.combinations(range(len(names)), 2):
        fig, ax = plt.subplots(figsize=(5, 4))
        ax.scatter(values[~feasible, i], values[~feasible, j], c="lightgray", marker="x", label="misses the SLA")
        ax.scatter(values[feasible & ~best, i], values[feasible & ~best, j], c="tab:blue", alpha=0.5,
                   label="configuration")
        ax.scatter(values[best, i], values[best, j], c="tab:red", label="Pareto set")
        for k in np.flatnonzero(best) if labels else ():
            ax.annotate(labels.get(numbers[k], ""), (values[k, i], values[k, j]), fontsize=5, alpha=0.8,
                        xytext=(3, 3), textcoords="offset points")
        ax.set_xlabel(names[i])
        ax.set_ylabel(names[j])
        ax.legend(fontsize=7)
        fig.tight_layout()
        paths.append(folder / f"pareto_{names[i]}_vs_{names[j]}.png")
        fig.savefig(paths[-1], dpi=110)
        plt.close(fig)
    if len(names) >= 3:
        fig = plt.figure(figsize=(6, 5))
        ax = fig.add_subplot(projection="3d")
        ax.scatter(*(values[feasible & ~best, k] for k in range(3)), c="tab:blue", alpha=0.4, label="configuration")
        ax.scatter(*(values[best, k] for k in range(3)), c="tab:red", label="Pareto set")
        ax.set_xlabel(names[0])
        ax.set_ylabel(names[1])
        ax.set_zlabel(names[2])
        ax.legend(fontsize=7)
        paths.append(folder / "pareto_3d.png")
        fig.savefig(paths[-1], dpi=110)
        plt.close(fig)
    return paths


def plot_hypervolume(study: optuna.Study, folder: Path, reference: np.ndarray | None = None) -> Path:
    values, _, feasible, _ = plotted_points(study)
    directions = [d.name.lower() for d in study.directions]
    reference = reference if reference is not None else reference_point(values[feasible], directions)
    history = hypervolume_history(values, feasible, directions, reference)
    fig, ax = plt.subplots(figsize=(5, 3.5))
    ax.plot(np.arange(1, len(history) + 1), history)
    ax.set_xlabel("configurations evaluated")
    ax.set_ylabel("hypervolume of the feasible Pareto set")
    fig.tight_layout()
    path = folder / "hypervolume_history.png"
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
