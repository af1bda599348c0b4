"""Profiles notice the machine: other processes' CPU and the hypervisor's steal while the batches ran, the spread
of the batches, a re-measurement, and a flag that travels with the table."""

from contextlib import contextmanager
from types import SimpleNamespace

import pytest
from omegaconf import OmegaConf
from rich.console import Console

from sustainable_ipa.config import compose
from sustainable_ipa.data import load_dataset
from sustainable_ipa.search.machine_load import CpuCounters
from sustainable_ipa.search.profiler import QualityLimits, profile_space
from sustainable_ipa.search.profiles import CONTENDED, NOISY, OK, ProfileTable
from sustainable_ipa.search.profiling_job import warn_flagged
from sustainable_ipa.search.space import SearchSpace
from sustainable_ipa.families import stage_families
from sustainable_ipa.search.workload import pipeline_workload

REPEATS = 4


class FakeMachine:
    """CPU counters of a 2-core machine on which other processes keep `others_cores` cores busy for the first
    `busy_calls` reads (each read 10 ms after the last), then leave it alone."""

    def __init__(self, others_cores: float, busy_calls: int | float):
        self.others_cores, self.busy_calls, self.calls, self.busy_s, self.wall_s = others_cores, busy_calls, 0, 0.0, 0.0

    def __call__(self) -> CpuCounters:
        self.calls += 1
        self.wall_s += 0.01
        if self.calls <= self.busy_calls:
            self.busy_s += self.others_cores * 0.01
        return CpuCounters(self.busy_s, 0.0, 0.0, self.wall_s)


def profile(machine: FakeMachine, retries: int, curves_j: tuple[float, ...] = ()):
    cfg = compose()
    space = SearchSpace.from_config(OmegaConf.create({
        "detector": {"variants": ["yolov5n"], "batch_size": [1], "threads": [1], "replicas": [1]},
        "classifier": {"variants": ["resnet18"], "batch_size": [2], "threads": [1], "replicas": [1]}}),
        cfg.pipeline, max_cores=None)
    batches, extra = [], []

    @contextmanager
    def energy_window():  # `curves_j`: the window's energy under the power model's other curves (the estimate)
        yield SimpleNamespace(active_j=1.0, active_by_curve_j=curves_j)

    table = profile_space(space, pipeline_workload(stage_families(cfg.pipeline), load_dataset(cfg.dataset)), lambda stage, variant, precision, runtime: (lambda batch: None),
                          REPEATS, energy_window, "estimate", "cpu", on_batch=lambda key, _s, _timed: batches.append(key), retries=retries,
                          counters=machine, cores=2, limits=QualityLimits(max_p90_over_p50=float("inf")),
                          on_retry=extra.append)
    return table, batches, extra


def test_profiles_of_the_estimate_keep_the_ends_of_its_power_models_curves_summed_curve_by_curve():
    table, _, _ = profile(FakeMachine(0.0, 0), retries=0, curves_j=(0.5, 3.0))
    for row in table.rows.values():  # every window 1 J, or 0.5 J and 3 J under the other two curves
        assert (row.energy_j_per_item_low, row.energy_j_per_item_high) == pytest.approx(
            (0.5 * row.energy_j_per_item, 3.0 * row.energy_j_per_item))


def test_the_profiling_window_gives_the_energy_under_each_curve_of_the_estimate(tmp_path):
    from sustainable_ipa.energy.session import EnergySession
    from sustainable_ipa.search.profiling_job import energy_window_of

    cfg = compose([f"energy.lock_path={tmp_path}/lock", "energy.meter=estimate", f"energy.calibration={tmp_path}/c",
                   "energy.poll_interval_s=0"])
    with EnergySession(cfg.energy, cfg.hardware) as energy:
        with energy_window_of(energy)() as window:
            sum(i * i for i in range(200_000))
    assert len(window.active_by_curve_j) == len(energy.meter.alternatives) and window.active_j >= 0


def test_a_profile_taken_while_others_held_a_core_is_measured_again_and_the_clean_one_kept():
    # one model at a time: the detector's profile while others are busy, then the classifier's on a quiet machine
    first_attempt_reads = (REPEATS + 1) * 2  # warm-up + timed rounds, a read before and after each batch
    table, batches, extra = profile(FakeMachine(others_cores=1.0, busy_calls=first_attempt_reads), retries=1)
    assert len(batches) == 2 * (REPEATS + 1) + REPEATS and extra == [REPEATS]  # the detector's again, no warm-up
    assert [r.quality for r in table.rows.values()] == [OK, OK]
    assert all(r.others_cpu_share == 0.0 and len(r.latency_samples_s) == REPEATS for r in table.rows.values())
    assert all(r.energy_j_per_item_low is None for r in table.rows.values())  # a counter's windows: no interval


def test_a_profile_that_stays_contended_is_flagged_in_the_table_the_cache_and_a_warning():
    table, _, _ = profile(FakeMachine(others_cores=1.0, busy_calls=float("inf")), retries=1)
    assert [r.quality for r in table.rows.values()] == [CONTENDED, CONTENDED]
    assert all(r.others_cpu_share == pytest.approx(0.5) for r in table.rows.values())  # 1 of 2 cores
    assert len(table.flagged()) == 2
    console = Console(record=True, width=400)
    warn_flagged(table, console)
    line = console.export_text()
    assert "2 of 2 profiles were measured on a busy or noisy machine" in line and "contended: others 50%" in line
    assert "profiling.refresh=true" in line


def test_flags_and_shares_survive_the_cache(tmp_path):
    table, _, _ = profile(FakeMachine(others_cores=1.0, busy_calls=float("inf")), retries=0)
    table.save(tmp_path / "cpu.csv")
    assert ProfileTable.load(tmp_path / "cpu.csv").rows == table.rows


@pytest.mark.parametrize("latencies,others,steal,quality", [
    ([0.10] * 20, 0.0, 0.0, OK),
    ([0.10] * 20, 0.2, 0.0, CONTENDED),
    ([0.10] * 20, 0.0, 0.1, CONTENDED),
    ([0.10] * 15 + [0.30] * 5, 0.0, 0.0, NOISY),  # a quarter of the batches 3× slower: p90 ÷ p50 = 3
    ([0.10] * 19 + [0.30], 0.0, 0.0, OK),  # one slow batch in 20 is a tail, not noise
])
def test_quality_limits(latencies, others, steal, quality):
    assert QualityLimits().judge(latencies, others, steal) == quality
