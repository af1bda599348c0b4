"""Predictors on a synthetic burst, and the capacity line (issue 20, items 3-4)."""

from __future__ import annotations

import numpy as np
import pytest

from sustainable_ipa.adapt.capacity import capacity, max_load_rps
from sustainable_ipa.adapt.forecast import Headroom, Last, Learned, make_predictor
from sustainable_ipa.adapt.optimizer import Weights
from sustainable_ipa.adapt.simulate import Policy, interval_loads, simulate, totals
from sustainable_ipa.adapt.traces import Trace
from sustainable_ipa.search.profiles import ProfileTable, StageProfile
from test_optimizer import REFERENCE, random_instance

QUIET, BURST = 8.0, 24.0
# eight quiet intervals, then two of a burst, three times over
BURSTY = [QUIET] * 8 + [BURST] * 2 + [QUIET] * 8 + [BURST] * 2 + [QUIET] * 8 + [BURST] * 2


def test_each_predictor_on_a_burst():
    seen = BURSTY[:13]  # the first burst and three quiet intervals since
    assert Last().predict(seen) == QUIET
    assert Headroom(window=12, quantile=0.95).predict(seen) == BURST  # the burst is inside its window
    assert Headroom(window=3, quantile=0.95).predict(seen) == QUIET  # ... and forgotten once out of it
    assert Headroom(window=24, quantile=0.95).predict([QUIET] * 20 + [BURST]) == BURST  # a rise followed at once
    ramp = [10.0 + 2 * i for i in range(12)]
    assert Learned("ets").predict(ramp) == pytest.approx(34.0, rel=0.02)  # a trend is carried on, not held
    assert Learned("arima").predict(ramp) == pytest.approx(34.0, rel=0.02)
    noisy = list(np.random.default_rng(0).normal(20.0, 2.0, 30))
    assert Learned("ets", level=90).predict(noisy) > Learned("ets").predict(noisy)  # the upper bound
    assert make_predictor("ets", level=90).name == "ets-hi90"
    with pytest.raises(ValueError):
        Last().predict([])


@pytest.mark.slow
def test_headroom_keeps_the_sla_through_bursts_that_the_last_value_misses():
    profiles, space = random_instance(3)
    load = Trace("bursty", np.arange(len(BURSTY)) * 300.0, np.array(BURSTY))
    carbon = Trace("flat", np.array([0.0]), np.array([300.0]))
    policy = Policy("energy", Weights(alpha=50.0, beta=0.2, delta=1.0))
    runs = {p.name: simulate(policy, profiles, space, REFERENCE, load, carbon, 2.0, 16, 300, predictor=p)
            for p in (Last(), Headroom(window=12, quantile=0.95), Learned("ets", window=12))}
    last, headroom = totals(runs["last"]), totals(runs["headroom"])
    # the last value plans each burst's first interval for the quiet load; headroom plans for bursts seen lately
    assert [i.predicted_rps for i in runs["last"]][8:10] == [QUIET, BURST]
    assert all(i.predicted_rps == BURST for i in runs["headroom"][10:])  # once two burst intervals are in its window
    assert headroom["sla_attainment"] > last["sla_attainment"] and headroom["energy_j"] > last["energy_j"]
    assert totals(runs["ets"])["forecast_ms_max"] > 0  # the forecaster's time is measured apart from the decision


def two_stage_profiles() -> tuple[ProfileTable, dict]:
    """One option per stage: the detector serves 10 frames/s a core, the classifier 40 crops/s a core, 3 crops a
    frame (13.3 requests/s a core)."""
    rows = [StageProfile("detector", "yolov5n", 1, 1, (0.1,) * 20, 1.0, "estimate"),
            StageProfile("classifier", "resnet18", 4, 1, (0.1,) * 20, 0.1, "estimate")]
    space = {"detector": {"variants": ["yolov5n"], "batch_size": [1], "threads": [1]},
             "classifier": {"variants": ["resnet18"], "batch_size": [4], "threads": [1]}}
    return ProfileTable(rows, "cpu", {"detector": (1,), "classifier": (3,)}), space


def test_the_capacity_line_names_the_ceiling_the_share_above_it_and_the_scale_that_fits():
    profiles, space = two_stage_profiles()
    # on 4 cores: 2 + 2 serve min(20, 26.7) = 20 requests/s; 3 + 1 serve min(30, 13.3); 1 + 3 serve min(10, 40)
    ceiling = max(min(10.0 * c, 40.0 / 3 * (4 - c)) for c in range(5))
    assert max_load_rps(profiles, space, 4) == pytest.approx(ceiling)
    report = capacity(profiles, space, 4, [5.0, 25.0, 30.0, 10.0], load_scale=0.5)
    assert (report.over, report.over_share) == (2, 0.5)
    assert report.fitting_scale == pytest.approx(0.5 * ceiling / 30.0)
    line = report.line()
    assert "at most 20 requests/s on 4 cores" in line and "2 of 4 intervals (50%)" in line
    assert f"adapt.load_scale={0.5 * ceiling / 30:.3g} would fit them all" in line
    assert capacity(profiles, space, 4, [5.0, 10.0]).line() is None


def test_intervals_where_nothing_fits_are_counted_with_what_was_chosen():
    profiles, space = two_stage_profiles()
    load = Trace("over", np.array([0.0, 60.0, 120.0]), np.array([5.0, 30.0, 30.0]))  # 30 > the ceiling of 20
    carbon = Trace("flat", np.array([0.0]), np.array([300.0]))
    intervals = simulate(Policy("ipa", Weights()), profiles, space, REFERENCE, load, carbon, 60.0, 4, 60,
                         predictor=Last(), span_s=180.0)
    assert [i.fits for i in intervals] == [True, True, False]  # planned for 5 (its own load), 5, then 30
    over = intervals[2]
    assert over.cores == 4 and over.energy_j > 0 and dict(over.stages)["detector"] != "-"
    assert over.sla_attainment < 1  # the most the space serves is 20 of the 30 requests/s
    assert totals(intervals)["energy_j"] == pytest.approx(sum(i.energy_j for i in intervals))
    assert totals(intervals)["intervals_over_capacity"] == 1
    assert interval_loads(load, 180.0, 60, "peak") == [5.0, 30.0, 30.0]
