"""Profiling that fits the machine and says what it will do: one model in memory at a time, a plan whose counts are
what is then timed, a budget that narrows the space, a memory check before any work, and profile tables that travel
between machines of one fingerprint."""

from __future__ import annotations

from contextlib import contextmanager
from types import SimpleNamespace

import psutil
import pytest
import torch
from omegaconf import OmegaConf
from rich.console import Console

from fake_profiles import use_fake_probes
from sustainable_ipa.errors import UserError
from sustainable_ipa.fingerprint import Fingerprint
from sustainable_ipa.search import profiling_job
from sustainable_ipa.search.profiler import Reduction, cache_path, plan_profiles, profile_space
from sustainable_ipa.search.profiles import FITTED, TIMED, ProfileTable, StageProfile
from sustainable_ipa.search.profiling_plan import Probe, narrow_to_budget
from sustainable_ipa.search.space import SearchSpace
from sustainable_ipa.search.workload import Workload

HERE = Fingerprint("AMD EPYC 7B13 64-Core Processor", ("avx2", "avx512f"), 2)
ELSEWHERE = Fingerprint("Intel(R) Xeon(R) Platinum 8481C CPU @ 2.70GHz", ("avx2", "amx_bf16"), 2)
MODEL_MB = 64


def pipeline_cfg(variants: int):
    return OmegaConf.create({"stages": ["a"], "a": {"family": "resnet"},
                             "variants": {"a": {f"v{i}": {"reference_accuracy": 50.0} for i in range(variants)}}})


def space(variants: int = 2, batch_sizes=(1, 2, 4, 8), threads=(1,)) -> SearchSpace:
    cfg = OmegaConf.create({"a": {"variants": [f"v{i}" for i in range(variants)], "batch_size": list(batch_sizes),
                                  "threads": list(threads), "replicas": [1]}})
    return SearchSpace.from_config(cfg, pipeline_cfg(variants), None)


WORKLOAD = Workload({"a": ["item"]}, {"a": ()})


@contextmanager
def energy_window():
    yield SimpleNamespace(active_j=0.5)


