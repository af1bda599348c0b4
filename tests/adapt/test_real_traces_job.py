"""`python src/adapt.py` on IPA's raw workload and a short grid export (issue 20, items 1-4): the capacity line before
the replay, the fill and the predictor recorded in the run, every interval counted; bad traces are one line."""

from __future__ import annotations

import pytest
from rich.console import Console

from sustainable_ipa.adapt.adapt_job import adapt_job
from sustainable_ipa.errors import UserError
from sustainable_ipa.schema import check_settings as validate
from test_adapt_job import TINY


def raw_workload(tmp_path, seconds: int = 3600):
    path = tmp_path / "workload.txt"
    path.write_text(" ".join(str(40 + (s // 600) * 5) for s in range(seconds)))  # 40, 45, … per second
    return path


def short_grid(tmp_path):
    path = tmp_path / "grid.csv"
    path.write_text("Datetime (UTC),Carbon intensity gCO₂eq/kWh (direct)\n"
                    "2025-06-01 00:00:00,300\n2025-06-01 00:15:00,200\n")  # covers 30 minutes
    return path


@pytest.mark.slow
def test_ipas_raw_trace_over_capacity_with_a_held_carbon_trace(make_cfg, client, tmp_path):
    console = Console(record=True, width=400)
    cfg = make_cfg(*TINY, f"profiling.cache_dir={tmp_path}/profiles", f"adapt.load={raw_workload(tmp_path)}",
                   f"adapt.carbon={short_grid(tmp_path)}", "adapt.fill=hold", "adapt.duration_s=3600",
                   "adapt.load_scale=100", "adapt.predictor=headroom", "adapt.plan_for=peak", "adapt.max_cores=4")
    table = adapt_job(cfg, console)
    out = console.export_text()
    # the carbon trace's fill is said, and the load (4,000-6,500 requests/s) is out of reach: one line before the replay
    assert "carbon trace grid: 1800 s of the span not covered, filled (hold)" in out
    assert "4 of 4 intervals (100%) ask for more" in out and out.index("capacity:") < out.index("policies on")
    [run] = client.search_runs([e.experiment_id for e in client.search_experiments()],
                               filter_string="tags.adaptation = 'adapt'")
    assert run.info.status == "FINISHED"
    assert run.data.params["adapt.fill"] == "hold" and run.data.tags["carbon_filled_s"] == "1800.0"
    assert run.data.tags["predictor"] == "headroom" and run.data.params["adapt.load_scale"] == "100"
    assert run.data.metrics["capacity_intervals_over_share"] == 1.0
    fitting = run.data.metrics["capacity_fitting_load_scale"]
    assert 0 < fitting < 100 * run.data.metrics["capacity_max_load_rps"] / 6500 * 1.0001
    # every interval is counted, with the most the space serves
    assert (table["intervals_over_capacity"] == 4).all() and (table["energy_j"] > 0).all()


def test_a_carbon_trace_that_does_not_cover_the_span_is_one_line_and_no_run(make_cfg, client, tmp_path):
    cfg = make_cfg(*TINY, f"adapt.load={raw_workload(tmp_path)}", f"adapt.carbon={short_grid(tmp_path)}",
                   "adapt.duration_s=3600")
    with pytest.raises(UserError, match=r"carbon trace .*grid.csv covers 1800 s from 2025-06-01T00:00:00Z but the "
                                        r"replay needs \[0, 3600\) s.*adapt.fill=hold"):
        adapt_job(cfg)
    # a load file shorter than the span asked for, likewise
    with pytest.raises(UserError, match=r"load trace .*workload.txt covers 3600 s but the replay needs "
                                        r"\[1800, 5400\) s"):
        adapt_job(make_cfg(*TINY, f"adapt.load={raw_workload(tmp_path)}", "adapt.duration_s=3600",
                           "adapt.start=1800"))
    assert all(not client.search_runs([e.experiment_id]) for e in client.search_experiments())


@pytest.mark.parametrize("override,problem", [
    ("adapt.trace_tz=Mars/Olympus", "adapt.trace_tz='Mars/Olympus' is not allowed: 'Mars/Olympus' is no IANA"),
    ("adapt.start=yesterday", "adapt.start='yesterday' is not allowed: seconds ≥ 0 .* or an ISO 8601 time"),
    ("adapt.fill=zero", "adapt.fill='zero' is not allowed"),
    ("adapt.predictor=lstm", "adapt.predictor='lstm' is not allowed: input should be 'last', 'headroom'"),
    ("adapt.load_scale=0", "adapt.load_scale=0 is not allowed"),
])
def test_bad_trace_settings_are_refused_by_the_schema(make_cfg, override, problem):
    with pytest.raises(UserError, match=problem):
        validate(make_cfg(override))
