"""The MILP equals brute force; an SLA nothing meets is flagged; traces are read strictly."""

from __future__ import annotations

import itertools
import math
from dataclasses import replace

import numpy as np
import pytest

from sustainable_ipa.adapt.optimizer import (HIGHS_OPTIONS, Option, Weights, decide, load_grid_rps, pipeline_p99_s,
                                              score, stage_options, to_choice, undominated)
from sustainable_ipa.adapt.simulate import Policy, deferrable_job, precompute_options, simulate, totals
from sustainable_ipa.adapt.traces import LOAD_COLUMNS, Trace, generate_load, read_trace
from sustainable_ipa.errors import UserError
from sustainable_ipa.search.profiles import ProfileTable, StageProfile
from sustainable_ipa.search.space import StageChoice

VARIANTS = {"detector": ["yolov5n", "yolov5s", "yolov5m"], "classifier": ["resnet18", "resnet50", "resnet152"]}
REFERENCE = {"detector": {"yolov5n": 45.7, "yolov5s": 56.8, "yolov5m": 64.1},
             "classifier": {"resnet18": 69.758, "resnet50": 76.13, "resnet152": 78.312}}


def random_instance(seed: int, spread: bool = False, crops: tuple[int, ...] = (3,)):
    """Made-up profiles of the video pipeline's two stages: batch latencies alike but one 10 % slower, or with
    `spread` each drawn; `crops` per frame, cycled."""
    rng = np.random.default_rng(seed)
    rows = []
    space = {}
    for stage, variants in VARIANTS.items():
        batches, threads = [1, 2, 4, 8], [1, 2]
        space[stage] = {"variants": variants, "batch_size": batches, "threads": threads}
        for k, v in enumerate(variants):
            for b in batches:
                for t in threads:
                    per_item = (0.05 + 0.1 * k) * rng.uniform(0.7, 1.3) / t ** 0.8
                    latency = per_item * b ** 0.85
                    samples = tuple(latency * rng.uniform(0.8, 1.6, 20)) if spread else \
                        (latency,) * 19 + (latency * 1.1,)
                    rows.append(StageProfile(stage, v, b, t, samples,
                                             (1.0 + 2.0 * k) * rng.uniform(0.6, 1.0) / b ** 0.2, "estimate"))
    return ProfileTable(rows, "cpu", {"detector": (1,), "classifier": crops}), space


def brute_force(options, sla_s, max_cores, w, intensity, power_budget_w=None):
    best, best_score = None, -math.inf
    for combo in itertools.product(*options.values()):
        if sum(o.latency_s for o in combo) > sla_s or sum(o.cores for o in combo) > max_cores:
            continue
        if power_budget_w is not None and sum(o.power_w for o in combo) > power_budget_w:
            continue
        s = score(combo, w, intensity)
        if s > best_score:
            best, best_score = combo, s
    return best, best_score


CASES = [(seed, w) for seed in range(4) for w in (
    Weights(alpha=2.0, beta=1.0, delta=0.0),
    Weights(alpha=50.0, beta=0.5, delta=0.3, objective="power"),
    Weights(alpha=50.0, beta=0.5, delta=0.002, objective="carbon", accuracy="sum"),
)]


@pytest.mark.filterwarnings("error")  # HiGHS options scipy does not list are passed on without a warning leaking
@pytest.mark.parametrize("seed,w", CASES)
def test_the_milp_equals_brute_force(seed, w):
    profiles, space = random_instance(seed)
    load = float(np.random.default_rng(seed).uniform(2, 20))
    options = stage_options(profiles, space, load, REFERENCE)
    sla, cores = 2.0, 12
    decision = decide(options, sla, cores, w, intensity_g_per_kwh=350.0)
    best, best_score = brute_force(options, sla, cores, w, 350.0)
    assert best is not None and decision.meets_sla
    assert decision.objective == pytest.approx(best_score, rel=1e-6, abs=1e-6)


