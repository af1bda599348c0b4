"""Energy and carbon of one trial: every energy metric of the run record, defined here once.

Normalisation is per request served, never per batch: the proposal this project grew from divided total joules
by the batch size and concluded that bigger batches save energy.
"""

from __future__ import annotations

import math


def active_energy_j(total_j: float, idle_power_w: float, duration_s: float) -> float:
    """Measured energy minus the idle baseline over the same duration (not clamped: a noisy baseline shows)."""
    return total_j - idle_power_w * duration_s


def energy_metrics(total_j: float, domains_j: dict[str, float], duration_s: float, idle_power_w: float,
                   requests_served: int, latency_mean_s: float, stage_cpu_s: dict[str, float],
                   carbon_intensity_g_per_kwh: float, pue: float) -> dict[str, float]:
    """The trial's energy record from one measurement window around its measured requests.

    total_j: as measured over the window, idle included. Active energy subtracts the idle baseline over the same
    duration; it is not clamped at zero, so a noisy baseline shows instead of hiding. Machine-wide counters cannot
    tell two concurrently running stages apart, so stage energies split the active energy by `stage_cpu_s`: the CPU
    seconds the OS counted in each stage's worker processes (`TrialResult.stage_cpu_s`). The runner's own share
    (moving items between stages, in the parent) is split in the same proportion.
    """
    from sustainable_ipa.energy.carbon import emissions_g

    active_j = active_energy_j(total_j, idle_power_w, duration_s)
    per_request_j = active_j / requests_served
    busy = sum(stage_cpu_s.values())
    out = {
        "energy_j_total": total_j,
        "power_w_mean": total_j / duration_s if duration_s > 0 else float("nan"),
        "energy_j_active": active_j,
        "energy_j_static": idle_power_w * duration_s,  # the idle baseline's share of the window: total − active
        "energy_j_per_request": per_request_j,
        "idle_power_w": idle_power_w,
        "carbon_intensity_g_per_kwh": carbon_intensity_g_per_kwh,
        "emissions_g_total": emissions_g(total_j, carbon_intensity_g_per_kwh, pue),
        "emissions_g_per_1k": emissions_g(per_request_j * 1000.0, carbon_intensity_g_per_kwh, pue),
        "energy_delay_j_s": per_request_j * latency_mean_s,
    }
    for stage, cpu_s in stage_cpu_s.items():
        out[f"energy_{stage}_j"] = active_j * cpu_s / busy if busy > 0 else float("nan")
    for domain, joules in domains_j.items():
        out[f"energy_{domain}_j"] = joules
    return out


def idle_of(alternative, idle_power_w: float) -> float:
    """The idle baseline subtracted from one curve of a model's interval, where the window's figure has one
    subtracted at all (`energy.idle_s=0` subtracts none, under every curve): the curve's own static power, or in a
    composite (a measured idle baseline, the central curve's static power in it) that baseline moved by the
    difference between the two curves' static power."""
    if idle_power_w <= 0:
        return idle_power_w
    if alternative.static_w is not None:
        return alternative.static_w
    return idle_power_w + alternative.static_shift_w


def active_by_curve_j(measurement, idle_power_w: float) -> tuple[float, ...]:
    """A window's active energy under each curve of its model's interval, in the meter's order (empty for a
    measurement): summed over many windows curve by curve, then its least and most are the interval of the sum."""
    return tuple(active_energy_j(a.total_j, idle_of(a, idle_power_w), a.duration_s) for a in measurement.alternatives)


def active_energy_range_j(measurement, idle_power_w: float) -> tuple[float, float]:
    """The least and most active energy of a modelled window under the curves of its model's interval (the central
    one included); NaN for a measurement, which has no model interval."""
    if not measurement.alternatives:
        return math.nan, math.nan
    values = [active_energy_j(measurement.total_j, idle_power_w, measurement.duration_s),
              *active_by_curve_j(measurement, idle_power_w)]
    return min(values), max(values)


def window_energy_metrics(measurement, idle_power_w: float, requests_served: int, latency_mean_s: float,
                         stage_cpu_s: dict[str, float], carbon_intensity_g_per_kwh: float, pue: float) -> dict[str, float]:
    """`energy_metrics` of one measured window; where its energy is modelled (the estimate), each figure's model
    interval too: `<metric>_low` and `<metric>_high`, the least and most any curve of the model's interval gives
    (each with its own static power as the idle baseline, where a baseline is subtracted), and the energy per
    request under each of those curves, `energy_j_per_request_model_<curve>`."""
    def figures(m, idle_w: float) -> dict[str, float]:
        return energy_metrics(m.total_j, m.energy_j, m.duration_s, idle_w, requests_served, latency_mean_s,
                              stage_cpu_s, carbon_intensity_g_per_kwh, pue)

    central = figures(measurement, idle_power_w)
    if not measurement.alternatives:
        return central
    others = {a.model: figures(a, idle_of(a, idle_power_w)) for a in measurement.alternatives}
    out = dict(central)
    for name in central:
        if name != "carbon_intensity_g_per_kwh":
            values = [central[name], *(f[name] for f in others.values() if name in f)]
            out[f"{name}_low"], out[f"{name}_high"] = min(values), max(values)
    for model, f in others.items():  # the decision metric under each curve: a verdict per curve (report/analysis.py)
        out[f"{PER_MODEL}{model.replace('-', '_')}"] = f["energy_j_per_request"]
    return out


PER_MODEL = "energy_j_per_request_model_"


def codecarbon_metrics(codecarbon, ours) -> dict[str, float]:
    """CodeCarbon's figure for the same window beside this project's (`energy.compare=codecarbon`): its total and
    per-domain joules, and its total ÷ ours. Both are totals, idle included: CodeCarbon subtracts no baseline."""
    out = {"energy_j_total_codecarbon": codecarbon.total_j,
           **{f"energy_{d}_j_codecarbon": j for d, j in codecarbon.energy_j.items()}}
    if ours.total_j > 0:
        out["codecarbon_to_ours_ratio"] = codecarbon.total_j / ours.total_j
    return out


ENERGY_METRICS_FOR_CV = ("energy_j_total", "power_w_mean", "energy_j_active", "energy_j_per_request",
                         "emissions_g_total", "emissions_g_per_1k", "energy_delay_j_s")
