"""Switch costs (issue 29, items 2-3): charged by the simulator as the live loop switches, and weighed by the adapter
against the gain over the expected dwell."""

from __future__ import annotations

import numpy as np
import pytest

from sustainable_ipa.adapt.forecast import Last
from sustainable_ipa.adapt.optimizer import Decision, Option, Weights
from sustainable_ipa.adapt.simulate import Policy, decide_for, simulate, totals
from sustainable_ipa.adapt.switching import (IN_PLACE, NEW_WORKERS, NO_SWITCH, BringUp, SwitchCost, serve_interval,
                                             switch_cost)
from sustainable_ipa.adapt.traces import Trace
from sustainable_ipa.search.profiles import ProfileTable, StageProfile
from sustainable_ipa.search.space import PipelineChoice, StageChoice

REFERENCE = {"detector": {"yolov5n": 45.7}, "classifier": {"resnet18": 69.758}}
SPACE = {"detector": {"variants": ["yolov5n"], "batch_size": [1], "threads": [1]},
         "classifier": {"variants": ["resnet18"], "batch_size": [1], "threads": [1, 2]}}
FLAT = Trace("flat", np.array([0.0]), np.array([300.0]))


def profiles() -> ProfileTable:
    """A classifier on 1 thread (1 J a crop) or on 2 (0.2 J a crop), both 50 crops/s a replica: at a trickle the
    extra core is not worth its energy saving, at 8 requests/s it is (energy-aware, δ = β = 1)."""
    rows = [StageProfile("detector", "yolov5n", 1, 1, (0.01,) * 20, 0.01, "estimate"),
            StageProfile("classifier", "resnet18", 1, 1, (0.02,) * 20, 1.0, "estimate"),
            StageProfile("classifier", "resnet18", 1, 2, (0.02,) * 20, 0.2, "estimate")]
    return ProfileTable(rows, "cpu", {"detector": (1,), "classifier": (1,)})


def bring_ups(prepare_s: float, energy_j: float, serving_share: float = 1.0) -> dict:
    up = BringUp(prepare_s, energy_j, serving_share)
    return {("detector", "yolov5n", 1, 1, "fp32", "torch"): up, ("classifier", "resnet18", 1, 1, "fp32", "torch"): up,
            ("classifier", "resnet18", 1, 2, "fp32", "torch"): up}


def test_a_switch_costs_the_bring_up_of_every_replica_of_the_next_configuration_and_nothing_in_place():
    def choice(batch: int, threads: int, replicas: int) -> PipelineChoice:
        return PipelineChoice(detector=StageChoice("yolov5n", 1, 1, 1),
                              classifier=StageChoice("resnet18", batch, threads, replicas))

    ups = {("detector", "yolov5n", 1, 1, "fp32", "torch"): BringUp(4.0, 30.0, 0.5),
           ("classifier", "resnet18", 4, 2, "fp32", "torch"): BringUp(3.0, 20.0, 0.25)}
    assert switch_cost(None, choice(1, 1, 1), ups) == SwitchCost(NO_SWITCH)  # the first is prepared before serving
    assert switch_cost(choice(1, 2, 3), choice(4, 2, 3), ups) == SwitchCost(IN_PLACE)  # batch sizes alone
    # new workers: the detector's replica and the classifier's three, each brought up
    assert switch_cost(choice(1, 1, 1), choice(4, 2, 3), ups) == SwitchCost(NEW_WORKERS, 4 + 3 * 3, 30 + 3 * 20, 0.25)
    assert switch_cost(choice(1, 1, 1), choice(4, 2, 3), None) == SwitchCost(NEW_WORKERS)  # free: before issue 29


def test_an_interval_with_a_switch_is_served_as_the_live_loop_serves_it_a_worked_example():
    def decision(capacity_rps: float, energy_j_per_request: float, meets_sla: bool = True) -> Decision:
        option = Option("classifier", StageChoice("v", 1, 1, 1), 70.0, 0.1, 1.0, 1, energy_j_per_request,
                        capacity_rps)
        return Decision((option,), None, 0.7, 1, 1.0, 0.1, meets_sla, 0.0, 0.0)

    load = Trace("steady", np.array([0.0]), np.array([10.0]))  # 10 requests/s over [0, 100) s
    current, nxt = decision(20.0, 1.0), decision(8.0, 0.5)
    cost = SwitchCost(NEW_WORKERS, prepare_s=10.0, energy_j=30.0, serving_share=0.25)
    served = serve_interval(load, 0.0, 100.0, current, nxt, cost)
    # 10 s of preparation: the current configuration at a quarter of its 20 requests/s serves 5 of the 10 arriving
    # (50 requests, 1 J each); then 90 s of the next at 8 requests/s (720 requests, 0.5 J each); plus the 30 J
    assert served.arrived == pytest.approx(1000.0)
    assert served.served == pytest.approx(50 + 720) and served.within_sla == pytest.approx(770)
    assert served.energy_j == pytest.approx(50 * 1.0 + 720 * 0.5 + 30)
    # the current configuration missed the SLA: its share counts as served, not within it
    assert serve_interval(load, 0.0, 100.0, decision(20.0, 1.0, False), nxt, cost).within_sla == pytest.approx(720)
    # a preparation longer than the interval: the current configuration serves all of it
    long = serve_interval(load, 0.0, 100.0, current, nxt, SwitchCost(NEW_WORKERS, 300.0, 30.0, 0.25))
    assert long.served == pytest.approx(500) and long.energy_j == pytest.approx(500 * 1.0 + 30)
    # in place or none: the next configuration serves the whole interval, at no extra cost
    assert serve_interval(load, 0.0, 100.0, current, nxt, SwitchCost(IN_PLACE)).energy_j == pytest.approx(800 * 0.5)