def test_a_power_budget_constrains_like_brute_force():
    profiles, space = random_instance(7)
    options = stage_options(profiles, space, 10.0, REFERENCE)
    w = Weights(alpha=50.0, beta=0.1)
    unconstrained = decide(options, 3.0, 16, w)
    budget = unconstrained.power_w * 0.6
    decision = decide(options, 3.0, 16, w, power_budget_w=budget)
    _, best_score = brute_force(options, 3.0, 16, w, 0.0, power_budget_w=budget)
    assert decision.power_w <= budget + 1e-9 and decision.objective == pytest.approx(best_score)


def test_an_sla_nothing_meets_gives_the_least_bad_choice_flagged():
    profiles, space = random_instance(1)
    options = stage_options(profiles, space, 5.0, REFERENCE)
    decision = decide(options, 1e-4, 16, Weights())
    assert decision.flagged and decision.sla_violation_s > 0
    fastest = min(sum(o.latency_s for o in combo) for combo in itertools.product(*options.values())
                  if sum(o.cores for o in combo) <= 16)
    assert decision.latency_s == pytest.approx(fastest)


def test_a_choice_that_meets_the_sla_beats_a_cheaper_one_that_misses_it_by_a_hair():
    def option(stage, latency_s, cores):
        return Option(stage, StageChoice("v", 1, 1, cores), 50.0, latency_s, 1.0, cores, 1.0, 5.0)

    detector = [option("detector", 1.0, 1)]
    just_over = option("classifier", 1.0 + 5e-6, 1)  # ten cores cheaper, 5 µs over the SLA of 2 s
    within = option("classifier", 0.5, 11)
    decision = decide({"detector": detector, "classifier": [just_over, within]}, 2.0, 16, Weights(beta=1.0))
    assert decision.meets_sla and decision.options[1] == within


def test_without_a_power_term_ties_go_to_the_least_power():
    def option(stage, batch_size, latency_s, power_w):
        return Option(stage, StageChoice("v", batch_size, 1, 1), 50.0, latency_s, power_w, 1, 1.0, 5.0)

    detector = [option("detector", 1, 1.0, 5.0)]
    classifier = [option("classifier", 1, 0.4, 9.0), option("classifier", 4, 0.9, 4.0),  # same accuracy and cores
                  option("classifier", 8, 1.5, 2.0)]  # least power, but misses the SLA of 2 s with the detector
    for solver_options in (HIGHS_OPTIONS, {"mip_rel_gap": 0.0}):
        decision = decide({"detector": detector, "classifier": classifier}, 2.0, 16, Weights(delta=0.0),
                          solver_options=solver_options)
        assert decision.meets_sla and decision.options[1] is classifier[1]


@pytest.mark.parametrize("seed", range(4))
def test_decisions_do_not_depend_on_the_solver_settings(seed):
    profiles, space = random_instance(seed)
    options = stage_options(profiles, space, float(np.random.default_rng(seed).uniform(2, 20)), REFERENCE)
    for w in (Weights(delta=0.0), Weights(alpha=50.0, beta=0.5, delta=0.3)):
        ours, defaults = (decide(options, 2.0, 12, w, solver_options=o) for o in (HIGHS_OPTIONS, {"mip_rel_gap": 0.0}))
        assert ours.choice == defaults.choice


def test_replicas_cover_the_load():
    profiles, space = random_instance(2)
    for option in stage_options(profiles, space, 30.0, REFERENCE)["classifier"]:
        assert option.capacity_rps >= 30.0 and option.cores == option.choice.replicas * option.choice.threads


def test_only_dominated_options_are_dropped_before_the_program():
    def option(variant, latency_s, cores, power_w):
        return Option("detector", StageChoice(variant, 1, 1, 1), 50.0, latency_s, power_w, cores, 1.0, 5.0)

    kept = option("yolov5n", 0.1, 1, 5.0)
    slower_same_cost = option("yolov5n", 0.2, 1, 5.0)
    faster_dearer = option("yolov5n", 0.05, 2, 5.0)
    other_variant = option("yolov5s", 0.3, 1, 6.0)  # worse on all three, but another accuracy
    twin = option("yolov5n", 0.1, 1, 5.0)
    assert undominated([kept, slower_same_cost, faster_dearer, other_variant, twin]) == \
        [kept, faster_dearer, other_variant]


