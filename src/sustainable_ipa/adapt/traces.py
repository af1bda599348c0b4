"""Load and carbon-intensity traces: CSV exports (timestamp, value), IPA's raw workload file, or generated ones.

A trace is a step function: each row's value holds until the next row. Times:
- a CSV's timestamps are seconds (a number) or ISO 8601. Zoned times (`Z`, `+01:00`) are what they say; naive
  ones are read in `tz` (`adapt.trace_tz`, UTC by default), never in the machine's zone; a DST day in `tz` is
  placed by pandas (the repeated autumn hour inferred from the order of the rows, a spring hour that does not
  exist refused with its row).
- IPA's raw workload file (its `workload.txt`: one request count per second, whitespace-separated) has no times:
  value i holds over second i.

The replay picks its span out of each trace (`replay_window`): from `adapt.start` for `adapt.duration_s`; a trace
that does not cover it is refused in one line unless a fill policy says what to do (`adapt.fill`); gaps inside are
reported (`gaps`). Each decision interval's load is aggregated over the interval (`aggregate`: mean and peak), not
sampled at its start.
"""

from __future__ import annotations

import csv
import io
import math
import re
from dataclasses import dataclass, replace
from datetime import datetime, timezone
from pathlib import Path
from zoneinfo import ZoneInfo

import numpy as np

from sustainable_ipa.errors import UserError

FILLS = ("error", "hold", "repeat")  # adapt.fill: refuse a trace that does not cover the span, hold its edge, repeat it
GAP_FACTOR = 2.0  # a spacing between rows over this many times the trace's usual one is a gap


@dataclass(frozen=True)
class Trace:
    """Values at times `t_s` (seconds from the trace's first row); each holds until the next time.

    `origin_utc_s`: the UTC moment (Unix seconds) of `t_s = 0` when the file gave dates, else None (seconds, IPA's
    raw counts, generated traces). `path`: the file it was read from, None when generated."""

    name: str
    t_s: np.ndarray
    values: np.ndarray
    origin_utc_s: float | None = None
    path: str | None = None

    def at(self, t_s: float) -> float:
        index = int(np.searchsorted(self.t_s, t_s, side="right")) - 1
        return float(self.values[max(index, 0)])

    @property
    def spacing_s(self) -> float:
        """The usual time between rows (the median); a one-row trace has none (0)."""
        return float(np.median(np.diff(self.t_s))) if len(self.t_s) > 1 else 0.0

    @property
    def end_s(self) -> float:
        """Where the trace's last row stops holding: one usual spacing after it."""
        return float(self.t_s[-1]) + self.spacing_s


# Aggregation over an interval ------------------------------------------------------------------------------------
def _pieces(trace: Trace, start_s: float, length_s: float) -> tuple[np.ndarray, np.ndarray]:
    """The values holding inside [start, start + length) and for how many seconds each holds there."""
    end_s = start_s + length_s
    first = max(int(np.searchsorted(trace.t_s, start_s, side="right")) - 1, 0)
    last = max(int(np.searchsorted(trace.t_s, end_s, side="left")), first + 1)
    begins = np.maximum(trace.t_s[first:last], start_s)
    begins[0] = start_s  # before the first row the first value holds (as `at` reads it)
    ends = np.append(np.minimum(trace.t_s[first + 1:last], end_s), end_s)
    return trace.values[first:last], np.maximum(ends - begins, 0.0)


def aggregate(trace: Trace, start_s: float, step_s: float) -> tuple[float, float]:
    """(mean, peak) of the trace over [start_s, start_s + step_s): the time-weighted mean of the values holding
    there and the highest of them. In requests/s for a load trace."""
    values, held_s = _pieces(trace, start_s, step_s)
    mean = float(np.dot(values, held_s) / held_s.sum()) if held_s.sum() > 0 else float(values[0])
    return mean, float(values[held_s > 0].max() if (held_s > 0).any() else values[0])


def served_requests(trace: Trace, start_s: float, step_s: float, capacity_rps: float) -> tuple[float, float]:
    """(requests arriving, requests a capacity of `capacity_rps` serves) over [start_s, start_s + step_s): at each
    moment the load above the capacity is what goes unserved."""
    values, held_s = _pieces(trace, start_s, step_s)
    return float(np.dot(values, held_s)), float(np.dot(np.minimum(values, capacity_rps), held_s))


# Reading ---------------------------------------------------------------------------------------------------------
def _is_number(text: str) -> bool:
    try:
        float(text)
        return True
    except ValueError:
        return False


def _iso(text: str) -> datetime:
    return datetime.fromisoformat(text.strip().replace("Z", "+00:00"))


