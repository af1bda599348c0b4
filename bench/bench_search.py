"""Search benchmarks on the profile evaluator over the full video space (profiles measured on this machine).

1. Composition speed: microseconds per configuration.
2. Hypervolume: the study's feasible Pareto hypervolume vs the exhaustive one, as a function of the number of
   evaluations, median over 5 seeds (same objectives, constraint and evaluator as `src/search.py`, without the
   MLflow record per trial).
3. Composition accuracy: on held-out configurations, predicted vs measured p50 latency and energy per request
   (`--validate`, runs the pipeline; Poisson load at search.load_rps), each run bracketed by fresh profiles and
   its latency replayed on its own arrivals; the error split into service times and queueing model.

    python src/profiling.py                     # first: the profiles (cached in mlruns/profiles/<hardware>.csv)
    python bench/bench_search.py [--validate]   # prints the figures and writes bench/out/hypervolume.png
    python bench/bench_search.py --validate-only [--pipeline 'yolov5s b1 + resnet18 b2'] [--cycles 3]
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
from sustainable_ipa.errors import UserError  # noqa: E402
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
    parser.add_argument("--cycles", type=int, default=3, help="runs of each held-out configuration, each "
                        "bracketed by fresh profiles")
    parser.add_argument("--repetitions", type=int, default=1, help="repetitions in each of those runs")
    parser.add_argument("--pipeline", action="append", default=[], metavar="'DETECTOR bN + CLASSIFIER bM'",
                        help="validate these pipelines (one thread, one replica per stage) instead of a random draw")
    args, overrides = parser.parse_known_args()
    try:
        cfg, profiles, space, evaluator, objectives = setup(overrides)
    except UserError as err:  # no profile cache yet, or one of an older profiler
        raise SystemExit(f"error: {err}") from None
    if args.validate_only:
        return validate_composition(cfg, evaluator, args.held_out, args.requests, args.repetitions, args.cycles,
                                    args.pipeline)
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
        validate_composition(cfg, evaluator, args.held_out, args.requests, args.repetitions, args.cycles,
                                    args.pipeline)


def validate_composition(cfg, evaluator, held_out_count: int, requests: int, repetitions: int, cycles: int,
                         named: list[str] = ()) -> None:
    """Each held-out pipeline, `cycles` times: run it, with its two stages profiled just before and just after
    (each run is predicted from the mean of the profiles that bracket it). This VM's speed drifts by tens of
    percent over minutes (neighbours on the host), so a profile taken earlier mixes that drift into the model's
    error; bracketing keeps the gap short, and the median over cycles is the figure, with every cycle shown.
    Each error is also split: the stages' batch latencies inside the run vs in the profiles (service times), and
    the replay fed the run's own batch latencies (the queueing model alone)."""
    import io
    import random
    import tempfile

    from rich.console import Console

    from sustainable_ipa.search.space import PipelineChoice, StageChoice

    # Held-out: pipelines never run while profiling (profiles are per stage), drawn at random among those that fit
    # this 2-core machine and keep up with the load with some margin (an overloaded queue has no steady latency).
    candidates = [PipelineChoice(StageChoice(d, db, 1, 1), StageChoice(c, cb, 1, 1))
                  for d in cfg.search.space.detector.variants for db in cfg.search.space.detector.batch_size
                  for c in cfg.search.space.classifier.variants for cb in cfg.search.space.classifier.batch_size]
    candidates = [c for c in candidates if evaluator.evaluate(c)["throughput_rps"] >= 1.5 * cfg.search.load_rps]
    held_out = [parse_pipeline(text) for text in named] if named else \
        random.Random(1).sample(candidates, min(held_out_count, len(candidates)))
    print(f"composition vs measurement (Poisson load {cfg.search.load_rps} rps, {cycles} cycles × {repetitions} "
          f"repetition(s) × {requests} requests, 2 cores; {len(candidates)} candidates keep up). Each run bracketed "
          f"by fresh profiles; latency replayed on the run's own arrivals; errors as median over cycles [each cycle]:")
    quiet = Console(file=io.StringIO())
    medians = []
    for choice in held_out:
        det, db = choice.detector.variant, choice.detector.batch_size
        cls, cb = choice.classifier.variant, choice.classifier.batch_size
        found = []
        with tempfile.TemporaryDirectory() as cache:
            before = fresh_profiles(choice, cache, quiet)
            for cycle in range(cycles):
                record = run_held_out(cfg, choice, requests, repetitions, seed=cycle, console=quiet)
                after = fresh_profiles(choice, cache, quiet)
                found.append(compare_with_run(cfg, evaluator, choice, [before, after], record, requests,
                                              repetitions, seed=cycle))
                before = after
        median = {k: statistics.median(f[k] for f in found) for k in found[0]}
        medians.append(median)

        def show(key: str, unit: str = "%") -> str:
            fmt = (lambda v: f"{v:+.1%}") if unit == "%" else (lambda v: f"{v:.2f}×")
            return f"{fmt(median[key])} [{', '.join(fmt(f[key]) for f in found)}]"

        print(f"  {det} b{db} + {cls} b{cb}: p50 latency {show('latency')}; energy/request {show('energy')}\n"
              f"    mean batch latency in the run ÷ profiled p50: detector {show('detector_inflation', 'x')}, classifier "
              f"{show('classifier_inflation', 'x')}; replay on the run's own batch latencies {show('queueing')}; "
              f"profile drift across a run up to {max(f['drift'] for f in found):.1%}", flush=True)
    for key, what in (("latency", "p50 latency"), ("energy", "energy per request"),
                      ("queueing", "p50 latency replayed on the run's own batch latencies")):
        within = sum(abs(m[key]) <= 0.10 for m in medians)
        print(f"  {what}: within 10 % on {within} of {len(medians)} (median over cycles); largest "
              f"{max(abs(m[key]) for m in medians):.1%}")


