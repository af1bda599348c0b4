"""The batch fit and sequential stopping on synthetic latencies of known shape."""

from __future__ import annotations

import numpy as np
import pytest

from sustainable_ipa.search.batch_fit import batch_sizes_to_time, fit_batches, mean_known


@pytest.mark.parametrize("degree,truth", [
    (1, lambda b: 0.020 + 0.011 * b),  # a fixed cost and a cost per item
    (2, lambda b: 0.050 + 0.030 * b + 0.002 * b ** 2),  # and what grows faster than the batch
])
def test_the_fit_recovers_a_known_shape_from_the_timed_batch_sizes(degree, truth):
    timed = batch_sizes_to_time([1, 2, 4, 8, 16, 32], 4)
    fit = fit_batches(timed, [truth(b) for b in timed], degree)
    for b in (2, 3, 8, 16, 24):
        assert fit(b) == pytest.approx(truth(b), rel=1e-6)
    assert fit.residual < 1e-6 and fit.timed == tuple(timed)


def test_the_fit_of_noisy_latencies_stays_within_the_noise_and_records_its_error():
    rng = np.random.default_rng(0)
    truth = lambda b: 0.1 + 0.05 * b  # noqa: E731
    timed = [1, 4, 8, 16]
    fit = fit_batches(timed, [truth(b) * rng.normal(1, 0.02) for b in timed], degree=1)
    assert abs(fit(2) / truth(2) - 1) < 0.05 and 0 < fit.residual < 0.05


def test_a_fit_never_predicts_a_latency_that_falls_with_the_batch():
    # a noisy middle point pulls an unconstrained quadratic below zero slope; non-negative terms cannot
    fit = fit_batches([1, 2, 8], [0.10, 0.30, 0.31], degree=2)
    predictions = [fit(b) for b in range(1, 9)]
    assert all(later >= earlier for earlier, later in zip(predictions, predictions[1:]))
    assert min(predictions) > 0 and fit.residual > 0.05  # the misfit is recorded, not hidden


def test_the_timed_batch_sizes_span_the_range_so_the_rest_are_interpolated():
    assert batch_sizes_to_time([1, 2, 4, 8], 3) in ([1, 2, 8], [1, 4, 8])
    assert batch_sizes_to_time([8, 1, 4, 2], 2) == [1, 8]
    assert batch_sizes_to_time([1, 2, 4, 8], 0) == [1, 2, 4, 8]  # 0: time every batch size
    assert batch_sizes_to_time([1, 2], 3) == [1, 2]


@pytest.mark.parametrize("values", [[0.1], [0.1, 0.0], [0.1, float("nan")]])
def test_a_fit_refuses_what_no_measurement_gives(values):
    with pytest.raises(ValueError):
        fit_batches(list(range(1, len(values) + 1)), values)


def test_sequential_stopping_stops_on_a_noisy_source_within_its_tolerance():
    rng = np.random.default_rng(1)
    stopped = []
    for _ in range(200):
        samples = []
        while not mean_known(samples, 0.05, min_samples=5) and len(samples) < 1000:
            samples.append(rng.lognormal(np.log(0.2), 0.15))
        stopped.append((len(samples), np.mean(samples)))
    true_mean = 0.2 * np.exp(0.15 ** 2 / 2)
    within = np.mean([abs(mean / true_mean - 1) <= 0.05 for _, mean in stopped])
    assert within >= 0.9  # a 95 % interval, stopped at the first n it holds: a little optimistic, as expected
    n = [n for n, _ in stopped]
    assert max(n) < 1000 and 25 <= np.median(n) <= 50  # σ 15 % at ±5 %: (1.96 · 0.15 / 0.05)² ≈ 35 batches


def test_sequential_stopping_keeps_the_minimum_and_a_wide_source_runs_on():
    assert not mean_known([0.2] * 4, 0.05, min_samples=5)
    assert mean_known([0.2] * 5, 0.05, min_samples=5)
    assert not mean_known([0.1, 0.3, 0.1, 0.3, 0.1, 0.3], 0.05, min_samples=5)


def test_a_fitted_profile_keeps_the_power_models_interval_as_wide_relatively_as_the_nearest_timed_one():
    from sustainable_ipa.search.profiler import fit_profiles
    from sustainable_ipa.search.profiles import StageProfile

    def timed(batch: int, latency_s: float, energy_j: float) -> StageProfile:
        return StageProfile("classifier", "resnet18", batch, 1, (latency_s,) * 5, energy_j, "estimate",
                            energy_j_per_item_low=energy_j * 0.8, energy_j_per_item_high=energy_j * 1.5)

    rows = {p.key: p for p in (timed(1, 0.05, 1.0), timed(4, 0.14, 0.8), timed(8, 0.26, 0.7))}
    [fitted] = fit_profiles([("classifier", "resnet18", 2, 1, "fp32", "torch")], rows, degree=2).values()
    assert fitted.energy_j_per_item_low == pytest.approx(fitted.energy_j_per_item * 0.8)
    assert fitted.energy_j_per_item_high == pytest.approx(fitted.energy_j_per_item * 1.5)