def test_memory_stays_flat_however_many_models_are_profiled():
    """Each model is built, timed and released before the next: resident memory holds one, not the space's."""
    resident = []

    def build(stage, variant, precision, runtime):
        weights = torch.nn.Linear(MODEL_MB * 2**20 // 4 // 1024, 1024)  # MODEL_MB of fp32 weights
        return lambda batch: weights.weight.sum()

    profile_space(space(variants=6, batch_sizes=(1,)), WORKLOAD, build, 2, energy_window, "estimate", "cpu",
                  retries=0, on_model=lambda model, s: resident.append(psutil.Process().memory_info().rss))
    grown_mb = (resident[-1] - resident[0]) / 2**20
    assert len(resident) == 6 and grown_mb < MODEL_MB / 2, f"{grown_mb:.0f} MB more after 6 models of {MODEL_MB} MB"


def test_the_plan_counts_what_is_then_timed_and_fitted():
    calls, timed_batches = [], []

    def build(stage, variant, precision, runtime):
        calls.append(variant)
        return lambda batch: sum(range(20000 * len(batch)))  # latency that grows with the batch

    reduction = Reduction(timed_batch_sizes=3, tolerance=0.0)
    plan = plan_profiles(space(), None, reduction)
    table = profile_space(space(), WORKLOAD, build, 3, energy_window, "estimate", "cpu", retries=0,
                          reduction=reduction, on_batch=lambda key, s, timed: timed_batches.append((key, timed)))
    timed_keys = {key for key, _ in timed_batches}
    assert sorted(timed_keys) == sorted(plan.timed) and len(plan.timed) == 2 * 3 and len(plan.fitted) == 2
    assert len(timed_batches) == len(plan.timed) * (3 + 1) and calls == ["v0", "v1"]  # one build per model
    assert sorted(p.key for p in table.fitted()) == sorted(plan.fitted)
    assert {p.basis for p in table.rows.values()} == {TIMED, FITTED}
    fitted = table.rows[plan.fitted[0]]
    timed = sorted((p for p in table.rows.values() if p.variant == fitted.variant and p.basis == TIMED),
                   key=lambda p: p.batch_size)
    assert fitted.batch_size not in [p.batch_size for p in timed]  # interpolated between timed ones
    assert timed[0].latency_p50_s < fitted.latency_p50_s < timed[-1].latency_p50_s and fitted.fit_residual >= 0


def test_sequential_stopping_times_fewer_rounds_and_says_so():
    stopped = []

    def build(stage, variant, precision, runtime):
        return lambda batch: None  # the same latency every time: known after the minimum

    table = profile_space(space(variants=1, batch_sizes=(1,)), WORKLOAD, build, 20, energy_window, "estimate", "cpu",
                          retries=0, reduction=Reduction(tolerance=0.5, min_repeats=5),
                          on_stop=lambda key, unused: stopped.append(unused))
    (row,) = table.rows.values()
    assert 5 <= len(row.latency_samples_s) < 20 and stopped == [20 - len(row.latency_samples_s)]


def test_a_fitted_profile_is_timed_where_too_few_batch_sizes_are():
    plan = plan_profiles(space(batch_sizes=(1, 2)), None, Reduction(timed_batch_sizes=1))
    assert plan.fitted == [] and len(plan.timed) == 4  # one timed batch size cannot make a fit


def test_a_budget_leaves_out_precisions_first_and_says_which():
    space_cfg = OmegaConf.create({"a": {"variants": ["v0", "v1"], "batch_size": [1, 8], "threads": [1, 2],
                                        "precision": ["fp32", "bf16", "int8"], "runtime": ["torch", "openvino"]}})

    def estimate(candidate):  # seconds: one per profile
        a = candidate["a"]
        return len(a.variants) * len(a.batch_size) * len(a.threads) * len(a.precision) * len(a.runtime)

    left_out = narrow_to_budget(space_cfg, 16, estimate)
    assert estimate(space_cfg) <= 16 and list(space_cfg.a.precision) == ["fp32"]
    assert left_out == ["search.space.a.precision=[fp32]"] and list(space_cfg.a.variants) == ["v0", "v1"]
    assert narrow_to_budget(space_cfg, 1e9, estimate) == []


def test_the_job_prints_its_plan_and_estimate_before_timing_and_keeps_within_its_budget(make_cfg, tmp_path,
                                                                                       monkeypatch):
    use_fake_probes(monkeypatch)
    monkeypatch.setattr(profiling_job, "this_machine", lambda: HERE)
    seen = []

    def fake_profile_space(space, workload, build, repeats, energy_window, source, hardware, cached, *args, **kw):
        seen.append(space)
        plan = plan_profiles(space, cached, kw["reduction"])
        rows = [StageProfile(*key[:4], (0.1,) * 10, 0.1, "estimate", precision=key[4], runtime=key[5])
                for key in plan.timed + plan.fitted]
        return ProfileTable(rows, hardware, workload.items_per_request(), kw["fingerprint"])

    monkeypatch.setattr(profiling_job, "profile_space", fake_profile_space)
    cfg = make_cfg(f"profiling.cache_dir={tmp_path}/profiles", "profiling.budget_s=5",
                   "search.space.detector.variants=[yolov5n]", "search.space.classifier.variants=[resnet18]")
    console = Console(record=True, width=400)
    profiling_job.profile_job(cfg, console)
    out = console.export_text()
    assert out.index("profiling plan:") < out.index("estimate: about") and "GiB available" in out
    assert "profiling.budget_s=5: the whole space would take up to" in out and "search.space." in out
    narrowed = seen[0]
    assert all(len(o["numerics"]) == 1 for o in narrowed.stages.values())  # precisions and runtimes went first
    assert list(cfg.search.space.detector.precision) == ["fp32"]  # the caller's search reads the narrowed space


def test_a_plan_that_does_not_fit_in_memory_is_one_line_before_any_work(make_cfg, tmp_path, monkeypatch):
    use_fake_probes(monkeypatch)
    monkeypatch.setattr(profiling_job, "profile_space", lambda *a, **k: pytest.fail("timed although it cannot fit"))
    monkeypatch.setattr(profiling_job.psutil, "virtual_memory", lambda: SimpleNamespace(available=50 * 2**20))
    cfg = make_cfg(f"profiling.cache_dir={tmp_path}/profiles", "search.space.detector.variants=[yolov5n]",
                   "search.space.classifier.variants=[resnet18]")
    with pytest.raises(UserError) as err:
        profiling_job.profile_job(cfg, Console(record=True))
    line = str(err.value)
    assert "needs about" in line and "GiB available" in line and "Fix:" in line and "\n" not in line


def test_profiles_exported_on_one_machine_are_imported_on_another_of_its_fingerprint_only(make_cfg, tmp_path,
                                                                                         monkeypatch):
    use_fake_probes(monkeypatch)
    rows = [StageProfile("detector", "yolov5n", 1, 1, (0.10,) * 20, 1.0, "estimate"),
            StageProfile("classifier", "resnet18", 1, 1, (0.05,) * 20, 0.2, "estimate")]
    one = ["search.space.detector.variants=[yolov5n]", "search.space.classifier.variants=[resnet18]"] + \
        [f"search.space.{s}.{k}=[{v}]" for s in ("detector", "classifier") for k, v in
         (("batch_size", 1), ("threads", 1), ("precision", "fp32"), ("runtime", "torch"))]
    monkeypatch.setattr(profiling_job, "this_machine", lambda: HERE)
    ours = tmp_path / "first" / "cpu.csv"
    ProfileTable(rows, "cpu", {"detector": (1,), "classifier": (5, 4)}, HERE.key).save(
        cache_path(tmp_path / "first", "cpu", HERE))
    profiling_job.profile_job(make_cfg(*one, f"profiling.cache_dir={tmp_path}/first", f"profiling.export_to={ours}"),
                              Console(record=True))
    assert ProfileTable.load(ours).fingerprint == HERE.key
    # a colleague's machine of the same fingerprint: nothing to profile
    monkeypatch.setattr(profiling_job, "profile_space", lambda *a, **k: pytest.fail("profiled although imported"))
    console = Console(record=True, width=300)
    table = profiling_job.profile_job(make_cfg(*one, f"profiling.cache_dir={tmp_path}/second",
                                               f"profiling.import_from={ours}"), console)
    assert set(table.rows) == {r.key for r in rows} and "2 imported from" in console.export_text()
    # another CPU: refused in one line
    monkeypatch.setattr(profiling_job, "this_machine", lambda: ELSEWHERE)
    with pytest.raises(UserError) as err:
        profiling_job.profile_job(make_cfg(*one, f"profiling.cache_dir={tmp_path}/third",
                                           f"profiling.import_from={ours}"), Console(record=True))
    assert f"measured on {HERE.key}, this machine is {ELSEWHERE.key}" in str(err.value) and "\n" not in str(err.value)


def test_the_estimate_starts_from_the_probe_and_learns_from_what_is_timed():
    from sustainable_ipa.search.profiling_plan import PlanClock

    plan = plan_profiles(space(batch_sizes=(1, 4)), None, Reduction())
    clock = PlanClock(plan, {("a", "v0"): Probe(0.01, 1.0, 1), ("a", "v1"): Probe(0.02, 1.0, 1)}, repeats=4)
    before = clock.left_s()
    assert before == pytest.approx(5 * (0.01 + 0.04 + 0.02 + 0.08) + 2 * 1.0)  # 5 batches each, 2 builds
    key = ("a", "v0", 4, 1, "fp32", "torch")
    clock.timed(key, 0.02)  # batching halves the per-item cost: the estimate learns it for the rest
    assert clock.batch_s(("a", "v1", 4, 1, "fp32", "torch")) == pytest.approx(0.04)
    assert clock.left_s() < before


def test_a_plan_within_a_core_budget_leaves_out_the_thread_counts_no_configuration_that_fits_can_use(make_cfg):
    # Two stages, threads 1 or 2 each: on 2 cores a stage on 2 threads leaves the other none, on 3 it fits.
    cfg = make_cfg("search.space.detector.threads=[1,2]", "search.space.classifier.threads=[1,2]",
                   "search.space.detector.replicas=[1]", "search.space.classifier.replicas=[1]")
    grids = {cores: SearchSpace.from_config(cfg.search.space, cfg.pipeline, cores).profile_grid()
             for cores in (2, 3, None)}
    assert grids[2]["detector"]["threads"] == grids[2]["classifier"]["threads"] == (1,)
    assert grids[3]["detector"]["threads"] == grids[None]["classifier"]["threads"] == (1, 2)
    two_cores = plan_profiles(SearchSpace.from_config(cfg.search.space, cfg.pipeline, 2), None)
    anywhere = plan_profiles(SearchSpace.from_config(cfg.search.space, cfg.pipeline, None), None)
    assert 2 * len(two_cores.timed) == len(anywhere.timed)  # what src/profiling.py (no core budget) times
