"""Search benchmarks on the profile evaluator over the full video space (profiles measured on this machine).

1. Composition speed: microseconds per configuration.
2. Hypervolume: the study's feasible Pareto hypervolume vs the exhaustive one, as a function of the number of
   evaluations, median over 5 seeds (same objectives, constraint and evaluator as `src/search.py`, without the
   MLflow record per trial).
3. Composition accuracy: on held-out configurations, predicted vs measured p50 latency and energy per request
   (`--validate`, runs the pipeline; Poisson load at search.load_rps). Latency is predicted twice: replayed on
   each run's own arrivals (like for like) and as the search sees it (long-run Poisson).

    python src/profiling.py                     # first: the profiles (cached in mlruns/profiles/<hardware>.csv)
    python bench/bench_search.py [--validate]   # prints the figures and writes bench/out/hypervolume.png
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
import warnings
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

import numpy as np  # noqa: E402
import optuna  # noqa: E402

from sustainable_ipa.config import compose  # noqa: E402
from sustainable_ipa.search.evaluators import ProfileEvaluator  # noqa: E402
from sustainable_ipa.search.hypervolume import hypervolume, reference_point  # noqa: E402
from sustainable_ipa.search.objectives import resolve_objectives  # noqa: E402
from sustainable_ipa.search.profiler import cache_path  # noqa: E402
from sustainable_ipa.search.profiles import ProfileTable  # noqa: E402
from sustainable_ipa.search.samplers import make_sampler  # noqa: E402
from sustainable_ipa.search.space import SearchSpace  # noqa: E402
from sustainable_ipa.search.study import suggest  # noqa: E402

CORES = 16  # the full space: up to 2 threads × 4 replicas per stage


def setup(overrides):
    cfg = compose([f"hardware.cores={CORES}", *overrides])
    profiles = ProfileTable.load(cache_path(cfg.profiling.cache_dir, cfg.hardware.name))
    space = SearchSpace.from_config(cfg.search.space, cfg.pipeline.variants, CORES)
    return cfg, profiles, space, ProfileEvaluator(profiles, cfg), resolve_objectives(cfg.search.objectives)


def exhaustive(cfg, space, evaluator, objectives):
    choices = space.all_choices()
    began = time.perf_counter()
    metrics = [evaluator.evaluate(c) for c in choices]
    per_config_us = (time.perf_counter() - began) / len(choices) * 1e6
    values = np.array([[m[o.metric] for o in objectives] for m in metrics])
    feasible = np.array([m["latency_p99_s"] <= cfg.trial.sla_s for m in metrics])
    return choices, values, feasible, per_config_us


def study_history(cfg, space, evaluator, objectives, seed: int, n_trials: int, sampler: str):
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(directions=[o.direction for o in objectives], sampler=make_sampler(sampler, seed))

    def objective(trial):
        m = evaluator.evaluate(suggest(trial, space))
        trial.set_constraint("sla_violation_s", max(m["latency_p99_s"] - cfg.trial.sla_s, 0.0))
        return [m[o.metric] for o in objectives]

    study.optimize(objective, n_trials=n_trials)
    values = np.array([t.values for t in study.trials])
    feasible = np.array([t.system_attrs["constraints:sla_violation_s"] <= 0 for t in study.trials])
    return values, feasible


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--budget", type=float, default=0.10, help="evaluations as a fraction of the space")
    parser.add_argument("--sampler", default="tpe")
    parser.add_argument("--validate", action="store_true")
    parser.add_argument("--validate-only", action="store_true")
    parser.add_argument("--held-out", type=int, default=6, help="configurations run for real in the validation")
    parser.add_argument("--requests", type=int, default=48, help="measured requests per validation run")
    parser.add_argument("--repetitions", type=int, default=2, help="runs per held-out configuration")
    args, overrides = parser.parse_known_args()
    cfg, profiles, space, evaluator, objectives = setup(overrides)
    if args.validate_only:
        return validate_composition(cfg, evaluator, args.held_out, args.requests, args.repetitions)
    directions = [o.direction for o in objectives]
    choices, values, feasible, per_config_us = exhaustive(cfg, space, evaluator, objectives)
    print(f"space: {len(choices)} configurations ({int(feasible.sum())} meet the {cfg.trial.sla_s} s SLA at "
          f"{cfg.search.load_rps} rps), objectives {[o.name for o in objectives]}, profiles from "
          f"{profiles.rows and next(iter(profiles.rows.values())).energy_source} on {profiles.hardware}")
    print(f"composition: {per_config_us:.1f} µs per configuration (target < 1000 µs)")
    reference = reference_point(values[feasible], directions)
    full = hypervolume(values[feasible], directions, reference)
    n_trials = int(len(choices) * args.budget)
    checkpoints = sorted({max(1, int(len(choices) * f)) for f in (0.005, 0.01, 0.02, 0.035, 0.05, 0.075, 0.10, 0.25)
                          if int(len(choices) * f) <= n_trials})
    curves = []
    for seed in range(args.seeds):
        began = time.perf_counter()
        v, f = study_history(cfg, space, evaluator, objectives, seed, n_trials, args.sampler)
        curves.append([hypervolume(v[:k][f[:k]], directions, reference) / full for k in checkpoints])
        print(f"  seed {seed}: {n_trials} trials in {time.perf_counter() - began:.0f} s, final {curves[-1][-1]:.3f}")
    medians = [statistics.median(c[i] for c in curves) for i in range(len(checkpoints))]
    print(f"hypervolume of the study ÷ exhaustive ({args.sampler}, median over {args.seeds} seeds):")
    for k, med in zip(checkpoints, medians):
        print(f"  {k:6d} evaluations = {k / len(choices):6.1%} of the space: {med:.3f}")
    reach = next((k for k, m in zip(checkpoints, medians) if m >= 0.95), None)
    print(f"≥ 95 % reached at {reach} evaluations ({reach / len(choices):.1%} of the space)" if reach else
          "≥ 95 % not reached within the budget")
    out = ROOT / "bench" / "out"
    out.mkdir(parents=True, exist_ok=True)
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5.5, 3.5))
    for c in curves:
        ax.plot(np.array(checkpoints) / len(choices) * 100, c, color="tab:blue", alpha=0.3)
    ax.plot(np.array(checkpoints) / len(choices) * 100, medians, color="tab:blue", marker="o", label="median of seeds")
    ax.axhline(0.95, color="tab:red", linestyle="--", label="95 % of exhaustive")
    ax.set_xlabel("evaluations (% of the space)")
    ax.set_ylabel("hypervolume ÷ exhaustive")
    ax.legend()
    fig.tight_layout()
    fig.savefig(out / "hypervolume.png", dpi=110)
    print(f"curve: {out / 'hypervolume.png'}")
    if args.validate:
        validate_composition(cfg, evaluator, args.held_out, args.requests, args.repetitions)


def validate_composition(cfg, evaluator, held_out_count: int, requests: int, repetitions: int) -> None:
    """Each held-out pipeline: profile its two stages, run it, profile them again, then compare the composition
    on those fresh profiles with the run. This VM's speed drifts by tens of percent over minutes (neighbours on
    the host), so profiles from the cache, taken earlier, would mix that drift into the model's error; the
    before/after profiles show how much drift there was during the run (the noise floor of the comparison)."""
    import io
    import random
    import tempfile

    from rich.console import Console

    from sustainable_ipa.experiment import run_job
    from sustainable_ipa.pipeline.load import arrival_offsets_s
    from sustainable_ipa.search.compose import predict, trace_latency_s
    from sustainable_ipa.search.space import PipelineChoice, StageChoice

    # Held-out: pipelines never run while profiling (profiles are per stage), drawn at random among those that fit
    # this 2-core machine and keep up with the load with some margin (an overloaded queue has no steady latency).
    candidates = [PipelineChoice(StageChoice(d, db, 1, 1), StageChoice(c, cb, 1, 1))
                  for d in cfg.search.space.detector.variants for db in cfg.search.space.detector.batch_size
                  for c in cfg.search.space.classifier.variants for cb in cfg.search.space.classifier.batch_size]
    candidates = [c for c in candidates if evaluator.evaluate(c)["throughput_rps"] >= 1.5 * cfg.search.load_rps]
    held_out = random.Random(1).sample(candidates, min(held_out_count, len(candidates)))
    print(f"composition vs measurement (Poisson load {cfg.search.load_rps} rps, {requests} requests × {repetitions} "
          f"repetitions, 2 cores; {len(candidates)} candidates keep up). Fresh profiles before and after each run; "
          f"latency replayed on each run's own arrivals:")
    quiet = Console(file=io.StringIO())
    worst = {"latency": 0.0, "energy": 0.0, "drift": 0.0}
    for choice in held_out:
        det, db = choice.detector.variant, choice.detector.batch_size
        cls, cb = choice.classifier.variant, choice.classifier.batch_size
        with tempfile.TemporaryDirectory() as cache:
            fresh = [fresh_profiles(choice, cache, quiet)]  # before the run
            run_cfg = compose(["hardware.cores=2", "weights=random", f"trial.repetitions={repetitions}",
                               f"trial.requests={requests}", "trial.warmup=2", "trial.load=poisson",
                               f"trial.rate_rps={cfg.search.load_rps}", "tracking.experiment=composition-validation",
                               *choice.overrides()])
            record = run_job(run_cfg, console=quiet).metrics
            fresh.append(fresh_profiles(choice, cache, quiet))  # after it
        profiles = average_tables(fresh)
        drift = max(abs(b.latency_p50_s / a.latency_p50_s - 1) for a, b in zip(*(t.rows.values() for t in fresh)))
        measured = {k: record.get(f"{k}_mean", record.get(k)) for k in ("latency_p50_s", "energy_j_per_request")}
        traces = [arrival_offsets_s(requests, "poisson", cfg.search.load_rps, cfg.trial.seed + rep)
                  for rep in range(repetitions)]  # the arrivals run_job draws for each repetition
        latency_s = statistics.mean(trace_latency_s(choice, profiles, t)[0] for t in traces)
        energy_j = predict(choice, profiles, cfg.search.load_rps, cfg.trial.sla_s, evaluator.reference,
                           0.0)["energy_j_per_request"]
        errors = {"latency": latency_s / measured["latency_p50_s"] - 1,
                  "energy": energy_j / measured["energy_j_per_request"] - 1, "drift": drift}
        worst = {k: max(worst[k], abs(errors[k])) for k in worst}
        print(f"  {det} b{db} + {cls} b{cb}: p50 latency predicted {latency_s:.3f} s, measured "
              f"{measured['latency_p50_s']:.3f} s ({errors['latency']:+.1%}); energy/request predicted "
              f"{energy_j:.2f} J, measured {measured['energy_j_per_request']:.2f} J ({errors['energy']:+.1%}); "
              f"batch latency drift before → after the run up to {drift:.1%}", flush=True)
    print(f"  largest error: p50 latency {worst['latency']:.1%}, energy per request {worst['energy']:.1%} (target "
          f"within 10 %); largest profile drift during a run {worst['drift']:.1%}")


def fresh_profiles(choice, cache_dir: str, console) -> ProfileTable:
    """The two stage rows of `choice`, measured now (5 timed rounds), into a throw-away cache."""
    from omegaconf import OmegaConf

    from sustainable_ipa.search.profiling_job import profile_job

    cfg = compose(["hardware.cores=2", "profiling.refresh=true", "profiling.repeats=5",
                   f"profiling.cache_dir={cache_dir}", "tracking.experiment=composition-validation"])
    space_cfg = OmegaConf.create({stage: {"variants": [c.variant], "batch_size": [c.batch_size],
                                          "threads": [c.threads], "replicas": [c.replicas]}
                                  for stage, c in choice.stages().items()})
    space = SearchSpace.from_config(space_cfg, cfg.pipeline.variants, max_cores=None)
    return profile_job(cfg, console=console, space=space)


def average_tables(tables: list[ProfileTable]) -> ProfileTable:
    from dataclasses import replace

    rows = []
    for key, first in tables[0].rows.items():
        same = [t.rows[key] for t in tables]
        rows.append(replace(first, **{name: statistics.mean(getattr(r, name) for r in same) for name in
                                      ("latency_p50_s", "latency_p99_s", "throughput_items_s", "energy_j_per_item")}))
    return ProfileTable(rows, tables[0].hardware, tables[0].items_per_request)


if __name__ == "__main__":
    main()
