"""Traces read right (issue 20, items 1-2): times whatever the machine's zone, DST days, a moment picked inside a
longer export, spans a trace does not cover, gaps, IPA's raw counts, and the load aggregated over an interval."""

from __future__ import annotations

import os
import time

import numpy as np
import pytest

from sustainable_ipa.adapt.traces import (CARBON_COLUMNS, LOAD_COLUMNS, Trace, aggregate, open_trace, read_counts,
                                          read_trace, replay_window, served_requests)
from sustainable_ipa.adapt.optimizer import Weights
from sustainable_ipa.errors import UserError

ZONES = ["UTC", "Europe/Berlin", "America/New_York", "Australia/Lord_Howe"]  # Lord Howe: a half-hour DST shift


@pytest.fixture(params=ZONES)
def machine_zone(request):
    """The process runs in another local zone (as a machine set to it would)."""
    before = os.environ.get("TZ")
    os.environ["TZ"] = request.param
    time.tzset()
    yield request.param
    if before is None:
        os.environ.pop("TZ")
    else:
        os.environ["TZ"] = before
    time.tzset()


def hourly_export(tmp_path, day: str, stamp) -> os.PathLike:
    """An Electricity Maps-like export: 24 hourly rows of `day`, time written by `stamp(hour)`."""
    path = tmp_path / "grid.csv"
    rows = [f"{stamp(h)},DE,{100 + h}" for h in range(24)]
    path.write_text("Datetime (UTC),Zone,Carbon intensity gCO₂eq/kWh (direct)\n" + "\n".join(rows) + "\n")
    return path


@pytest.mark.parametrize("stamp", [lambda h: f"2025-03-30 {h:02d}:00:00",  # naive: UTC
                                   lambda h: f"2025-03-30T{h:02d}:00:00Z",
                                   lambda h: f"2025-03-30T{h:02d}:00:00+00:00"])
def test_a_spring_forward_day_reads_the_same_in_every_machine_zone(tmp_path, machine_zone, stamp):
    trace = read_trace(hourly_export(tmp_path, "2025-03-30", stamp), CARBON_COLUMNS)
    assert list(trace.t_s) == [3600.0 * h for h in range(24)]
    assert trace.origin_utc_s == 1743292800.0  # 2025-03-30T00:00Z, whatever the machine's zone


def test_a_zoned_export_across_a_dst_change_parses(tmp_path, machine_zone):
    # Berlin's clocks go from +01:00 to +02:00 at 02:00 local: 01:00+01:00 is followed by 03:00+02:00, one hour on
    stamps = ["2025-03-30T00:00:00+01:00", "2025-03-30T01:00:00+01:00", "2025-03-30T03:00:00+02:00",
              "2025-03-30T04:00:00+02:00"]
    path = tmp_path / "zoned.csv"
    path.write_text("datetime,carbon_intensity\n" + "\n".join(f"{s},{i}" for i, s in enumerate(stamps)) + "\n")
    assert list(read_trace(path, CARBON_COLUMNS).t_s) == [0.0, 3600.0, 7200.0, 10800.0]


def test_naive_times_in_a_zone_with_dst(tmp_path, machine_zone):
    # autumn: 02:00 comes twice in Berlin; the rows' order says which is which
    path = tmp_path / "autumn.csv"
    path.write_text("datetime,carbon_intensity\n2025-10-26 01:00,1\n2025-10-26 02:00,2\n2025-10-26 02:00,3\n"
                    "2025-10-26 03:00,4\n")
    assert list(read_trace(path, CARBON_COLUMNS, tz="Europe/Berlin").t_s) == [0.0, 3600.0, 7200.0, 10800.0]
    # spring: 02:30 does not exist in Berlin; the file and row are named
    path.write_text("datetime,carbon_intensity\n2025-03-30 01:30,1\n2025-03-30 02:30,2\n")
    with pytest.raises(UserError, match=r"autumn.csv row 3: the naive time 2025-03-30 02:30:00 does not exist"):
        read_trace(path, CARBON_COLUMNS, tz="Europe/Berlin")
    # the same file read as UTC (the default) is fine: 1 h apart
    assert list(read_trace(path, CARBON_COLUMNS).t_s) == [0.0, 3600.0]


def test_a_file_mixing_naive_and_zoned_times_names_the_row(tmp_path):
    path = tmp_path / "mixed.csv"
    path.write_text("datetime,carbon_intensity\n2025-01-01T00:00:00Z,1\n2025-01-01 01:00:00,2\n")
    with pytest.raises(UserError, match=r"mixed.csv row 3 mixes naive times with the zoned times"):
        read_trace(path, CARBON_COLUMNS)


