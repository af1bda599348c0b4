"""The live loop's timeline: per interval, live (measured) beside the simulator's prediction, one colour per policy."""

from __future__ import annotations

from pathlib import Path

import matplotlib
import pandas as pd

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def live_timeline(intervals: pd.DataFrame, path: Path, energy_source: str) -> Path:
    """Load (trace and observed), SLA attainment and active energy per interval; solid: measured live, dashed:
    the simulator's composed prediction; a dot where the live pipeline switched configuration."""
    fig, axes = plt.subplots(3, 1, figsize=(8, 7.5), sharex=True)
    colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]

    def steps(ax, k, values, **style):  # each interval drawn over its whole width, the last one included
        ax.step([*k, k.iloc[-1] + 1], [*values, values.iloc[-1]], where="post", **style)

    for colour, (policy, rows) in zip(colours, intervals.groupby("policy", sort=False)):
        k = rows["interval"]
        steps(axes[0], k, rows["observed_rps"], color=colour, label=f"{policy} observed")
        for ax, name in ((axes[1], "sla_attainment"), (axes[2], "energy_j")):
            steps(ax, k, rows[name], color=colour, label=f"{policy} live (measured)")
            steps(ax, k, rows[f"sim_{name}"], color=colour, linestyle="--", label=f"{policy} simulated (composed)")
            switched = rows[rows["switched"]]
            ax.plot(switched["interval"] + 0.5, switched[name], "o", color=colour, markersize=4)
    first = intervals[intervals["policy"] == intervals["policy"].iloc[0]]
    steps(axes[0], first["interval"], first["load_rps"], color="black", label="trace (interval mean)")
    axes[0].set_ylabel("load (req/s)")
    axes[1].set_ylim(-0.03, 1.03)
    axes[1].set_ylabel("SLA attainment")
    axes[2].set_ylabel(f"active energy (J)\n{energy_source}")
    axes[2].set_xlabel("interval (dots: a switch)")
    for ax in axes:
        ax.legend(fontsize=6, ncol=2)
    fig.suptitle("live loop vs simulator, per interval", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path
