"""Load predictors on IPA's Twitter trace: SLA attainment against energy, composed by the simulator (issue 20, item 3).

    python bench/bench_forecast.py [--profiles CSV] [Hydra overrides]

Replays data/traces/twitter_ipa_6h.txt (6 hours of IPA's own workload, per second) with a decision every minute
for each predictor (`last`, `headroom`, statsforecast's AutoETS and AutoARIMA, AutoETS's 90 % upper bound) and for
`last` planning for each interval's peak instead of its mean, under IPA's objective and the energy-aware one.
Every figure is a composed prediction (stage profiles replayed by the simulator), not a measurement. The
forecaster's time is measured apart from the decision's. Profiles: this machine's cache for the space given (by
default the small space of bench/RESULTS.md's profile cache), or a cache file named with --profiles.
"""

from __future__ import annotations

import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

import numpy as np  # noqa: E402

from sustainable_ipa.adapt.adapt_job import policies, replay_traces  # noqa: E402
from sustainable_ipa.adapt.capacity import capacity  # noqa: E402
from sustainable_ipa.adapt.forecast import make_predictor  # noqa: E402
from sustainable_ipa.adapt.simulate import interval_loads, precompute_options, simulate, totals  # noqa: E402
from sustainable_ipa.config import compose  # noqa: E402
from sustainable_ipa.errors import UserError  # noqa: E402
from sustainable_ipa.fingerprint import this_machine  # noqa: E402
from sustainable_ipa.metrics.accuracy import option_accuracies  # noqa: E402
from sustainable_ipa.search.profiler import cache_path  # noqa: E402
from sustainable_ipa.search.profiles import ProfileTable  # noqa: E402
from sustainable_ipa.search.space import SearchSpace  # noqa: E402

SPACE = ["search.space.detector.variants=[yolov5n,yolov5s]", "search.space.detector.batch_size=[1]",
         "search.space.detector.threads=[1]", "search.space.classifier.variants=[resnet18,resnet50]",
         "search.space.classifier.batch_size=[1,2,4]", "search.space.classifier.threads=[1]"]
TRACE = [f"adapt.load={ROOT / 'data/traces/twitter_ipa_6h.txt'}", "adapt.duration_s=21600", "adapt.step_s=60",
         "adapt.load_scale=1.0", "adapt.carbon=flat", "adapt.forecast.window=24"]
# (predictor, plan_for, level): what is compared
CASES = [("last", "mean", None), ("last", "peak", None), ("headroom", "mean", None), ("ets", "mean", None),
         ("arima", "mean", None), ("ets", "mean", 90)]


def main() -> None:
    args = sys.argv[1:]
    profiles_csv = None
    if args[:1] == ["--profiles"]:
        profiles_csv, args = args[1], args[2:]
    cfg = compose(SPACE + TRACE + args)
    try:
        profiles = ProfileTable.load(profiles_csv or cache_path(cfg.profiling.cache_dir, cfg.hardware.name,
                                                                this_machine()))
        replay = replay_traces(cfg)
    except UserError as err:
        raise SystemExit(f"error: {err}") from None
    a = cfg.adapt
    space = SearchSpace.from_config(cfg.search.space, cfg.pipeline, max_cores=None).profile_grid()
    reference = option_accuracies(cfg.pipeline.variants)
    step_s, span_s = float(a.step_s), replay.span_s
    actual = {plan: np.array(interval_loads(replay.load, span_s, step_s, plan)) for plan in ("mean", "peak")}
    ceiling = capacity(profiles, space, int(a.max_cores), list(actual["mean"]), float(a.load_scale))
    print(f"trace {replay.load.path}: {len(actual['mean'])} intervals of {step_s:g} s, load scale {a.load_scale:g}, "
          f"interval means {actual['mean'].min():.1f}-{actual['mean'].max():.1f} requests/s (mean "
          f"{actual['mean'].mean():.1f}), peaks up to {actual['peak'].max():.0f}; profiles of "
          f"{profiles.fingerprint or 'unknown machine'}")
    print(ceiling.line() or f"capacity: at most {ceiling.max_load_rps:.3g} requests/s on {a.max_cores} cores; "
                            "every interval's mean fits")
    began = time.perf_counter()
    precompute_s = precompute_options(profiles, space, reference, np.concatenate(list(actual.values())))
    print(f"options precomputed at every interval's mean and peak in {precompute_s:.1f} s (predictions at other "
          "loads replay their options inside the decision)")
    print("\nComposed prediction (profiles replayed by the simulator), not measured.\n")
    print("| predictor | plans for | policy | SLA attainment | energy (kJ) | J/request | core-hours | forecast MAE "
          "(req/s) | under-predicted | forecast ms p50 / max | decision ms p50 / p90 |")
    print("|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for name, plan, level in CASES:
        predictor = make_predictor(name, int(a.forecast.window), float(a.forecast.quantile), level)
        for policy in (p for p in policies(a) if p.name in ("ipa", "energy")):
            intervals = simulate(policy, profiles, space, reference, replay.load, replay.carbon, cfg.trial.sla_s,
                                 int(a.max_cores), step_s, float(cfg.hardware.pue), predictor, plan, span_s)
            t = totals(intervals)
            predicted = np.array([i.predicted_rps for i in intervals])
            error = predicted - actual[plan]
            requests = float(sum(i.load_rps * min(step_s, span_s - i.t_s) for i in intervals))
            decisions = sorted(i.decision_ms for i in intervals)
            print(f"| {predictor.name} | {plan} | {policy.name} | {t['sla_attainment']:.4f} | "
                  f"{t['energy_j'] / 1e3:.1f} | {t['energy_j'] / requests:.3f} | {t['core_hours']:.1f} | "
                  f"{np.abs(error).mean():.1f} | {(error < 0).mean():.0%} | {t['forecast_ms_p50']:.2f} / "
                  f"{t['forecast_ms_max']:.1f} | {statistics.median(decisions):.1f} / "
                  f"{decisions[int(0.9 * len(decisions))]:.1f} |", flush=True)
    print(f"\n{time.perf_counter() - began:.0f} s in all")


if __name__ == "__main__":
    main()
