"""Carbon in relatable terms: per 1k requests, per year at a request rate, equivalents, other regions."""

from __future__ import annotations

import pandas as pd

from sustainable_ipa.energy.carbon import country_intensity_g_per_kwh, emissions_g

SECONDS_PER_YEAR = 365 * 24 * 3600
# US EPA Greenhouse Gas Equivalencies Calculator (2024 edition): grams of CO2 per unit.
EQUIVALENTS_G = {
    "miles driven by an average gasoline passenger vehicle": 393.0,
    "smartphones charged": 8.22,
}
EQUIVALENTS_SOURCE = "US EPA Greenhouse Gas Equivalencies Calculator, https://www.epa.gov/energy/greenhouse-gas-equivalencies-calculator"


def carbon_table(summary: pd.DataFrame, request_rate_rps: float, pue: float) -> pd.DataFrame:
    """Per adaptation: g per 1k requests (as measured), kg per year at `request_rate_rps`, and equivalents."""
    rows = []
    for row in summary.to_dict("records"):
        per_1k = row.get("emissions_g_per_1k")
        if per_1k is None or pd.isna(per_1k):
            continue
        per_year_g = per_1k / 1000.0 * request_rate_rps * SECONDS_PER_YEAR
        out = {"hardware": row["hardware"], "adaptation": row["adaptation"], "emissions_g_per_1k": per_1k,
               "emissions_kg_per_year": per_year_g / 1000.0}
        for name, grams in EQUIVALENTS_G.items():
            out[f"per year: {name}"] = per_year_g / grams
        rows.append(out)
    return pd.DataFrame(rows)


def regions_table(summary: pd.DataFrame, countries: list[str], request_rate_rps: float, pue: float) -> pd.DataFrame:
    """The same active energy per request in other countries (CodeCarbon's offline table), kg CO2 per year."""
    rows = []
    intensities = {c: country_intensity_g_per_kwh(c) for c in countries}
    for row in summary.to_dict("records"):
        energy = row.get("energy_j_per_request")
        if energy is None or pd.isna(energy):
            continue
        joules_per_year = energy * request_rate_rps * SECONDS_PER_YEAR
        rows.append({"hardware": row["hardware"], "adaptation": row["adaptation"],
                     **{f"{c} ({intensities[c]:.0f} g/kWh)": emissions_g(joules_per_year, intensities[c], pue) / 1000.0
                        for c in countries}})
    return pd.DataFrame(rows)
