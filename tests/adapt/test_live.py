"""`python src/adapt.py adapt.mode=live`: the real pipeline serves a short trace, switching configuration as the
adapter decides, beside the simulator; nothing lost, every run ended."""

from __future__ import annotations

import threading

import numpy as np
import pytest
from rich.console import Console

from sustainable_ipa.fingerprint import this_machine
from sustainable_ipa.search.profiler import cache_path
from sustainable_ipa.search.profiles import ProfileTable, StageProfile

SPACE = ["search.space.detector.precision=[fp32]", "search.space.classifier.precision=[fp32]",
         "search.space.detector.runtime=[torch]", "search.space.classifier.runtime=[torch]",
         "search.space.detector.variants=[yolov5n]", "search.space.classifier.variants=[resnet18,resnet34]",
         "search.space.detector.batch_size=[1]", "search.space.classifier.batch_size=[1,4]",
         "search.space.detector.threads=[1]", "search.space.classifier.threads=[1]",
         "pipeline.detector.params.image_size=320", "adapt.max_cores=2", "trial.sla_s=1.0"]


def fake_profiles(folder, hardware: str = "cpu") -> None:
    """Profiles that make the adapter switch models: at a trickle a batch of 4 waits too long for its last crop
    (SLA 1 s), so the more accurate ResNet-34 goes in batches of 1; at 5 requests/s only ResNet-18 in batches of 4
    keeps up (4.5 crops a request)."""
    def profile(stage, variant, batch, latency_s, energy_j):
        samples = tuple(latency_s * (1 + 0.02 * np.sin(i)) for i in range(20))
        return StageProfile(stage, variant, batch, 1, samples, energy_j, "estimate")

    rows = [profile("detector", "yolov5n", 1, 0.03, 0.3), profile("classifier", "resnet18", 1, 0.06, 0.3),
            profile("classifier", "resnet18", 4, 0.12, 0.2), profile("classifier", "resnet34", 1, 0.05, 0.5),
            profile("classifier", "resnet34", 4, 0.2, 0.4)]
    machine = this_machine()
    ProfileTable(rows, hardware, {"detector": (1,), "classifier": (5, 4)}, machine.key).save(
        cache_path(folder, hardware, machine))


@pytest.mark.slow
def test_the_live_loop_switches_without_losing_a_request_beside_the_simulator(make_cfg, client, tmp_path):
    from sustainable_ipa.adapt.live import live_job

    trace = tmp_path / "load.csv"
    trace.write_text("t_s,requests_per_s\n0,0.3\n900,5\n1800,5\n")
    fake_profiles(tmp_path / "profiles")
    cfg = make_cfg(*SPACE, f"profiling.cache_dir={tmp_path}/profiles", f"adapt.load={trace}", "adapt.carbon=diurnal",
                   "adapt.mode=live", "adapt.speedup=600", "adapt.step_s=900", "adapt.duration_s=2700",
                   "adapt.live_policies=[ipa,carbon]")  # two of the three: the third runs the same code (bench)
    threads_before = threading.active_count()
    table = live_job(cfg)
    assert list(table.index) == ["ipa", "carbon"]
    intervals, switches = table.attrs["intervals"], table.attrs["switches"]
    # every policy went live over the three intervals, switched once the load it observed rose, and lost nothing
    assert (table["requests"] > 5).all() and (table["requests_lost"] == 0).all()
    assert (table["switches"] >= 1).all()
    assert set(switches["policy"]) == {"ipa", "carbon"} and (switches["how"] == "new workers").all()
    assert (switches["prepare_s"] > 0).all() and (switches["degraded_s"] >= 0).all()
    ipa = intervals[intervals["policy"] == "ipa"]
    assert ipa["configuration"].iloc[0].endswith("classifier resnet34 b1 t1x1 fp32/torch")
    assert ipa["configuration"].iloc[-1].endswith("classifier resnet18 b4 t1x1 fp32/torch")
    assert ipa["switched"].iloc[-1] and not ipa["switched"].iloc[0]
    # measured: a latency per request and energy per interval; beside each, what the simulator predicted
    assert ipa["requests"].sum() == table.loc["ipa", "requests"]
    assert (ipa["latency_p99_s"].dropna() > 0).all() and (ipa["energy_j"] > 0).all()
    # the estimate's figures with its power model's interval around them
    assert ((ipa["energy_j_low"] <= ipa["energy_j"]) & (ipa["energy_j"] <= ipa["energy_j_high"])).all()
    assert table.loc["ipa", "energy_j_low"] < table.loc["ipa", "energy_j"] < table.loc["ipa", "energy_j_high"]
    assert (ipa["sim_energy_j"] > 0).all() and ipa["sim_sla_attainment"].between(0, 1).all()
    [run] = client.search_runs([e.experiment_id for e in client.search_experiments()],
                               filter_string="tags.adapt_mode = 'live'")
    assert run.info.status == "FINISHED" and "estimate" in run.data.tags["energy_kind"]
    history = client.get_metric_history(run.info.run_id, "carbon_interval_sim_energy_j")
    assert sorted(m.step for m in history) == [0, 1, 2]  # one per interval
    assert {"ipa_switch_degraded_s_max", "carbon_energy_saved_fraction_vs_ipa", "carbon_requests_lost"} <= set(
        run.data.metrics)
    artifacts = {a.path for a in client.list_artifacts(run.info.run_id)}
    assert {"live_timeline.png", "live_intervals.csv", "live_comparison.csv", "live_switches.csv"} <= artifacts
    assert threading.active_count() <= threads_before + 2  # serving threads ended with their pipelines