def utc_seconds(text: str, tz: str, path: str | Path = "adapt.start", row: int | None = None) -> float:
    """One ISO 8601 time as Unix seconds: zoned as it says, naive in `tz`. Used for `adapt.start`."""
    moment = _iso(text)
    if moment.tzinfo is not None:  # its own offset says when it is; `tz` is for naive times only
        return moment.timestamp()
    return float(_localized(path, [moment], [row or 0], tz)[0])


def _localized(path, naive: list[datetime], rows: list[int], tz: str) -> np.ndarray:
    """Naive wall-clock times in `tz` as Unix seconds (pandas places a DST day: the repeated hour by row order)."""
    import pandas as pd

    if tz in ("UTC", "Etc/UTC"):
        return np.array([d.replace(tzinfo=timezone.utc).timestamp() for d in naive])
    try:
        index = pd.DatetimeIndex(naive).tz_localize(ZoneInfo(tz), ambiguous="infer", nonexistent="raise")
    except Exception as err:  # pandas 2 raises pytz's errors, pandas 3 its own: told apart by name, not by module
        if type(err).__name__ not in ("NonExistentTimeError", "AmbiguousTimeError"):
            raise
        shown = next((r for r, d in zip(rows, naive) if str(d) in str(err)), None)
        where = f" row {shown}" if shown else ""
        kind = "does not exist (the clock skips it)" if type(err).__name__ == "NonExistentTimeError" else \
            "is ambiguous (the clock repeats it) and the rows do not tell which"
        raise UserError(f"trace {path}{where}: the naive time {err} {kind} in adapt.trace_tz={tz}",
                        "give the times with their offset (e.g. +01:00) or in UTC (adapt.trace_tz=UTC)") from None
    return index.asi8 / 1e9


def _text_of(path: Path) -> str:
    """The file's text; not UTF-8 is one line naming the file and where."""
    try:
        return path.read_text(encoding="utf-8")
    except UnicodeDecodeError as err:
        raise UserError(f"trace {path} is not UTF-8 text (byte {err.start})", "save it as UTF-8 (or ASCII)") from None


def read_trace(path: str | Path, value_columns: tuple[str, ...], tz: str = "UTC") -> Trace:
    """A CSV whose first column is a timestamp (seconds or ISO 8601; naive ones in `tz`) and whose value is the first
    column named in `value_columns`, else the second column. Real exports with extra columns are accepted."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"trace file {path} does not exist", "pass an existing CSV (timestamp, value)")
    rows = list(csv.reader(io.StringIO(_text_of(path), newline="")))
    if len(rows) < 2:
        raise UserError(f"trace {path} has no data rows", "give a header and at least one row: timestamp,value")
    header = [h.strip().lower() for h in rows[0]]
    column = next((header.index(c) for c in value_columns if c in header), 1 if len(header) > 1 else None)
    if column is None:
        raise UserError(f"trace {path} has a single column", f"add a value column ({', '.join(value_columns)})")
    stamps, values, numbers = [], [], []
    for number, row in enumerate(rows[1:], start=2):
        if not row or all(not cell.strip() for cell in row):
            continue
        try:
            stamp = float(row[0]) if _is_number(row[0]) else _iso(row[0])
            v = float(row[column])
        except (ValueError, IndexError):
            raise UserError(f"trace {path} row {number} is malformed: {','.join(row)[:80]!r}",
                            f"each row needs a timestamp and a number in column '{rows[0][column]}'") from None
        if not math.isfinite(v) or v < 0:
            raise UserError(f"trace {path} row {number} has a negative or non-finite value {v}", "fix that row")
        if isinstance(stamp, float) and not math.isfinite(stamp):
            raise UserError(f"trace {path} row {number} has the time {row[0].strip()!r}, not a finite number",
                            "give every row a time in seconds or ISO 8601")
        stamps.append(stamp)
        values.append(v)
        numbers.append(number)
    kinds = [("seconds" if isinstance(s, float) else "zoned" if s.tzinfo else "naive") for s in stamps]
    if len(set(kinds)) > 1:
        odd = next(n for n, k in zip(numbers, kinds) if k != kinds[0])
        raise UserError(f"trace {path} row {odd} mixes {dict(zip(numbers, kinds))[odd]} times with the "
                        f"{kinds[0]} times of the rows before it", "give every row's time the same way")
    if kinds[0] == "seconds":
        times, origin = np.array(stamps), None
    elif kinds[0] == "zoned":
        times = np.array([s.timestamp() for s in stamps])  # aware: no local zone involved
        origin = float(times[0])
    else:
        times = _localized(path, stamps, numbers, tz)
        origin = float(times[0])
    bad = np.flatnonzero(np.diff(times) <= 0)
    if bad.size:
        raise UserError(f"trace {path} row {numbers[bad[0] + 1]}: timestamps must increase", "sort the file by time")
    return Trace(path.stem, times - times[0], np.array(values, dtype=float), origin, str(path))


def is_counts(path: str | Path) -> bool:
    """Whether the file is IPA's raw workload format: numbers separated by whitespace, no commas, no header."""
    with open(path, "rb") as f:
        head = f.read(4096).decode("utf-8", errors="replace")  # not text: not counts (read_trace then says so)
    tokens = head.split()[:-1] or head.split()  # the last token may be cut by the 4 kB read
    return "," not in head and bool(tokens) and all(re.fullmatch(r"\d+(\.\d*)?", t) for t in tokens)