def test_an_idle_interval_is_decided_for_a_request_alone():
    profiles, space = random_instance(0)
    options = stage_options(profiles, space, 0.0, REFERENCE)  # a trace's idle interval: load 0
    alone = {(o.stage, o.choice.variant, o.choice.batch_size, o.choice.threads): o
             for opts in options.values() for o in opts if o.choice.replicas == 1}
    p = profiles.get("detector", "yolov5n", 1, 1)
    # served on arrival: the slowest profiled batch, which 1 batch in 20 takes, is the p99 of many requests
    assert alone[("detector", "yolov5n", 1, 1)].latency_s == pytest.approx(max(p.latency_samples_s))
    assert alone[("detector", "yolov5n", 8, 1)].latency_s > 100  # a batch of 8 waits for 7 more requests
    # one replica keeps up with nothing, and up to two more are offered
    assert {o.choice.replicas for opts in options.values() for o in opts} == {1, 2, 3}
    assert all(o.power_w < 1e-6 for opts in options.values() for o in opts)
    decision = decide(options, sla_s=5.0, max_cores=4, w=Weights(alpha=2.0, beta=1.0, delta=0.0))
    assert decision.meets_sla and all(o.choice.batch_size == 1 for o in decision.options)


@pytest.mark.parametrize("text,problem", [
    ("timestamp,requests_per_s\n0,5\n60,abc\n", "row 3 is malformed"),
    ("timestamp,requests_per_s\n0,5\n60,-1\n", "row 3 has a negative"),
    ("timestamp,requests_per_s\n60,5\n0,4\n", "row 3: timestamps must increase"),
    ("timestamp,requests_per_s\n", "has no data rows"),
    ("timestamp,requests_per_s\n0,5\nnan,4\n", "row 3 has the time 'nan', not a finite number"),
    ("timestamp,requests_per_s\n0,5\ninf,4\n", "row 3 has the time 'inf', not a finite number"),
    (b"timestamp,requests_per_s\n0,5\n60,\xff\xfe\n", "is not UTF-8 text"),
])
def test_malformed_traces_name_file_and_row(tmp_path, text, problem):
    from sustainable_ipa.adapt.traces import open_trace

    path = tmp_path / "load.csv"
    path.write_bytes(text) if isinstance(text, bytes) else path.write_text(text)
    for read in (read_trace, open_trace):  # as the adapter opens it: counts or CSV, told apart first
        with pytest.raises(UserError, match=problem) as err:
            read(path, LOAD_COLUMNS)
        assert str(path) in str(err.value) and "\n" not in str(err.value)


def test_raw_counts_not_utf8_are_one_line(tmp_path):
    from sustainable_ipa.adapt.traces import read_counts

    path = tmp_path / "counts.txt"
    path.write_bytes(b"1 2 3\n4 \xff 5\n")
    with pytest.raises(UserError, match="is not UTF-8 text"):
        read_counts(path)


def test_real_exports_with_iso_times_and_extra_columns(tmp_path):
    path = tmp_path / "grid.csv"
    path.write_text("Datetime (UTC),Country,Carbon intensity gCO₂eq/kWh (direct)\n"
                    "2025-01-01T00:00:00Z,FR,40\n2025-01-01T01:00:00Z,FR,55\n")
    trace = read_trace(path, ("carbon intensity gco₂eq/kwh (direct)",))
    assert list(trace.t_s) == [0.0, 3600.0] and list(trace.values) == [40.0, 55.0]
    assert trace.at(1800) == 40.0 and trace.at(4000) == 55.0


def test_deferrable_job_picks_the_cleanest_window():
    carbon = Trace("c", np.array([0.0, 3600.0, 7200.0, 10800.0]), np.array([400.0, 100.0, 100.0, 400.0]))
    job = deferrable_job(carbon, job_s=7200, window_s=14400, power_w=1000.0, step_s=3600)
    assert job["job_best_start_s"] == 3600.0
    assert job["job_emissions_best_g"] == pytest.approx(200.0)  # 2 kWh at 100 g/kWh
    assert job["job_emissions_now_g"] == pytest.approx(500.0)  # 1 kWh at 400 + 1 kWh at 100
    assert job["job_saved_fraction"] == pytest.approx(0.6)


