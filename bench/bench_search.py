"""Search benchmarks on the profile evaluator over the full video space (profiles measured on this machine).

1. Composition speed: microseconds per configuration.
2. Hypervolume: the study's feasible Pareto hypervolume vs the exhaustive one, as a function of the number of
   evaluations, median over 5 seeds (same objectives, constraint and evaluator as `src/search.py`, without the
   MLflow record per trial).
3. Composition accuracy (`--validate`, runs the pipeline): held-out configurations drawn from the *cached*
   profile table (no profiling around the runs: what a user has), run for real under Poisson load at
   search.load_rps; predicted p50 and p99 latency (the replay on each run's own arrivals) and energy per request
   against measured, the adapter's SLA verdict against the measured one, and beside each run the machine's drift
   since the profiles were taken (a fixed reference batch timed then and now).

    python src/profiling.py                     # first: the profiles (cached in mlruns/profiles/<hardware>.csv)
    python bench/bench_search.py [--validate]   # prints the figures and writes bench/out/hypervolume.png
    python bench/bench_search.py --validate-only [--pipeline 'yolov5s b1 r1 t1 + resnet18 b2 r1 t1'] [--cycles 3]
"""

from __future__ import annotations

import argparse
import os
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
from sustainable_ipa.errors import UserError  # noqa: E402
from sustainable_ipa.fingerprint import this_machine  # noqa: E402
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
    profiles = ProfileTable.load(cache_path(cfg.profiling.cache_dir, cfg.hardware.name, this_machine()))
    space = SearchSpace.from_config(cfg.search.space, cfg.pipeline, CORES)
    return cfg, profiles, space, ProfileEvaluator(profiles, cfg), resolve_objectives(cfg.search.objectives)


def exhaustive(space, evaluator, objectives):
    choices = space.all_choices()
    began = time.perf_counter()
    metrics = [evaluator.evaluate(c) for c in choices]
    per_config_us = (time.perf_counter() - began) / len(choices) * 1e6
    values = np.array([[m[o.metric] for o in objectives] for m in metrics])
    feasible = np.array([m["sla_violation_s"] <= 0 for m in metrics])
    return choices, values, feasible, per_config_us


def study_history(space, evaluator, objectives, seed: int, n_trials: int, sampler: str):
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(directions=[o.direction for o in objectives], sampler=make_sampler(sampler, seed))

    def objective(trial):
        m = evaluator.evaluate(suggest(trial, space))
        trial.set_constraint("sla_violation_s", m["sla_violation_s"])
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
    parser.add_argument("--cycles", type=int, default=3, help="runs of each held-out configuration (the median "
                        "is its figure)")
    parser.add_argument("--sla", type=float, default=None, help="SLA of the verdict check (default: the median "
                        "predicted p99 of the held-out configurations, so that verdicts split)")
    parser.add_argument("--repetitions", type=int, default=1, help="repetitions in each of those runs")
    parser.add_argument("--pipeline", action="append", default=[], metavar="'DETECTOR bN rR tT + CLASSIFIER bM rR tT'",
                        help="validate these pipelines instead of a random draw (r, t default to 1)")
    args, overrides = parser.parse_known_args()
    try:
        cfg, profiles, space, evaluator, objectives = setup(overrides)
    except UserError as err:  # no profile cache yet, or one of an older profiler
        raise SystemExit(f"error: {err}") from None
    if args.validate_only:
        return validate_composition(cfg, profiles, evaluator, args)
    directions = [o.direction for o in objectives]
    choices, values, feasible, per_config_us = exhaustive(space, evaluator, objectives)
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
        v, f = study_history(space, evaluator, objectives, seed, n_trials, args.sampler)
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
        validate_composition(cfg, profiles, evaluator, args)


