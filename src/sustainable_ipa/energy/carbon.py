"""Carbon intensity of the configured region, from CodeCarbon's offline tables, and emissions from energy."""

from __future__ import annotations

from functools import lru_cache

from sustainable_ipa.errors import UserError

J_PER_KWH = 3.6e6
G_PER_LB = 453.59237


def emissions_g(energy_j: float, carbon_intensity_g_per_kwh: float, pue: float = 1.0) -> float:
    """Grams of CO2-equivalent for `energy_j` at the machine, scaled by the site's PUE."""
    return energy_j * pue / J_PER_KWH * carbon_intensity_g_per_kwh


@lru_cache(maxsize=None)
def _country_table() -> dict:
    from codecarbon.input import DataSource

    return DataSource().get_global_energy_mix_data()


def country_intensity_g_per_kwh(country_iso_code: str) -> float:
    table = _country_table()
    entry = table.get(str(country_iso_code).upper())
    if entry is None or entry.get("carbon_intensity") is None:
        raise UserError(f"CodeCarbon has no carbon intensity for country '{country_iso_code}'",
                        "pass hardware.carbon.country_iso_code=<ISO 3166 alpha-3, e.g. USA, FRA, DEU> or "
                        "energy.carbon_intensity_g_per_kwh=<g/kWh>")
    return float(entry["carbon_intensity"])


def region_intensity_g_per_kwh(country_iso_code: str, region: str) -> float:
    from codecarbon.input import DataSource

    try:
        table = DataSource().get_country_emissions_data(str(country_iso_code).lower())
    except Exception:
        raise UserError(f"CodeCarbon has no regional data for '{country_iso_code}'",
                        "set hardware.carbon.region=null or energy.carbon_intensity_g_per_kwh") from None
    entry = table.get(str(region).lower())
    unit = table.get("_unit", {}).get("emissions", "")
    if entry is None:
        regions = ", ".join(k for k in table if not k.startswith("_"))
        raise UserError(f"unknown region '{region}' for {country_iso_code}", f"choose one of {regions[:300]}")
    if unit != "lbs/MWh":  # the only unit CodeCarbon's regional tables use today; refuse to guess another
        raise UserError(f"CodeCarbon's regional table for {country_iso_code} is in '{unit}'",
                        "pass energy.carbon_intensity_g_per_kwh=<g/kWh>")
    return float(entry["emissions"]) * G_PER_LB / 1000.0  # lbs/MWh → g/kWh


def carbon_intensity_g_per_kwh(explicit: float | None, country_iso_code: str, region: str | None) -> float:
    """The explicit figure when given, else CodeCarbon's regional or national annual average."""
    if explicit is not None:
        if explicit < 0:
            raise UserError(f"energy.carbon_intensity_g_per_kwh must be ≥ 0, got {explicit}", "pass a value in g/kWh")
        return float(explicit)
    if region:
        return region_intensity_g_per_kwh(country_iso_code, region)
    return country_intensity_g_per_kwh(country_iso_code)
