"""The power time series of a run: CSV and a power-over-time plot."""

from __future__ import annotations

import csv
import io
from pathlib import Path

from sustainable_ipa.energy.measurement import PowerSample
from sustainable_ipa.energy.power_curve import LoadSample


def power_csv(samples: list[PowerSample], origin_s: float) -> str:
    domains = sorted({d for s in samples for d in s.power_w})
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(["time_s", *(f"{d}_w" for d in domains)])
    for s in samples:
        writer.writerow([f"{s.time_s - origin_s:.3f}", *(f"{s.power_w.get(d, float('nan')):.3f}" for d in domains)])
    return buffer.getvalue()


def load_csv(samples: list[LoadSample], origin_s: float) -> str:
    """The sampled load of a modelled window: apply any power curve to it later (`PowerCurve.energy_j`)."""
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(["time_s", "dt_s", "load", "run_share"])
    for s in samples:
        writer.writerow([f"{s.time_s - origin_s:.3f}", f"{s.dt_s:.4f}", f"{s.load:.4f}", f"{s.run_share:.4f}"])
    return buffer.getvalue()


def read_load_csv(text: str) -> list[LoadSample]:
    return [LoadSample(float(r["time_s"]), float(r["dt_s"]), float(r["load"]), float(r["run_share"]))
            for r in csv.DictReader(io.StringIO(text))]


def plot_power(samples: list[PowerSample], origin_s: float, path: Path, title: str, idle_power_w: float | None = None) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3.2))
    for domain in sorted({d for s in samples for d in s.power_w}):
        ax.plot([s.time_s - origin_s for s in samples], [s.power_w.get(domain, float("nan")) for s in samples],
                label=domain, marker=".")
    if idle_power_w is not None:
        ax.axhline(idle_power_w, color="gray", linestyle="--", label="idle baseline")
    ax.set_xlabel("time since start of the run (s)")
    ax.set_ylabel("power (W)")
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