def run_held_out(cfg, choice, requests: int, repetitions: int, seed: int, console) -> dict[str, float]:
    """The pipeline run for real under the search's Poisson load; its run record's metrics."""
    from sustainable_ipa.experiment import run_job

    run_cfg = compose(["hardware.cores=2", "weights=random", f"trial.repetitions={repetitions}",
                       f"trial.requests={requests}", "trial.warmup=2", "trial.load=poisson", f"trial.seed={seed}",
                       f"trial.rate_rps={cfg.search.load_rps}", "tracking.experiment=composition-validation",
                       *choice.overrides()])
    return run_job(run_cfg, console=console).metrics


def compare_with_run(cfg, evaluator, choice, bracket: list[ProfileTable], record: dict[str, float], requests: int,
                     repetitions: int, seed: int) -> dict[str, float]:
    """Relative errors of the composition on the mean of the bracketing profiles against one run's record."""
    from sustainable_ipa.pipeline.load import arrival_offsets_s
    from sustainable_ipa.search.compose import predict, trace_latency_s

    profiles = average_tables(bracket)
    measured = {k: record.get(f"{k}_mean", record.get(k))
                for k in ("latency_p50_s", "energy_j_per_request", "detector_batch_s", "classifier_batch_s")}
    traces = [arrival_offsets_s(requests, "poisson", cfg.search.load_rps, seed + rep)
              for rep in range(repetitions)]  # the arrivals run_job draws for each repetition

    def replayed_p50_s(table: ProfileTable) -> float:
        return statistics.mean(trace_latency_s(choice, table, t)[0] for t in traces)

    in_run_s = {stage: measured[f"{stage}_batch_s"] for stage in ("detector", "classifier")}
    energy_j = predict(choice, profiles, cfg.search.load_rps, cfg.trial.sla_s, evaluator.reference,
                       0.0)["energy_j_per_request"]
    out = {"latency": replayed_p50_s(profiles) / measured["latency_p50_s"] - 1,
           "energy": energy_j / measured["energy_j_per_request"] - 1,
           "queueing": replayed_p50_s(with_batch_latency(profiles, choice, in_run_s)) / measured["latency_p50_s"] - 1,
           "drift": max(abs(b.latency_p50_s / a.latency_p50_s - 1)
                        for a, b in zip(*(t.rows.values() for t in bracket)))}
    for stage, c in choice.stages().items():
        out[f"{stage}_inflation"] = in_run_s[stage] / profiles.get(stage, c.variant, c.batch_size, c.threads).latency_p50_s
    return out


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


def parse_pipeline(text: str):
    """'yolov5s b1 + resnet18 b2' → that pipeline with one thread and one replica per stage."""
    from sustainable_ipa.search.space import PipelineChoice, StageChoice

    try:
        stages = [part.split() for part in text.split("+")]
        (d, db), (c, cb) = stages
        return PipelineChoice(StageChoice(d, int(db.lstrip("b")), 1, 1), StageChoice(c, int(cb.lstrip("b")), 1, 1))
    except ValueError:
        raise SystemExit(f"--pipeline {text!r}: write it as 'yolov5s b1 + resnet18 b2'") from None


def with_batch_latency(profiles: ProfileTable, choice, batch_s: dict[str, float]) -> ProfileTable:
    """`profiles` with the stages of `choice` taking `batch_s` per batch (p50 and p99 alike)."""
    from dataclasses import replace

    rows = dict(profiles.rows)
    for stage, c in choice.stages().items():
        key = (stage, c.variant, c.batch_size, c.threads)
        rows[key] = replace(rows[key], latency_p50_s=batch_s[stage], latency_p99_s=batch_s[stage],
                            throughput_items_s=c.batch_size / batch_s[stage])
    return ProfileTable(list(rows.values()), profiles.hardware, profiles.items_per_request)


def average_tables(tables: list[ProfileTable]) -> ProfileTable:
    from dataclasses import replace

    rows = []
    for key, first in tables[0].rows.items():
        same = [t.rows[key] for t in tables]
        mean = {name: statistics.mean(getattr(r, name) for r in same)
                for name in ("latency_p50_s", "latency_p99_s", "energy_j_per_item")}
        rows.append(replace(first, **mean, throughput_items_s=first.batch_size / mean["latency_p50_s"]))
    return ProfileTable(rows, tables[0].hardware, tables[0].items_per_request)


if __name__ == "__main__":
    main()