def test_the_simulator_charges_each_switch_its_energy_and_the_capacity_its_preparation_takes():
    load = Trace("step", np.array([0.0, 60.0, 120.0]), np.array([1.0, 8.0, 8.0]))
    policy = Policy("energy", Weights(alpha=2.0, beta=1.0, delta=1.0))
    ups = bring_ups(prepare_s=5.0, energy_j=40.0, serving_share=0.1)
    free, charged = (simulate(policy, profiles(), SPACE, REFERENCE, load, FLAT, 2.0, 4, 60, predictor=Last(),
                              bring_ups=b, switch_aware=False) for b in (None, ups))
    assert [i.cores for i in charged] == [i.cores for i in free] == [2, 2, 3]  # 1 thread, then 2 once 8 is seen
    assert [i.switch for i in charged] == [NO_SWITCH, NO_SWITCH, NEW_WORKERS]
    assert [i.switch_energy_j for i in charged] == [0, 0, 40 + 40]  # the detector's replica and the classifier's
    # interval 2: 10 s of the 1-thread configuration at a tenth of its 50 requests/s (5 of the 8), then 50 s of the
    # 2-thread one; its energy is theirs plus the switch's
    one, two = (decide_for(policy, profiles(), SPACE, REFERENCE, rps, 2.0, 4, 300.0) for rps in (1.0, 8.0))
    per_request = [sum(o.energy_j_per_request for o in d.options) for d in (one, two)]
    served = 5.0 * 10 + 8.0 * 50
    assert charged[2].energy_j == pytest.approx(5.0 * 10 * per_request[0] + 8.0 * 50 * per_request[1] + 80)
    assert charged[2].sla_attainment == pytest.approx(served / (8.0 * 60))
    assert free[2].energy_j == pytest.approx(8.0 * 60 * per_request[1]) and free[2].sla_attainment == 1.0
    assert [i.energy_j for i in charged[:2]] == [i.energy_j for i in free[:2]]
    assert totals(charged)["switches"] == 1 and totals(charged)["switch_energy_j"] == 80


def test_a_high_switch_cost_holds_through_a_short_spike_and_switches_for_a_long_one():
    loads = [1, 1, 1, 8, 1, 1, 1, 8, 8, 8, 8, 1]  # per minute: a spike of one minute, then one of four
    load = Trace("spikes", np.arange(len(loads)) * 60.0, np.array(loads, dtype=float))
    policy = Policy("energy", Weights(alpha=2.0, beta=1.0, delta=1.0))
    ups = bring_ups(prepare_s=5.0, energy_j=250.0)  # 2 replicas: 3 cores × 10 s + 500 J = 530 > 324, a minute's gain

    def run(aware: bool):
        return simulate(policy, profiles(), SPACE, REFERENCE, load, FLAT, 2.0, 4, 60, predictor=Last(), bring_ups=ups,
                        switch_aware=aware)

    blind, aware = run(False), run(True)
    # planned a minute late (the last interval's load): the short spike asks for 2 threads in minute 4, the long one
    # from minute 8 to 11
    assert [i.cores for i in blind] == [2, 2, 2, 2, 3, 2, 2, 2, 3, 3, 3, 3]
    # aware: held through the short spike; for the long one the gain of two minutes (~648) outweighs the 500 J
    assert [i.cores for i in aware] == [2, 2, 2, 2, 2, 2, 2, 2, 2, 3, 3, 3]
    assert (totals(aware)["switches"], totals(blind)["switches"]) == (1, 3)
    assert totals(aware)["energy_j"] < totals(blind)["energy_j"]  # the switches included
    assert totals(aware)["sla_attainment"] == totals(blind)["sla_attainment"] == 1.0
    # switches for free (none measured): nothing is held
    assert [i.cores for i in simulate(policy, profiles(), SPACE, REFERENCE, load, FLAT, 2.0, 4, 60, predictor=Last())] \
        == [i.cores for i in blind]