def year_export(tmp_path) -> Trace:
    """Three days of hourly carbon intensity: the value is the hour of the export (0…71)."""
    path = tmp_path / "year.csv"
    path.write_text("datetime,carbon_intensity\n" + "\n".join(
        f"2025-01-{1 + h // 24:02d}T{h % 24:02d}:00:00Z,{h}" for h in range(72)) + "\n")
    return read_trace(path, CARBON_COLUMNS)


def load_export(tmp_path, start_day: int, hours: int) -> Trace:
    path = tmp_path / "load.csv"
    path.write_text("timestamp,requests_per_s\n" + "\n".join(
        f"2025-01-{start_day + h // 24:02d} {h % 24:02d}:00,{10 + h}" for h in range(hours)) + "\n")
    return read_trace(path, LOAD_COLUMNS)


def test_start_picks_the_moment_and_the_carbon_trace_follows_the_loads_dates(tmp_path):
    carbon = year_export(tmp_path)
    load = load_export(tmp_path, 2, 24)  # a load of 2025-01-02: the carbon trace is read at its moments
    _, carbon_cut, _, window = replay_window(load, carbon, None, "UTC", 6 * 3600, "error")
    assert carbon_cut.at(0) == 24 and carbon_cut.at(5 * 3600) == 29
    assert window.start_utc == "2025-01-02T00:00:00Z"
    # adapt.start as a time (naive: in adapt.trace_tz), or as seconds after the load's first row
    load_cut, carbon_cut, load_window, _ = replay_window(load, carbon, "2025-01-02T10:00", "UTC", 3600, "error")
    assert load_cut.at(0) == 20 and carbon_cut.at(0) == 34 and load_window.offset_s == 36000
    load_cut, carbon_cut, _, _ = replay_window(load, carbon, "2025-01-02T11:00", "Europe/Berlin", 3600, "error")
    assert load_cut.at(0) == 20 and carbon_cut.at(0) == 34  # 11:00 in Berlin is 10:00 UTC
    for zone in ("UTC", "Europe/Berlin"):  # a start with its own offset means that moment, whatever trace_tz says
        load_cut, carbon_cut, _, _ = replay_window(load, carbon, "2025-01-02T11:00+01:00", zone, 3600, "error")
        assert load_cut.at(0) == 20 and carbon_cut.at(0) == 34
    load_cut, carbon_cut, _, _ = replay_window(load, carbon, 7200, "UTC", 3600, "error")
    assert load_cut.at(0) == 12 and carbon_cut.at(0) == 26


def test_a_carbon_trace_shorter_than_the_span_is_one_line_or_a_chosen_fill(tmp_path):
    load = Trace("load", np.arange(0.0, 86400, 900), np.full(96, 5.0))
    short = read_trace(year_export(tmp_path).path, CARBON_COLUMNS)
    short = Trace("short", short.t_s[:3], short.values[:3], short.origin_utc_s, "short.csv")  # 3 hours
    with pytest.raises(UserError, match=r"carbon trace short.csv covers 10800 s from 2025-01-01T00:00:00Z but the "
                                        r"replay needs \[0, 86400\) s of it \(75600 s not covered\)"
                                        r".*adapt.fill=hold") as err:
        replay_window(load, short, None, "UTC", 86400, "error")
    assert "\n" not in str(err.value)
    _, held, _, window = replay_window(load, short, None, "UTC", 86400, "hold")
    assert held.at(80000) == 2 and window.filled_s == 75600 and window.fill == "hold"
    assert "75600 s of the span not covered, filled (hold)" in window.report("carbon")
    _, repeated, _, _ = replay_window(load, short, None, "UTC", 86400, "repeat")
    assert [repeated.at(h * 3600) for h in (0, 1, 2, 3, 4, 5, 23)] == [0, 1, 2, 0, 1, 2, 2]


def test_gaps_are_reported_and_hold_the_value_before_them(tmp_path):
    t = np.array([0.0, 60, 120, 180, 900, 960, 1020])  # 12 minutes missing after 180 s
    trace = Trace("gappy", t, np.arange(7.0), None, "gappy.csv")
    cut, _, window, _ = replay_window(trace, trace, None, "UTC", 1080, "error")
    assert (window.gaps, window.longest_gap_s, window.longest_gap_at_s) == (1, 720.0, 180.0)
    assert "1 gap(s), 720 s in all, the longest 720 s at +180 s" in window.report("load")
    assert cut.at(600) == 3.0


