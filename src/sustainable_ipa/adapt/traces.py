"""Load and carbon-intensity traces: CSV files (timestamp, value) or generated ones."""

from __future__ import annotations

import csv
import math
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import numpy as np

from sustainable_ipa.errors import UserError


@dataclass(frozen=True)
class Trace:
    """Values at times `t_s` (seconds from the trace's start); each holds until the next time."""

    name: str
    t_s: np.ndarray
    values: np.ndarray

    def at(self, t_s: float) -> float:
        index = int(np.searchsorted(self.t_s, t_s, side="right")) - 1
        return float(self.values[max(index, 0)])


def _time(text: str) -> float:
    try:
        return float(text)
    except ValueError:
        return datetime.fromisoformat(text.strip().replace("Z", "+00:00")).timestamp()


def read_trace(path: str | Path, value_columns: tuple[str, ...]) -> Trace:
    """A CSV whose first column is a timestamp (seconds or ISO 8601) and whose value is the first column named in
    `value_columns`, else the second column. Real exports with extra columns are accepted."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"trace file {path} does not exist", "pass an existing CSV (timestamp, value)")
    with open(path, newline="") as f:
        rows = list(csv.reader(f))
    if len(rows) < 2:
        raise UserError(f"trace {path} has no data rows", "give a header and at least one row: timestamp,value")
    header = [h.strip().lower() for h in rows[0]]
    column = next((header.index(c) for c in value_columns if c in header), 1 if len(header) > 1 else None)
    if column is None:
        raise UserError(f"trace {path} has a single column", f"add a value column ({', '.join(value_columns)})")
    times, values = [], []
    for number, row in enumerate(rows[1:], start=2):
        if not row or all(not cell.strip() for cell in row):
            continue
        try:
            t, v = _time(row[0]), float(row[column])
        except (ValueError, IndexError):
            raise UserError(f"trace {path} row {number} is malformed: {','.join(row)[:80]!r}",
                            f"each row needs a timestamp and a number in column '{rows[0][column]}'") from None
        if not math.isfinite(v) or v < 0:
            raise UserError(f"trace {path} row {number} has a negative or non-finite value {v}", "fix that row")
        if times and t <= times[-1]:
            raise UserError(f"trace {path} row {number}: timestamps must increase", "sort the file by time")
        times.append(t)
        values.append(v)
    t = np.array(times)
    return Trace(path.stem, t - t[0], np.array(values))


LOAD_COLUMNS = ("requests_per_s", "rps", "load_rps", "load")
CARBON_COLUMNS = ("carbon_intensity_g_per_kwh", "carbon_intensity_avg", "carbon_intensity", "gco2_per_kwh",
                  "carbon intensity gco₂eq/kwh (direct)", "carbon intensity gco₂eq/kwh (life cycle)")


def generate_load(kind: str, duration_s: float, step_s: float, mean_rps: float, seed: int = 0) -> Trace:
    t = np.arange(0.0, duration_s, step_s)
    rng = np.random.default_rng(seed)
    if kind == "steady":
        values = np.full(len(t), mean_rps)
    elif kind == "bursty":  # quiet most of the time, bursts of 3× the mean in one interval of eight
        values = np.where(rng.random(len(t)) < 0.125, 3.0 * mean_rps, 0.7 * mean_rps)
    elif kind == "diurnal":  # a day compressed into the trace: low at night, peak in the afternoon
        values = mean_rps * (1 + 0.6 * np.sin(2 * np.pi * (t / duration_s) - np.pi / 2))
    else:
        raise UserError(f"unknown load trace generator '{kind}'", "use steady, bursty, diurnal or a CSV path")
    return Trace(f"{kind}-load", t, values)


def generate_carbon(kind: str, duration_s: float, step_s: float, mean_g_per_kwh: float) -> Trace:
    t = np.arange(0.0, duration_s, step_s)
    if kind == "flat":
        values = np.full(len(t), mean_g_per_kwh)
    elif kind == "diurnal":  # solar-heavy grid: cleanest at midday (synthetic, for comparison only)
        values = mean_g_per_kwh * (1 + 0.4 * np.cos(2 * np.pi * (t / duration_s)))
    else:
        raise UserError(f"unknown carbon trace generator '{kind}'", "use flat, diurnal or a CSV path")
    return Trace(f"{kind}-carbon", t, values)