def test_energy_aware_policy_saves_energy_on_the_same_trace():
    profiles, space = random_instance(3)
    load = generate_load("diurnal", 3600 * 6, 900, 8.0)
    carbon = Trace("flat", np.array([0.0]), np.array([300.0]))
    ipa = totals(simulate(Policy("ipa", Weights(alpha=50.0, beta=0.2)), profiles, space, REFERENCE, load, carbon,
                          2.0, 16, 900))
    green = totals(simulate(Policy("energy", Weights(alpha=50.0, beta=0.2, delta=1.0)), profiles, space, REFERENCE,
                            load, carbon, 2.0, 16, 900))
    assert green["energy_j"] < ipa["energy_j"] and green["accuracy_mean"] <= ipa["accuracy_mean"]
    assert "energy_j_low" not in green  # profiles without a power-model interval: none replayed


def test_the_simulators_figures_carry_the_power_models_interval_of_the_profiles():
    profiles, space = random_instance(3)
    modelled = ProfileTable([replace(p, energy_j_per_item_low=p.energy_j_per_item * 0.5,
                                     energy_j_per_item_high=p.energy_j_per_item * 2.0) for p in profiles.rows.values()],
                            "cpu", profiles.items_per_request)
    load = generate_load("diurnal", 3600 * 6, 900, 8.0)
    carbon = Trace("diurnal", np.array([0.0, 10800.0]), np.array([300.0, 100.0]))
    intervals = simulate(Policy("energy", Weights(alpha=50.0, beta=0.2, delta=1.0)), modelled, space, REFERENCE, load,
                         carbon, 2.0, 16, 900)
    t = totals(intervals)
    assert (t["energy_j_low"], t["energy_j_high"]) == pytest.approx((t["energy_j"] * 0.5, t["energy_j"] * 2.0))
    assert (t["emissions_g_low"], t["emissions_g_high"]) == pytest.approx((t["emissions_g"] * 0.5,
                                                                           t["emissions_g"] * 2.0))


def test_after_the_precompute_no_decision_replays_a_stage():
    from sustainable_ipa.search import compose

    profiles, space = random_instance(5)
    load = generate_load("bursty", 3600, 300, 6.0)
    carbon = Trace("flat", np.array([0.0]), np.array([300.0]))
    precompute_options(profiles, space, REFERENCE, load)
    replays = compose._stage_p99_s.cache_info().misses
    simulate(Policy("energy", Weights(alpha=50.0, beta=0.2, delta=1.0)), profiles, space, REFERENCE, load, carbon,
             2.0, 16, 300)
    # every decision: a lookup, the program, and the end-to-end verdict on what it picks
    assert compose._stage_p99_s.cache_info().misses == replays


def test_one_extra_replica_is_the_only_way_to_meet_the_sla():
    # One detector configuration: p50 0.1 s per frame (10 frames/s a replica), but 1 batch in 5 takes 0.3 s. At
    # 7 requests/s one replica keeps up on the p50 (the fewest the old adapter would size it to), yet its queue
    # behind the slow batches misses an SLA of 1 s; two replicas drain it.
    rows = [StageProfile("detector", "yolov5n", 1, 1, (0.1,) * 16 + (0.3,) * 4, 1.0, "estimate"),
            StageProfile("classifier", "resnet18", 4, 1, (0.01,) * 20, 0.1, "estimate")]
    profiles = ProfileTable(rows, "cpu", {"detector": (1,), "classifier": (4,)})
    space = {"detector": {"variants": ["yolov5n"], "batch_size": [1], "threads": [1]},
             "classifier": {"variants": ["resnet18"], "batch_size": [4], "threads": [1]}}
    load = load_grid_rps(7.0)
    options = stage_options(profiles, space, load, REFERENCE)
    model = pipeline_p99_s(profiles, load)
    one, two = (next(o for o in options["detector"] if o.choice.replicas == r) for r in (1, 2))
    classifier = options["classifier"][0]
    assert model(to_choice((one, classifier))) > 1.0 > model(to_choice((two, classifier)))
    decision = decide(options, 1.0, 16, Weights(), pipeline_p99_s=model)
    assert decision.meets_sla and decision.choice["detector"].replicas == 2


