"""The adaptation timeline: load, carbon intensity, the variants chosen per stage and power, one line per policy."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


# the first policy thick and pale, the next ones dashed and dotted on top: where they agree all stay visible
LINES = [dict(linewidth=4.0, alpha=0.35), dict(linewidth=1.6, linestyle="--"), dict(linewidth=1.2, linestyle=":")]


def timeline(runs: dict, path: Path) -> Path:
    first = next(iter(runs.values()))
    stages = [stage for stage, _ in first[0].stages]
    fig, axes = plt.subplots(3 + len(stages), 1, figsize=(8, 5 + 2 * len(stages)), sharex=True)
    hours = [i.t_s / 3600 for i in first]
    axes[0].step(hours, [i.load_rps for i in first], where="post", label="actual")
    axes[0].step(hours, [i.predicted_rps for i in first], where="post", linestyle="--", label="predicted")
    axes[0].set_ylabel("load (req/s)")
    axes[0].legend(fontsize=7)
    axes[1].step(hours, [i.carbon_intensity_g_per_kwh for i in first], where="post", color="tab:brown")
    axes[1].set_ylabel("gCO2/kWh")
    power = axes[-1]
    for n, (name, intervals) in enumerate(runs.items()):
        style = LINES[n % len(LINES)]  # policies that choose alike would hide each other in one style
        for k, stage in enumerate(stages):
            axes[2 + k].step(hours, [dict(i.stages)[stage] for i in intervals], where="post", label=name, **style)
        power.step(hours, [i.power_w for i in intervals], where="post", label=name, **style)
    for k, stage in enumerate(stages):
        axes[2 + k].set_ylabel(stage)
    power.set_ylabel("active power (W)")
    power.set_xlabel("hours")
    for ax in axes[2:]:
        ax.legend(fontsize=7)
        ax.tick_params(axis="y", labelsize=7)
    fig.suptitle("composed prediction: the profiles replayed by the simulator, not measured", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path
