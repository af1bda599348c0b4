"""The adaptation timeline: load, carbon intensity, chosen variants and power, one line per policy."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def timeline(runs: dict, path: Path) -> Path:
    fig, axes = plt.subplots(5, 1, figsize=(8, 9), sharex=True)
    first = next(iter(runs.values()))
    hours = [i.t_s / 3600 for i in first]
    axes[0].step(hours, [i.load_rps for i in first], where="post", label="actual")
    axes[0].step(hours, [i.predicted_rps for i in first], where="post", linestyle="--", label="predicted")
    axes[0].set_ylabel("load (req/s)")
    axes[0].legend(fontsize=7)
    axes[1].step(hours, [i.carbon_intensity_g_per_kwh for i in first], where="post", color="tab:brown")
    axes[1].set_ylabel("gCO2/kWh")
    for name, intervals in runs.items():
        axes[2].step(hours, [i.detector for i in intervals], where="post", label=name)
        axes[3].step(hours, [i.classifier for i in intervals], where="post", label=name)
        axes[4].step(hours, [i.power_w for i in intervals], where="post", label=name)
    axes[2].set_ylabel("detector")
    axes[3].set_ylabel("classifier")
    axes[4].set_ylabel("active power (W)")
    axes[4].set_xlabel("hours")
    for ax in axes[2:]:
        ax.legend(fontsize=7)
        ax.tick_params(axis="y", labelsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path