@pytest.mark.parametrize("seed", range(3))
def test_search_and_adapter_give_one_configuration_one_verdict(seed):
    from sustainable_ipa.search.compose import predict

    profiles, space = random_instance(seed)
    load = load_grid_rps(float(np.random.default_rng(seed).uniform(2, 20)))
    options = stage_options(profiles, space, load, REFERENCE)
    for sla_s in (0.8, 2.0):
        decision = decide(options, sla_s, 12, Weights(alpha=50.0, beta=0.5, delta=0.3),
                          pipeline_p99_s=pipeline_p99_s(profiles, load))
        study = predict(decision.choice, profiles, load, sla_s, REFERENCE, 0.0)
        assert decision.latency_s == study["latency_p99_s"]
        assert decision.meets_sla == (study["sla_violation_s"] == 0.0)


def test_a_pipeline_the_model_rejects_is_cut_and_the_next_best_taken():
    # The per-stage guide accepts the cheap pair, the end-to-end model does not: the program is solved again
    def option(stage, latency_s, cores):
        return Option(stage, StageChoice("v", cores, 1, 1), 50.0, latency_s, 1.0, cores, 1.0, 5.0)

    detector, cheap, dear = option("detector", 0.5, 1), option("classifier", 0.5, 1), option("classifier", 0.4, 2)
    verdicts = {1: 3.0, 2: 1.5}  # end-to-end p99 by the classifier's cores (its batch size here)
    decision = decide({"detector": [detector], "classifier": [cheap, dear]}, 2.0, 16, Weights(beta=1.0),
                      pipeline_p99_s=lambda choice: verdicts[choice["classifier"].batch_size])
    assert decision.meets_sla and decision.options[1] is dear and decision.latency_s == 1.5


def test_a_negative_weight_names_itself():
    """A negative weight would reward cores or power (and make dropping dominated options inexact)."""
    from sustainable_ipa.config import compose, validate

    with pytest.raises(UserError, match=r"adapt.beta=-1.0 is not allowed: input should be greater than or equal to 0"):
        validate(compose(["adapt.beta=-1.0"]))


def test_a_power_budget_holds_when_only_the_end_to_end_model_accepts_the_pick():
    # Within the budget only the slow classifier fits, which the per-stage sum puts over the SLA (so the program
    # relaxes it) but the end-to-end model accepts. The tie-break must not swap in the fast one, over the budget.
    def option(batch_size, latency_s, power_w):
        return Option("classifier", StageChoice("v", batch_size, 1, 1), 50.0, latency_s, power_w, 1, 1.0, 5.0)

    detector = Option("detector", StageChoice("v", 1, 1, 1), 50.0, 1.0, 1.0, 1, 1.0, 5.0)
    fast, slow = option(1, 0.5, 10.0), option(2, 1.5, 2.0)
    decision = decide({"detector": [detector], "classifier": [fast, slow]}, 2.0, 16, Weights(), power_budget_w=5.0,
                      pipeline_p99_s=lambda choice: {1: 1.4, 2: 1.8}[choice["classifier"].batch_size])
    assert decision.options[1] is slow and decision.power_w <= 5.0 and decision.meets_sla


def least_power_meeting_sla(options, sla_s, max_cores):
    return min(sum(o.power_w for o in combo) for combo in itertools.product(*options.values())
               if sum(o.latency_s for o in combo) <= sla_s and sum(o.cores for o in combo) <= max_cores)


@pytest.mark.parametrize("budget", [{"power_budget_w": 1e-9}, {"carbon_budget_g_per_h": 1e-9}])
def test_a_budget_nothing_fits_is_marked_and_served_by_the_least_power(budget):
    profiles, space = random_instance(2)
    options = stage_options(profiles, space, 6.0, REFERENCE)
    w = Weights(alpha=50.0, beta=0.5)
    decision = decide(options, 3.0, 16, w, intensity_g_per_kwh=300.0, **budget)
    assert decision.nothing_within_budget and decision.flagged and decision.meets_sla
    assert decision.power_w == pytest.approx(least_power_meeting_sla(options, 3.0, 16))
    assert decision.objective == pytest.approx(score(decision.options, w, 300.0))  # the policy's own score
    assert not decide(options, 3.0, 16, w, intensity_g_per_kwh=300.0).nothing_within_budget