def test_a_live_run_asking_for_more_intervals_than_the_trace_holds_is_one_line(make_cfg, tmp_path):
    from sustainable_ipa.adapt.live import live_job
    from sustainable_ipa.errors import UserError

    trace = tmp_path / "load.csv"
    trace.write_text("t_s,requests_per_s\n0,0.3\n900,5\n")
    fake_profiles(tmp_path / "profiles")
    cfg = make_cfg(*SPACE, f"profiling.cache_dir={tmp_path}/profiles", f"adapt.load={trace}", "adapt.mode=live",
                   "adapt.duration_s=1800", "adapt.live_intervals=5")
    with pytest.raises(UserError, match="live_intervals=5 but the replayed span of the load trace 'load' holds 2 "):
        live_job(cfg)


def test_a_change_of_batch_sizes_alone_is_switched_in_place():
    from sustainable_ipa.adapt.switching import only_batch_sizes
    from sustainable_ipa.search.space import PipelineChoice, StageChoice

    def choice(batch: int, variant: str = "resnet18", replicas: int = 1) -> PipelineChoice:
        return PipelineChoice(detector=StageChoice("yolov5n", 1, 1, 1),
                              classifier=StageChoice(variant, batch, 1, replicas))

    assert only_batch_sizes(choice(1), choice(4))
    assert not only_batch_sizes(choice(1), choice(1, "resnet34"))  # another model: new workers
    assert not only_batch_sizes(choice(1), choice(4, replicas=2))  # another replica count: new workers


def fake_int8_profiles(folder, hardware: str = "cpu") -> None:
    """The classifier's only numerics int8 on OpenVINO (the default space's runtime besides torch)."""
    def profile(stage, variant, batch, latency_s, energy_j, precision="fp32", runtime="torch"):
        samples = tuple(latency_s * (1 + 0.02 * np.sin(i)) for i in range(20))
        return StageProfile(stage, variant, batch, 1, samples, energy_j, "estimate", precision=precision,
                            runtime=runtime)

    rows = [profile("detector", "yolov5n", 1, 0.03, 0.3),
            profile("classifier", "resnet18", 1, 0.03, 0.1, "int8", "openvino")]
    machine = this_machine()
    ProfileTable(rows, hardware, {"detector": (1,), "classifier": (5, 4)}, machine.key).save(
        cache_path(folder, hardware, machine))


@pytest.mark.slow
def test_the_live_loop_serves_an_openvino_int8_option_and_counts_what_it_serves_over_budget(make_cfg, client,
                                                                                            tmp_path):
    """The default space's precisions and runtimes live: a stage on OpenVINO is built (exported, int8 calibrated on
    the stage's inputs) before serving and serves every request. A power budget nothing fits is held live as
    simulated: every interval served by the least power, counted and said."""
    from sustainable_ipa.adapt.live import live_job

    trace = tmp_path / "load.csv"
    trace.write_text("t_s,requests_per_s\n0,1\n900,1\n")
    fake_int8_profiles(tmp_path / "profiles")
    int8 = [o for o in SPACE if not o.startswith(("search.space.classifier.", "search.space.detector.batch"))]
    cfg = make_cfg(*int8, "search.space.classifier.variants=[resnet18]", "search.space.classifier.batch_size=[1]",
                   "search.space.classifier.threads=[1]", "search.space.classifier.precision=[int8]",
                   "search.space.classifier.runtime=[openvino]", "search.space.detector.batch_size=[1]",
                   f"export_dir={tmp_path}/exports", f"profiling.cache_dir={tmp_path}/profiles",
                   f"adapt.load={trace}", "adapt.mode=live", "adapt.speedup=600", "adapt.step_s=900",
                   "adapt.duration_s=1800", "adapt.live_policies=[ipa]", "adapt.power_budget_w=1e-9")
    console = Console(record=True, width=400)
    table = live_job(cfg, console)
    intervals = table.attrs["intervals"]
    assert intervals["configuration"].str.endswith("classifier resnet18 b1 t1x1 int8/openvino").all()
    assert table.loc["ipa", "requests"] > 0 and table.loc["ipa", "requests_lost"] == 0
    assert (intervals["latency_p99_s"].dropna() > 0).all()
    assert table.loc["ipa", "intervals_nothing_within_budget"] == table.loc["ipa", "sim_intervals_over_budget"] == 2
    assert table.loc["ipa", "intervals_over_budget"] == 2  # measured active power above 1 nW
    assert "live: over budget: adapt.power_budget_w=1e-09 exceeded in ipa 2 of 2 (nothing fitted it in 2)" in \
        console.export_text()