def validate_composition(cfg, profiles: ProfileTable, evaluator, args) -> None:
    """Held-out pipelines from the cached table, each run `args.cycles` times; errors as the median over cycles."""
    import io
    import random

    from rich.console import Console

    from sustainable_ipa.adapt.optimizer import pipeline_p99_s
    from sustainable_ipa.config import available_cores
    from sustainable_ipa.search.machine_load import reference_batch_s

    cores = min(available_cores(cfg.hardware), len(os.sched_getaffinity(0)))
    candidates = [c for c in pipelines_in(profiles, cores)
                  if evaluator.evaluate(c)["throughput_rps"] >= 1.5 * cfg.search.load_rps]  # a steady queue
    if args.pipeline:
        held_out = [parse_pipeline(text, list(cfg.pipeline.stages)) for text in args.pipeline]
    else:  # at least two that use more than one core in a stage, where this machine has the cores for them
        draw = random.Random(1)
        wide = [c for c in candidates if any(s.threads > 1 or s.replicas > 1 for s in c.stages().values())]
        held_out = draw.sample(wide, min(2, len(wide)))
        held_out += draw.sample([c for c in candidates if c not in held_out], min(args.held_out - len(held_out),
                                                                                len(candidates) - len(held_out)))
        if not wide:
            print(f"  (no configuration with threads = 2 or replicas > 1 fits this machine's {cores} cores beside the "
                  "other stage: all held-out pipelines use one core per stage)")
    model = pipeline_p99_s(profiles, cfg.search.load_rps)
    steady_p99_s = {c: model(c) for c in held_out}
    sla_s = args.sla if args.sla is not None else statistics.median(steady_p99_s.values())
    print(f"composition vs measurement: profiles cached on {profiles.hardware} (not re-measured), Poisson load "
          f"{cfg.search.load_rps} rps, {args.cycles} runs × {args.repetitions} repetition(s) × {args.requests} "
          f"requests on {cores} cores; {len(candidates)} candidates keep up; verdict SLA {sla_s:.3f} s. "
          f"Errors: median over runs [each run]; drift: the reference batch beside each run ÷ when profiled − 1")
    quiet = Console(file=io.StringIO())
    rows = []
    for choice in held_out:
        found = []
        for cycle in range(args.cycles):
            drift = reference_batch_s() / statistics.mean(
                profiles.get(stage, c.variant, c.batch_size, c.threads).reference_batch_s
                for stage, c in choice.stages().items()) - 1
            record = run_held_out(cfg, choice, args.requests, args.repetitions, seed=cycle, console=quiet)
            found.append({**compare_with_run(cfg, profiles, evaluator, choice, record, args, seed=cycle),
                          "drift": drift, "measured_p99_s": record.get("latency_p99_s_mean", record.get("latency_p99_s"))})
        median = {k: statistics.median(f[k] for f in found) for k in found[0]}
        median["verdicts_agree"] = (steady_p99_s[choice] <= sla_s) == (median["measured_p99_s"] <= sla_s)
        rows.append(median)

        def show(key: str) -> str:
            return f"{median[key]:+.1%} [{', '.join(f'{f[key]:+.1%}' for f in found)}]"

        print(f"  {describe(choice)}: p50 {show('p50')}; p99 {show('p99')}; energy/request {show('energy')}; "
              f"drift {show('drift')}; SLA verdict: model {'meets' if steady_p99_s[choice] <= sla_s else 'misses'} "
              f"(steady p99 {steady_p99_s[choice]:.3f} s), measured "
              f"{'meets' if median['measured_p99_s'] <= sla_s else 'misses'} (p99 {median['measured_p99_s']:.3f} s)",
              flush=True)
    for key, bound in (("p50", 0.10), ("p99", 0.20), ("energy", 0.10)):
        within = sum(abs(r[key]) <= bound for r in rows)
        print(f"  {key}: within {bound:.0%} on {within} of {len(rows)}; largest {max(abs(r[key]) for r in rows):.1%}")
    print(f"  SLA verdicts agree on {sum(r['verdicts_agree'] for r in rows)} of {len(rows)}; machine drift across "
          f"runs {min(r['drift'] for r in rows):+.1%} to {max(r['drift'] for r in rows):+.1%}")


def pipelines_in(profiles: ProfileTable, cores: int):
    """Every pipeline the cached table can compose (replicas 1–2) that fits `cores`."""
    from itertools import product

    from sustainable_ipa.search.space import PipelineChoice, StageChoice

    stages = {stage: [StageChoice(v, b, t, r, p, rt) for (s, v, b, t, p, rt) in profiles.rows if s == stage
                      for r in (1, 2)]
              for stage in profiles.items_per_request}
    return [c for c in (PipelineChoice(**dict(zip(stages, combo))) for combo in product(*stages.values()))
            if c.cores <= cores]


def run_held_out(cfg, choice, requests: int, repetitions: int, seed: int, console) -> dict[str, float]:
    """The pipeline run for real under the search's Poisson load; its run record's metrics."""
    from sustainable_ipa.config import available_cores
    from sustainable_ipa.experiment import run_job

    run_cfg = compose([f"hardware.cores={available_cores(cfg.hardware)}", "weights=random",
                       f"trial.repetitions={repetitions}", f"trial.requests={requests}", "trial.warmup=2",
                       "trial.load=poisson", f"trial.seed={seed}", f"trial.rate_rps={cfg.search.load_rps}",
                       "tracking.experiment=composition-validation", *choice.overrides()])
    return run_job(run_cfg, console=console).metrics


def compare_with_run(cfg, profiles: ProfileTable, evaluator, choice, record: dict[str, float], args,
                     seed: int) -> dict[str, float]:
    """Relative errors of the composition against one run's record: latency replayed on the run's own arrivals."""
    from sustainable_ipa.pipeline.load import arrival_offsets_s
    from sustainable_ipa.search.compose import latency_s, predict

    measured = {k: record.get(f"{k}_mean", record.get(k)) for k in ("latency_p50_s", "latency_p99_s",
                                                                    "energy_j_per_request")}
    traces = [arrival_offsets_s(args.requests, "poisson", cfg.search.load_rps, seed + rep)
              for rep in range(args.repetitions)]  # the arrivals run_job draws for each repetition
    predicted = [latency_s(choice, profiles, arrivals_s=t) for t in traces]
    energy_j = predict(choice, profiles, cfg.search.load_rps, cfg.trial.sla_s, evaluator.reference,
                       0.0)["energy_j_per_request"]
    return {"p50": statistics.mean(p[0] for p in predicted) / measured["latency_p50_s"] - 1,
            "p99": statistics.mean(p[1] for p in predicted) / measured["latency_p99_s"] - 1,
            "energy": energy_j / measured["energy_j_per_request"] - 1}


def describe(choice) -> str:
    return " + ".join(f"{c.variant} b{c.batch_size} r{c.replicas} t{c.threads}" for c in choice.stages().values())


def parse_pipeline(text: str, stage_names: list[str]):
    """'yolov5s b1 r2 t1 + resnet18 b2' → that pipeline (replicas and threads default to 1), a part per stage."""
    from sustainable_ipa.search.space import PipelineChoice, StageChoice

    try:
        stages = []
        for part in text.split("+"):
            variant, *knobs = part.split()
            given = {k[0]: int(k[1:]) for k in knobs}
            stages.append(StageChoice(variant, given["b"], given.get("t", 1), given.get("r", 1)))
        if len(stages) != len(stage_names):
            raise ValueError
        return PipelineChoice(**dict(zip(stage_names, stages)))
    except (ValueError, KeyError, TypeError):
        raise SystemExit(f"--pipeline {text!r}: write it as 'yolov5s b1 r1 t1 + resnet18 b2 r1 t1'") from None


if __name__ == "__main__":
    main()