def read_counts(path: str | Path) -> Trace:
    """IPA's raw workload file: one request count per second, whitespace-separated (one line or many)."""
    path = Path(path)
    values = []
    for line_number, line in enumerate(_text_of(path).splitlines(), start=1):
        for position, token in enumerate(line.split(), start=1):
            try:
                v = float(token)
            except ValueError:
                v = math.nan
            if not math.isfinite(v) or v < 0:
                raise UserError(f"trace {path} line {line_number} value {position} ({token[:20]!r}) is not a "
                                "count", "IPA's raw format is non-negative counts, one per second, separated "
                                "by spaces or newlines")
            values.append(v)
    if not values:
        raise UserError(f"trace {path} is empty", "give one request count per second, separated by spaces")
    return Trace(path.stem, np.arange(len(values), dtype=float), np.array(values), None, str(path))


def open_trace(path: str | Path, value_columns: tuple[str, ...], tz: str = "UTC") -> Trace:
    """A trace file in whichever format it is: IPA's raw counts or a CSV."""
    if not Path(path).is_file():
        raise UserError(f"trace file {path} does not exist", "pass an existing CSV (timestamp, value) or IPA's raw "
                        "workload file, or a generator's name")
    return read_counts(path) if is_counts(path) else read_trace(path, value_columns, tz)


def scaled(trace: Trace, scale: float) -> Trace:
    """The trace with every value multiplied by `scale` (`adapt.load_scale`; IPA's damping factor 8 is 0.125)."""
    return trace if scale == 1 else replace(trace, values=trace.values * scale)


LOAD_COLUMNS = ("requests_per_s", "rps", "load_rps", "load")
CARBON_COLUMNS = ("carbon_intensity_g_per_kwh", "carbon_intensity_avg", "carbon_intensity", "gco2_per_kwh",
                  "carbon intensity gco₂eq/kwh (direct)", "carbon intensity gco₂eq/kwh (life cycle)")


# The replayed span -----------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Window:
    """How a trace was cut to the replay: its own seconds where the replay starts, how much of the span it covers
    and how much was filled (`adapt.fill`), and the gaps inside."""

    trace: str
    offset_s: float
    start_utc: str | None  # the moment the replay starts at in this trace, when it has dates
    covered_s: float
    filled_s: float
    fill: str
    gaps: int
    gap_s: float
    longest_gap_s: float
    longest_gap_at_s: float  # replay seconds

    def tags(self, prefix: str) -> dict[str, str]:
        return {f"{prefix}_{k}": str(v) for k, v in self.__dict__.items() if k != "trace"}

    def report(self, kind: str) -> str | None:
        """One line when something was filled or there are gaps; None when the trace is whole."""
        parts = []
        if self.filled_s > 0:
            parts.append(f"{self.filled_s:.0f} s of the span not covered, filled ({self.fill})")
        if self.gaps:
            parts.append(f"{self.gaps} gap(s), {self.gap_s:.0f} s in all, the longest {self.longest_gap_s:.0f} s at "
                         f"+{self.longest_gap_at_s:.0f} s (each holds the value before it)")
        return f"{kind} trace {self.trace}: " + "; ".join(parts) if parts else None


def gaps(trace: Trace, start_s: float, end_s: float) -> list[tuple[float, float]]:
    """(at, length) in seconds of the spacings inside [start_s, end_s) over GAP_FACTOR × the trace's usual one."""
    if len(trace.t_s) < 3:
        return []
    d = np.diff(trace.t_s)
    inside = (trace.t_s[:-1] >= start_s) & (trace.t_s[:-1] < end_s) & (d > GAP_FACTOR * trace.spacing_s)
    return [(float(t), float(g)) for t, g in zip(trace.t_s[:-1][inside], d[inside])]


