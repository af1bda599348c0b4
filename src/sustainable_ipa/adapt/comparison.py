"""Each policy against IPA's objective: one definition for the simulated comparison and the live one."""

from __future__ import annotations

import pandas as pd

# a saving is a fraction of IPA's figure (0.25: a quarter less; negative: more), not joules or grams
SAVED = {"energy_j": "energy_saved_fraction_vs_ipa", "emissions_g": "emissions_saved_fraction_vs_ipa"}


def against_ipa(table: pd.DataFrame, prefix: str = "") -> pd.DataFrame:
    """Adds to `table` (one row per policy, `ipa` among them) what each policy saves of IPA's energy and emissions,
    and the accuracy and SLA attainment it gives up; `prefix` picks a family of columns (`sim_`: the simulation's)."""
    base = table.loc["ipa"]
    for metric, saved in SAVED.items():
        reference = base[f"{prefix}{metric}"]
        table[f"{prefix}{saved}"] = 1 - table[f"{prefix}{metric}"] / reference if reference else 0.0
    for metric in ("accuracy_mean", "sla_attainment"):
        table[f"{prefix}{metric.removesuffix('_mean')}_given_up_vs_ipa"] = base[f"{prefix}{metric}"] - table[
            f"{prefix}{metric}"]
    return table