def test_ipas_raw_workload_is_read_and_scaled(tmp_path):
    path = tmp_path / "workload.txt"
    path.write_text("52 55 48\n55 57 56 40 ")
    trace = open_trace(path, LOAD_COLUMNS)
    assert list(trace.t_s) == [0, 1, 2, 3, 4, 5, 6] and list(trace.values) == [52, 55, 48, 55, 57, 56, 40]
    assert trace.origin_utc_s is None
    path.write_text("52 55\n48 x1 56")
    with pytest.raises(UserError, match=r"workload.txt line 2 value 2 \('x1'\) is not a count"):
        read_counts(path)


def test_an_interval_is_aggregated_over_its_span_not_sampled_at_its_start():
    # 10 rps for 10 s, then 40 rps for 5 s, then 0 for 15 s
    trace = Trace("burst", np.array([0.0, 10.0, 15.0]), np.array([10.0, 40.0, 0.0]))
    assert aggregate(trace, 0, 30) == (pytest.approx((100 + 200) / 30), 40.0)
    assert aggregate(trace, 5, 10) == (pytest.approx((50 + 200) / 10), 40.0)
    assert aggregate(trace, 15, 900) == (0.0, 0.0)  # past the last row its value holds
    assert served_requests(trace, 0, 30, 20.0) == (300.0, pytest.approx(100 + 100))  # 20 of the 40 rps served


def test_a_per_second_trace_and_its_interval_means_plan_the_same():
    rng = np.random.default_rng(0)
    seconds = rng.poisson(50, 3600).astype(float)
    fine = Trace("s", np.arange(3600.0), seconds)
    coarse = Trace("m", np.arange(0.0, 3600, 900), seconds.reshape(4, 900).mean(axis=1))
    assert [aggregate(fine, t, 900)[0] for t in range(0, 3600, 900)] == \
        pytest.approx([aggregate(coarse, t, 900)[0] for t in range(0, 3600, 900)])


def test_ipas_raw_counts_meet_a_dated_grid_export_at_a_moment_on_a_dst_day(make_cfg, tmp_path):
    """IPA's Twitter counts (no dates) replayed against a grid export in Berlin's wall-clock time over the spring DST
    change: the carbon trace is read from the moment adapt.start names, the load from its first row."""
    from sustainable_ipa.adapt.adapt_job import replay_traces
    from sustainable_ipa.adapt.simulate import Policy, simulate
    from test_optimizer import REFERENCE, random_instance

    grid = tmp_path / "grid.csv"  # 2025-03-30: 02:00 does not exist in Berlin (01:00 UTC is 03:00 CEST)
    grid.write_text("Datetime,Carbon intensity gCO₂eq/kWh (direct)\n" + "".join(
        f"2025-03-30 {h:02d}:00:00,{100 + h}\n" for h in range(9) if h != 2))
    twitter = "data/traces/twitter_ipa_6h.txt"
    cfg = make_cfg(f"adapt.load={twitter}", f"adapt.carbon={grid}", "adapt.trace_tz=Europe/Berlin",
                   "adapt.start=2025-03-30T01:30", "adapt.duration_s=10800", "adapt.step_s=1800",
                   "adapt.load_scale=0.125")
    replay = replay_traces(cfg)
    counts = np.loadtxt(twitter).ravel()
    assert replay.load.at(0) == counts[0] * 0.125 and replay.load.at(10799) == counts[10799] * 0.125
    assert replay.carbon_window.start_utc == "2025-03-30T00:30:00Z"  # 01:30 CET
    # half an hour later the clock has jumped: 03:00 CEST, never a 02:00 row
    assert [replay.carbon.at(t) for t in (0, 1799, 1800, 5399, 5400)] == [101, 101, 103, 103, 104]
    profiles, space = random_instance(0)
    intervals = simulate(Policy("ipa", Weights()), profiles, space, REFERENCE, replay.load, replay.carbon, 2.0, 16,
                         1800, span_s=replay.span_s)
    assert [i.carbon_intensity_g_per_kwh for i in intervals] == [101, 103, 103, 104, 104, 105]  # half-hours
    assert intervals[0].load_rps == pytest.approx(counts[:1800].mean() * 0.125)


def test_a_time_to_start_at_needs_a_trace_with_dates(make_cfg, tmp_path):
    from sustainable_ipa.adapt.adapt_job import replay_traces

    cfg = make_cfg("adapt.load=data/traces/twitter_ipa_6h.txt", "adapt.carbon=flat", "adapt.start=2025-03-30T01:30",
                   "adapt.duration_s=3600")
    with pytest.raises(UserError, match="adapt.start=2025-03-30T01:30 is a time but neither load trace "
                                        "data/traces/twitter_ipa_6h.txt nor carbon trace flat-carbon has dates"):
        replay_traces(cfg)