def _utc_text(seconds: float) -> str:
    return datetime.fromtimestamp(seconds, timezone.utc).isoformat().replace("+00:00", "Z")


def cut(trace: Trace, offset_s: float, span_s: float, fill: str, kind: str, fix: str) -> tuple[Trace, Window]:
    """The trace re-based so that its second `offset_s` is the replay's 0, over [0, span_s): refused in one line
    when it does not cover that, unless `fill` is `hold` (the edge values hold) or `repeat` (the trace wraps)."""
    start_covered, end_covered = max(0.0, offset_s), min(trace.end_s, offset_s + span_s)
    covered = max(end_covered - start_covered, 0.0)
    missing = span_s - covered
    if missing > 1e-6 and fill == "error":
        where = f"from {_utc_text(trace.origin_utc_s)} " if trace.origin_utc_s is not None else ""
        raise UserError(f"{kind} trace {trace.path or trace.name} covers {trace.end_s:.0f} s {where}but the replay "
                        f"needs [{offset_s:.0f}, {offset_s + span_s:.0f}) s of it ({missing:.0f} s not covered)",
                        f"{fix}, or choose a fill policy: adapt.fill=hold (hold the edge values) or adapt.fill=repeat")
    t, v = trace.t_s, trace.values
    if fill == "repeat" and missing > 1e-6:
        period = trace.end_s if trace.end_s > 0 else 1.0
        first, last = math.floor(offset_s / period), math.floor((offset_s + span_s) / period)
        t = np.concatenate([trace.t_s + k * period for k in range(first, last + 1)])
        v = np.tile(trace.values, last - first + 1)
    keep = max(int(np.searchsorted(t, offset_s, side="right")) - 1, 0)
    rebased = replace(trace, t_s=t[keep:] - offset_s, values=v[keep:])
    found = gaps(trace, offset_s, offset_s + span_s)
    longest = max(found, key=lambda g: g[1], default=(offset_s, 0.0))
    start_utc = _utc_text(trace.origin_utc_s + offset_s) if trace.origin_utc_s is not None else None
    return rebased, Window(trace.name, offset_s, start_utc, covered, max(missing, 0.0), fill, len(found),
                           sum(g for _, g in found), longest[1], longest[0] - offset_s)


def replay_window(load: Trace, carbon: Trace, start: float | str | None, tz: str, span_s: float,
                  fill: str) -> tuple[Trace, Trace, Window, Window]:
    """Both traces cut to the replayed span, re-based to its start.

    `start` (`adapt.start`): None, the load trace's first row; a number, seconds after it; an ISO time (naive in
    `tz`), that moment in a trace with dates. The carbon trace is read at the same moments when both traces have
    dates; a load without dates (IPA's raw counts) meets a dated carbon trace at the time `start` names, from the
    load's first row; otherwise the carbon trace is aligned on its first row like the load (seconds after it).
    Generated traces are made for the span and start at its start."""
    load_offset = 0.0
    if load.path is not None and start is not None:
        if not (isinstance(start, str) and not _is_number(start)):
            load_offset = float(start)
        elif load.origin_utc_s is not None:
            load_offset = utc_seconds(start, tz) - load.origin_utc_s
        elif carbon.path is None or carbon.origin_utc_s is None:
            raise UserError(f"adapt.start={start} is a time but neither load trace {load.path} nor carbon trace "
                            f"{carbon.path or carbon.name} has dates", "give adapt.start in seconds from the "
                            "trace's first row, or a carbon trace with dates to read from that moment")
    carbon_offset = 0.0
    if carbon.path is not None:
        if carbon.origin_utc_s is not None and load.origin_utc_s is not None:
            carbon_offset = load.origin_utc_s + load_offset - carbon.origin_utc_s
        elif isinstance(start, str) and not _is_number(start) and carbon.origin_utc_s is not None:
            carbon_offset = utc_seconds(start, tz) - carbon.origin_utc_s
        else:
            carbon_offset = load_offset
    fix = f"pick a span inside it (adapt.start, adapt.duration_s={span_s:g})"
    load_cut, load_window = cut(load, load_offset, span_s, fill, "load", fix)
    carbon_cut, carbon_window = cut(carbon, carbon_offset, span_s, fill, "carbon", fix)
    return load_cut, carbon_cut, load_window, carbon_window


# Generated traces ------------------------------------------------------------------------------------------------
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
        raise UserError(f"unknown load trace generator '{kind}'", "use steady, bursty, diurnal or a trace file path")
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


LOAD_GENERATORS = ("steady", "bursty", "diurnal")
CARBON_GENERATORS = ("flat", "diurnal")