def test_a_loose_budget_changes_nothing():
    profiles, space = random_instance(2)
    options = stage_options(profiles, space, 6.0, REFERENCE)
    for w in (Weights(alpha=50.0, beta=0.5), Weights(alpha=50.0, beta=0.5, delta=0.01, objective="carbon")):
        free = decide(options, 3.0, 16, w, intensity_g_per_kwh=300.0)
        loose = decide(options, 3.0, 16, w, intensity_g_per_kwh=300.0, power_budget_w=1e9,
                       carbon_budget_g_per_h=1e9)
        assert loose == free and not loose.nothing_within_budget


def test_the_simulator_holds_every_policy_to_its_budget_and_counts_what_nothing_fits():
    profiles, space = random_instance(3)
    load = generate_load("diurnal", 3600 * 3, 900, 8.0)
    carbon = Trace("flat", np.array([0.0]), np.array([300.0]))
    w = Weights(alpha=50.0, beta=0.2)
    free = simulate(Policy("ipa", w), profiles, space, REFERENCE, load, carbon, 2.0, 16, 900)
    # a budget between the least and the most power the free policy used binds in some intervals, not others
    powers = sorted(i.power_w for i in free)
    budget_w = (powers[0] + powers[-1]) / 2
    capped = simulate(Policy("ipa", w, power_budget_w=budget_w), profiles, space, REFERENCE, load, carbon, 2.0, 16,
                      900)
    assert [i.stages for i in capped] != [i.stages for i in free]
    assert any(not i.over_budget for i in capped)
    for i in capped:  # served within it, or flagged and counted (the load rose above the forecast)
        assert (i.power_w <= budget_w and not i.over_budget) or (i.over_budget and i.flagged)
    assert totals(capped)["intervals_over_budget"] == sum(i.power_w > budget_w for i in capped)
    impossible = simulate(Policy("ipa", w, power_budget_w=1e-9), profiles, space, REFERENCE, load, carbon, 2.0, 16,
                          900)
    assert all(i.nothing_within_budget and i.over_budget and i.flagged and i.energy_j > 0
               for i in impossible)  # served by the least power, and said so
    assert totals(impossible)["intervals_over_budget"] == len(impossible) == 12
    assert totals(impossible)["intervals_nothing_within_budget"] == 12
    assert totals(free)["intervals_over_budget"] == 0
    loose = simulate(Policy("ipa", w, power_budget_w=1e9, carbon_budget_g_per_h=1e9), profiles, space, REFERENCE,
                     load, carbon, 2.0, 16, 900)
    assert [replace(i, decision_ms=0, forecast_ms=0) for i in loose] == \
        [replace(i, decision_ms=0, forecast_ms=0) for i in free]


def test_the_budgets_of_the_config_reach_every_policy(make_cfg):
    import pandas as pd

    from sustainable_ipa.adapt.adapt_job import over_budget_line, policies

    a = make_cfg("adapt.power_budget_w=1e-9", "adapt.carbon_budget_g_per_h=2.5").adapt
    assert {(p.power_budget_w, p.carbon_budget_g_per_h) for p in policies(a)} == {(1e-9, 2.5)}
    table = pd.DataFrame({"intervals_over_budget": [3.0, 0.0, 1.0], "intervals_nothing_within_budget": [2.0, 0.0, 0.0]},
                         index=["ipa", "energy", "carbon"])
    line = over_budget_line(a, table, 12)
    assert line.startswith("over budget: adapt.power_budget_w=1e-09 and adapt.carbon_budget_g_per_h=2.5 exceeded in "
                           "ipa 3 of 12 (nothing fitted it in 2), carbon 1 of 12 (nothing fitted it in 0) intervals")
    assert over_budget_line(a, table.iloc[[1]], 12) is None