def test_kept_bring_ups_are_read_back_as_written_and_only_missing_lines_measured(tmp_path):
    from sustainable_ipa.adapt.bring_up import missing_lines, read_bring_ups, save_bring_ups
    from sustainable_ipa.search.space import NUMERICS

    space = {stage: {**o, NUMERICS: (("fp32", "torch"),)} for stage, o in SPACE.items()}
    ups = bring_ups(1 / 3, 2.5, 0.4)
    path = tmp_path / "bring-ups-cpu.csv"
    save_bring_ups(path, ups)
    assert read_bring_ups(path) == ups  # exactly: floats written in full
    assert missing_lines(space, ups) == []
    del ups[("classifier", "resnet18", 1, 2, "fp32", "torch")]
    assert missing_lines(space, ups) == [("classifier", "resnet18", 2, "fp32", "torch", (1,))]


@pytest.mark.slow
def test_bring_ups_are_measured_as_the_live_loop_prepares_and_kept_beside_the_profiles(make_cfg, tmp_path,
                                                                                       monkeypatch):
    import os

    from sustainable_ipa.adapt import bring_up
    from sustainable_ipa.search.space import configured_space
    from test_live import SPACE as LIVE_SPACE

    cfg = make_cfg(*LIVE_SPACE, f"profiling.cache_dir={tmp_path}/profiles", "adapt.switch_cost=measured")
    space = configured_space(cfg, 2).profile_grid()
    cores = sorted(os.sched_getaffinity(0))[:2]
    said = []
    ups = bring_up.measured_bring_ups(cfg, space, cores, said.append)
    # every option of the space, keyed like the profile table: yolov5n b1, ResNet-18 and -34 in batches of 1 and 4
    assert set(ups) == {("detector", "yolov5n", 1, 1, "fp32", "torch")} | {
        ("classifier", v, b, 1, "fp32", "torch") for v in ("resnet18", "resnet34") for b in (1, 4)}
    assert all(up.prepare_s > 0 and up.energy_j >= 0 and 0 <= up.serving_share <= 1 for up in ups.values())
    assert ups[("classifier", "resnet18", 1, 1, "fp32", "torch")] == ups[("classifier", "resnet18", 4, 1, "fp32",
                                                                          "torch")]  # one bring-up per line
    assert len(said) == 1 and "bringing up 3 stage options" in said[0]
    # kept beside the profiles: the next adapter reads them and measures nothing
    assert list((tmp_path / "profiles").glob("bring-ups-cpu-*.csv"))
    monkeypatch.setattr(bring_up, "measure_bring_up", lambda *args: pytest.fail("measured again"))
    assert bring_up.measured_bring_ups(cfg, space, cores, said.append) == ups and len(said) == 1


def test_the_adapter_charges_the_switches_it_makes_with_the_bring_ups_kept_for_this_machine(make_cfg, client,
                                                                                            tmp_path):
    from sustainable_ipa.adapt.adapt_job import adapt_job
    from sustainable_ipa.adapt.bring_up import bring_ups_path, save_bring_ups
    from sustainable_ipa.fingerprint import this_machine
    from sustainable_ipa.search.profiler import cache_path
    from test_live import SPACE as LIVE_SPACE, fake_profiles

    trace = tmp_path / "load.csv"
    trace.write_text("t_s,requests_per_s\n0,0.3\n900,5\n1800,5\n")  # ResNet-34 b1, then ResNet-18 b4 (new workers)
    fake_profiles(tmp_path / "profiles")
    up = BringUp(2.0, 10.0, 0.5)
    save_bring_ups(bring_ups_path(cache_path(tmp_path / "profiles", "cpu", this_machine())),
                   {("detector", "yolov5n", 1, 1, "fp32", "torch"): up,
                    **{("classifier", v, b, 1, "fp32", "torch"): up for v in ("resnet18", "resnet34") for b in (1, 4)}})
    common = [*LIVE_SPACE, f"profiling.cache_dir={tmp_path}/profiles", f"adapt.load={trace}", "adapt.step_s=900",
              "adapt.duration_s=2700", "adapt.job.duration_s=900", "adapt.job.window_s=1800"]
    free = adapt_job(make_cfg(*common))
    charged = adapt_job(make_cfg(*common, "adapt.switch_cost=measured"))
    assert (free["switches"] >= 1).all() and (free["switch_energy_j"] == 0).all()
    # every replica of the configuration switched to is brought up: 10 J each, at least one per stage
    ipa = charged.loc["ipa"]
    assert ipa["switches"] == 1 and ipa["switch_energy_j"] >= 20 and ipa["switch_energy_j"] % 10 == 0
    assert ipa["energy_j"] > free.loc["ipa", "energy_j"]
    # beside each policy, the same policy blind to switch costs and charged them: it switches at least as often
    assert (charged["switch_blind_switches"] >= charged["switches"]).all()
    assert "switch_blind_energy_j" not in free.columns
    runs = client.search_runs([e.experiment_id for e in client.search_experiments()],
                              filter_string="params.`adapt.switch_cost` = 'measured'")
    assert len(runs) == 1 and runs[0].data.metrics["ipa_switch_energy_j"] == ipa["switch_energy_j"]