def test_the_observed_load_is_the_mean_or_the_busiest_quarter():
    from sustainable_ipa.adapt.live import observed_rps

    arrivals = [10.1, 10.2, 10.3, 11.2, 11.6]  # an interval [10, 11.6): quarters of 0.4 s hold 3, 0, 1, 1
    assert observed_rps(arrivals, 10.0, 1.6, "mean") == pytest.approx(5 / 1.6)
    assert observed_rps(arrivals, 10.0, 1.6, "peak") == pytest.approx(3 / 0.4)
    assert observed_rps([], 10.0, 1.6, "peak") == 0.0


@pytest.mark.slow
def test_the_live_loop_plans_for_the_peak_when_asked(make_cfg, client, tmp_path):
    from sustainable_ipa.adapt.live import live_job

    trace = tmp_path / "load.csv"
    fives = "".join(f"{t},5\n" for t in range(900, 2700, 450))
    trace.write_text("t_s,requests_per_s\n0,0.3\n450,2\n" + fives)  # the first interval: mean 1.15, peak 2
    fake_profiles(tmp_path / "profiles")
    cfg = make_cfg(*SPACE, f"profiling.cache_dir={tmp_path}/profiles", f"adapt.load={trace}", "adapt.mode=live",
                   "adapt.speedup=600", "adapt.step_s=900", "adapt.duration_s=2700", "adapt.live_policies=[ipa]",
                   "adapt.plan_for=peak", "adapt.predictor=last")
    intervals = live_job(cfg).attrs["intervals"]
    assert intervals["predicted_rps"].iloc[0] == 2.0  # the first from the trace: its peak, not its mean (1.15)
    # then the last interval's busiest quarter of arrivals, above their mean
    assert list(intervals["predicted_rps"].iloc[1:]) == list(intervals["observed_peak_rps"].iloc[:-1])
    assert (intervals["observed_peak_rps"] >= intervals["observed_rps"]).all()
    assert (intervals["predicted_rps"].iloc[1:] > intervals["observed_rps"].iloc[:-1].to_numpy()).any()


@pytest.mark.slow
def test_with_measured_switch_costs_the_simulation_beside_the_live_loop_charges_its_switches(make_cfg, client,
                                                                                           tmp_path):
    from sustainable_ipa.adapt.bring_up import bring_ups_path, save_bring_ups
    from sustainable_ipa.adapt.live import live_job
    from sustainable_ipa.adapt.switching import BringUp

    trace = tmp_path / "load.csv"
    trace.write_text("t_s,requests_per_s\n0,0.3\n900,5\n1800,5\n")
    fake_profiles(tmp_path / "profiles")
    up = BringUp(0.1, 10.0, 0.5)  # kept for this machine: nothing measured here
    save_bring_ups(bring_ups_path(cache_path(tmp_path / "profiles", "cpu", this_machine())),
                   {("detector", "yolov5n", 1, 1, "fp32", "torch"): up,
                    **{("classifier", v, b, 1, "fp32", "torch"): up for v in ("resnet18", "resnet34") for b in (1, 4)}})
    cfg = make_cfg(*SPACE, f"profiling.cache_dir={tmp_path}/profiles", f"adapt.load={trace}", "adapt.mode=live",
                   "adapt.speedup=600", "adapt.step_s=900", "adapt.duration_s=2700", "adapt.live_policies=[ipa]",
                   "adapt.switch_cost=measured")
    table = live_job(cfg)
    intervals = table.attrs["intervals"]
    # the load of 5 requests/s needs ResNet-18 b4 whatever a switch costs: live and simulated switch to it
    assert intervals["configuration"].iloc[-1].endswith("classifier resnet18 b4 t1x1 fp32/torch")
    assert table.loc["ipa", "switches"] >= 1 and table.loc["ipa", "requests_lost"] == 0
    switched = intervals[intervals["sim_decision"] != intervals["sim_decision"].shift()].iloc[1:]
    assert len(switched) == 1
    # its simulated energy holds the bring-up of every replica, 10 J each, at the live interval's scale
    assert switched["sim_energy_j"].iloc[0] >= 20
    # and each live switch with new workers is set beside what the bring-ups model for it
    new = table.attrs["switches"][table.attrs["switches"]["how"] == "new workers"]
    assert len(new) >= 1 and (new["modelled_energy_j"] >= 20).all() and (new["modelled_prepare_s"] >= 0.2).all()
    assert table.loc["ipa", "switch_energy_j_modelled"] == new["modelled_energy_j"].sum()
