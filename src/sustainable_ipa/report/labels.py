"""What kind of figures a report shows: measured or composed, metered or estimated energy, under which load.

The warnings are printed on the console and at the top of the page; the notes repeat them in every section that
shows the figures concerned, so that a section (or a figure saved from it) does not pass for a measurement.
"""

from __future__ import annotations

import html

import pandas as pd

from sustainable_ipa.pipeline.load import OFFLINE_NOTE
from sustainable_ipa.report.analysis import MEASURED

COMPOSED = "profile"
ESTIMATE = "estimate"
OFFLINE = "offline"

ESTIMATE_NOTE = ("energy from energy_source=estimate is a model, not a measurement: a power curve of this CPU from "
                 "reference data (tag power_model; Boavizta's by default) applied to the sampled load, with the "
                 "range of the reference data as *_low … *_high (power_model=constants has none and follows CPU "
                 "time, hence cost and latency, by construction)")
AXES = {"accuracy_reference": "accuracy (PAS)", "cost_usd_per_1k": "cost (USD per 1k requests)",
        "latency_p99_s": "p99 latency (s)", "energy_j_per_request": "energy per request (J, idle-subtracted)"}


def axis_title(metric: str) -> str:
    """A metric's axis title in words with its unit; the metric's own name where none is written."""
    return AXES.get(metric, metric)


COMPOSED_NOTE = ("figures of evaluator=profile trials are composed from stage profiles (search/compose.py): "
                 "predictions of the model, not measurements, and without an interval")


def _count(frame: pd.DataFrame, column: str, test) -> int:
    return int(frame[column].astype(str).map(test).sum()) if column in frame else 0


def _names(label: str) -> list[str]:
    """The names in one label: trials and summaries join several with ',' (a composed trial takes each stage
    profile's meter), composite meters with '+' (`nvml+rapl`)."""
    return label.replace(",", "+").split("+")


def _has(frame: pd.DataFrame, column: str, value: str) -> bool:
    return _count(frame, column, lambda label: value in _names(label)) > 0


def warnings(trials: pd.DataFrame) -> list[str]:
    """One line per kind of figure that is not a plain measurement, naming how many trials it concerns."""
    n = len(trials)
    out = []
    composed = _count(trials, "evaluator", lambda e: e == COMPOSED)
    if composed:
        out.append(f"{composed} of {n} trials are composed, not measured: {COMPOSED_NOTE}")
    unknown = _count(trials, "evaluator", lambda e: e not in (COMPOSED, MEASURED))
    if unknown:
        out.append(f"{unknown} of {n} trials carry no evaluator tag (a store older than the tag): whether their "
                   "figures are composed from profiles or measured is unknown")
    estimated = _count(trials, "energy_source", lambda label: ESTIMATE in _names(label))
    if estimated:
        out.append(f"{estimated} of {n} trials have estimated energy: {ESTIMATE_NOTE}; correlations with cost or "
                   "latency say nothing about measured power. Measure with RAPL or NVML for that")
    offline = _count(trials, "load", lambda load: load == OFFLINE)
    if offline:
        out.append(f"{offline} of {n} trials ran with trial.load=offline: {OFFLINE_NOTE}")
    return out


def figure_note(summary: pd.DataFrame) -> str:
    """Which figures of `summary` are not measurements, short enough for a figure's title (figures also travel as
    PNG files of their own); empty when all are measured."""
    kinds = [("composed from profiles, not measured", _has(summary, "evaluator", COMPOSED)),
             ("energy estimated from CPU time, not measured", _has(summary, "energy_source", ESTIMATE))]
    return "; ".join(kind for kind, shown in kinds if shown)


def section_note(summary: pd.DataFrame) -> str:
    """The same at the top of each section of the page that shows such figures."""
    note = figure_note(summary)
    return f'<p class="warn">⚠ {html.escape(note)} (see the warnings at the top).</p>' if note else ""
