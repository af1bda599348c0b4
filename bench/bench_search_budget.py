"""Where the study's budget goes on a small machine (issue 16, item 5): the default space with hardware.cores=2 and
16, on the profile evaluator, three ways of handling configurations that need more cores than the machine has:

- prune (the search before issue 16): variant, batch, threads and replicas suggested per stage; a configuration
  over the cores is pruned, and pruned trials count toward search.n_trials.
- constraint: the same per-stage suggestions; a configuration over the cores is still composed and told to the
  sampler with a `cores_over` constraint it learns from, and does not count toward the budget. Only the profile
  evaluator can do this: the run evaluator cannot run what does not fit, so it has no values to tell.
- categorical: variant and batch per stage, then one core allocation among those that fit, as a categorical.
- fit (`search/study.py` now): the same, the allocation as an index into them ordered by cores (an ordinal
  scale the sampler can model); where every combination fits, threads and replicas per stage as in prune.

The figure is the hypervolume of the SLA-feasible trials among the first n counted trials (Optuna's
`compute_hypervolume`, through `search/hypervolume.py`), divided by the hypervolume of the whole space's
SLA-feasible configurations, for the same reference point; median over seeds.

    python src/profiling.py                               # first: the profile table (mlruns/profiles/<hardware>.csv)
    python bench/bench_search_budget.py [--trials 100] [--seeds 5] [--sampler tpe] [HYDRA OVERRIDES]

A profile cache of an older profiler version is refused by the search; here it is read into an in-memory table
(`synthetic_table`) so that the comparison can run on the profiles a user already has: what matters for it is
the ranking of configurations, not the absolute figures. Writes bench/search_budget_<cores>cores.png.
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
import os
import platform
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
from sustainable_ipa.search.hypervolume import hypervolume, hypervolume_history, reference_point  # noqa: E402
from sustainable_ipa.search.objectives import resolve_objectives  # noqa: E402
from sustainable_ipa.search.profiler import cache_path  # noqa: E402
from sustainable_ipa.search.profiles import ProfileTable, StageProfile  # noqa: E402
from sustainable_ipa.search.samplers import make_sampler  # noqa: E402
from sustainable_ipa.search.space import (ALLOCATION, PipelineChoice, SearchSpace, StageChoice,  # noqa: E402
                                          allocation_label)
from sustainable_ipa.search.study import suggest  # noqa: E402

MODES = ("prune", "constraint", "categorical", "fit")
CHECKPOINTS = (10, 25, 50, 100, 200, 400)


def load_profiles(cfg) -> tuple[ProfileTable, str]:
    """The cached table as the search reads it or, when the search refuses it (older profiler), the same rows
    read into an in-memory table. Returns the table and a line saying which."""
    path = cache_path(cfg.profiling.cache_dir, cfg.hardware.name, this_machine())
    try:
        return ProfileTable.load(path), f"profile cache {path} as the search reads it"
    except UserError as err:
        if not path.is_file():
            raise
        return synthetic_table(path), f"profile cache {path} read into an in-memory table ({err.problem})"


def synthetic_table(path: Path) -> ProfileTable:
    """Rows of a profile cache of any profiler version as today's `StageProfile`s. A cache of 3 timed batches
    has only a p50 and a p99 (its maximum): the samples are 19 batches at the p50 and one at the p99."""
    names = {f.name for f in dataclasses.fields(StageProfile)}
    rows, items, hardware = [], {}, ""
    with open(path, newline="") as f:
        for raw in csv.DictReader(f):
            hardware = raw["hardware"]
            items[raw["stage"]] = tuple(int(n) for n in raw["items_per_request"].split())
            values = {"stage": raw["stage"], "variant": raw["variant"], "batch_size": int(raw["batch_size"]),
                      "threads": int(raw["threads"]), "energy_j_per_item": float(raw["energy_j_per_item"]),
                      "energy_source": raw["energy_source"]}
            if "latency_samples_s" in names:
                samples = raw.get("latency_samples_s")
                values["latency_samples_s"] = tuple(float(s) for s in samples.split()) if samples else \
                    (float(raw["latency_p50_s"]),) * 19 + (float(raw["latency_p99_s"]),)
            else:
                values.update({k: float(raw[k]) for k in ("latency_p50_s", "latency_p99_s", "throughput_items_s")})
            rows.append(StageProfile(**values))
    return ProfileTable(rows, hardware, items)


def suggest_per_stage(trial: optuna.Trial, space: SearchSpace) -> PipelineChoice:
    """The search's suggestion before issue 16: every knob of every stage on its own."""
    return PipelineChoice(**{stage: StageChoice(
        trial.suggest_categorical(f"{stage}.variant", list(o["variants"])),
        *(trial.suggest_categorical(f"{stage}.{knob}", list(o[knob]))
          for knob in ("batch_size", "threads", "replicas")))
        for stage, o in space.stages.items()})


@dataclasses.dataclass
class Outcome:
    values: np.ndarray  # per counted trial (zeros for a pruned one)
    feasible: np.ndarray  # per counted trial: evaluated and within the SLA
    fit: int  # counted trials whose configuration fits the cores
    trials: int  # all trials of the study
    evaluations: int  # configurations composed, fitting or not
    evaluated_before: np.ndarray  # per counted trial: configurations composed before it (pruned: none)


def suggest_categorical_allocation(trial: optuna.Trial, space: SearchSpace) -> PipelineChoice:
    """A design measured and not taken: the fitting allocations as an unordered categorical."""
    labels = [allocation_label(a) for a in space.allocations()]
    label = trial.suggest_categorical(ALLOCATION, labels)
    allocation = space.allocations()[labels.index(label)]
    return PipelineChoice(**{stage: StageChoice(
        trial.suggest_categorical(f"{stage}.variant", list(o["variants"])),
        trial.suggest_categorical(f"{stage}.batch_size", list(o["batch_size"])), *allocation[stage])
        for stage, o in space.stages.items()})


def run_mode(mode: str, space: SearchSpace, evaluator, objectives, sampler: str, seed: int, budget: int) -> Outcome:
    """One study of `budget` counted trials, counted as `run_study` does in that mode."""
    study = optuna.create_study(directions=[o.direction for o in objectives], sampler=make_sampler(sampler, seed))
    counted: list[tuple[list[float] | None, bool]] = []
    evaluations, before = [0], []

    def objective(trial: optuna.Trial):
        suggester = {"fit": suggest, "categorical": suggest_categorical_allocation}.get(mode, suggest_per_stage)
        choice = suggester(trial, space)
        over = max(choice.cores - space.max_cores, 0)
        if over and mode == "prune":
            counted.append((None, False))
            before.append(evaluations[0])
            raise optuna.TrialPruned()
        evaluations[0] += 1
        m = evaluator.evaluate(choice)
        values = [m[o.metric] for o in objectives]
        trial.set_constraint("sla_violation_s", m["sla_violation_s"])
        if mode == "constraint":
            trial.set_constraint("cores_over", float(over))
        if not over:
            counted.append((values, m["sla_violation_s"] <= 0))
            before.append(evaluations[0] - 1)
        return values

    def stop_at_budget(study, trial):
        if len(counted) >= budget:
            study.stop()

    # A cap for the constraint mode, whose sampler may keep proposing configurations that do not fit.
    study.optimize(objective, n_trials=budget * 20, callbacks=[stop_at_budget])
    values = np.array([v if v is not None else [0.0] * len(objectives) for v, _ in counted])
    return Outcome(values, np.array([ok for _, ok in counted]), sum(v is not None for v, _ in counted),
                   len(study.trials), evaluations[0], np.array(before))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--trials", type=int, default=100, help="counted trials per study (search.n_trials)")
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--sampler", default="tpe")
    parser.add_argument("--cores", type=lambda text: [int(c) for c in text.split(",")], default=[2, 16],
                        help="core counts, comma-separated")
    args, overrides = parser.parse_known_args()
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    began = time.perf_counter()
    cpu = next((line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name")),
               platform.processor())
    print(f"command: python bench/bench_search_budget.py {' '.join(sys.argv[1:])}\nCPU: {cpu}, "
          f"{len(os.sched_getaffinity(0))} cores")
    profiles, source = load_profiles(compose(overrides))
    print(f"profiles: {source}; {len(profiles.rows)} rows, energy from "
          f"{', '.join(sorted({r.energy_source for r in profiles.rows.values()}))}")
    checkpoints = [k for k in CHECKPOINTS if k <= args.trials] or [args.trials]
    for cores in args.cores:
        cfg = compose([f"hardware.cores={cores}", *overrides])
        objectives = resolve_objectives(cfg.search.objectives)
        directions = [o.direction for o in objectives]
        space = SearchSpace.from_config(cfg.search.space, cfg.pipeline, cores)
        evaluator = ProfileEvaluator(profiles, cfg)
        fitting = space.all_choices()
        total = len(space.all_choices(check_cores=False))
        metrics = [evaluator.evaluate(c) for c in fitting]
        values = np.array([[m[o.metric] for o in objectives] for m in metrics])
        feasible = np.array([m["sla_violation_s"] <= 0 for m in metrics])
        if not feasible.any():
            raise SystemExit(f"no configuration of the {cores}-core space meets the SLA: nothing to compare")
        reference = reference_point(values[feasible], directions)
        full = hypervolume(values[feasible], directions, reference)
        print(f"\n{cores} cores: {len(fitting)} of {total} configurations fit ({len(fitting) / total:.1%}), "
              f"{int(feasible.sum())} of them meet the {cfg.trial.sla_s} s SLA at {cfg.search.load_rps} rps; "
              f"objectives {[o.name for o in objectives]}, {args.sampler}, {args.seeds} seeds × {args.trials} "
              "counted trials")
        curves, shares, per_evaluation = {}, {}, {}
        for mode in MODES:
            curves[mode], shares[mode], per_evaluation[mode] = [], [], []
            for seed in range(args.seeds):
                t0 = time.perf_counter()
                out = run_mode(mode, space, evaluator, objectives, args.sampler, seed, args.trials)
                history = hypervolume_history(out.values, out.feasible, directions, reference)
                curves[mode].append(np.array(history) / full)
                shares[mode].append((out.fit, out.trials, out.evaluations))
                # the same budget counted in compositions: what the constraint mode spends on what does not fit
                within = out.evaluated_before < args.trials
                hv = hypervolume(out.values[within & out.feasible], directions, reference)
                per_evaluation[mode].append(hv / full)
                print(f"  {mode:10s} seed {seed}: {out.trials} trials, {out.fit} fit, {out.evaluations} evaluated, "
                      f"final hypervolume {curves[mode][-1][-1]:.3f} of exhaustive ({time.perf_counter() - t0:.0f} s)",
                      flush=True)
        print("| counted trials | " + " | ".join(MODES) + " | fit ÷ prune |")
        print("| --- | " + " | ".join("---" for _ in MODES) + " | --- |")
        medians = {mode: np.median(np.vstack(curves[mode]), axis=0) for mode in MODES}
        for k in checkpoints:
            row = [medians[mode][k - 1] for mode in MODES]
            ratio = f"{row[-1] / row[0]:.2f}×" if row[0] > 0 else "∞ (prune: none feasible)"
            print(f"| {k} | " + " | ".join(f"{x:.3f}" for x in row) + f" | {ratio} |")
        for mode in MODES:
            fit = statistics.median(s[0] for s in shares[mode])
            trials = statistics.median(s[1] for s in shares[mode])
            evaluations = statistics.median(s[2] for s in shares[mode])
            empty = sum(1 for curve in curves[mode] if curve[-1] == 0)
            print(f"  {mode}: median {fit:.0f} of {trials:.0f} trials fit the cores ({fit / trials:.1%}); "
                  f"{evaluations:.0f} evaluations; {empty} of {args.seeds} studies found no trial within the SLA; "
                  f"hypervolume at {args.trials} evaluations {statistics.median(per_evaluation[mode]):.3f}")
        plot(cores, curves, args, len(fitting), total)
    print(f"\ntook {time.perf_counter() - began:.0f} s")


def plot(cores: int, curves: dict, args, fitting: int, total: int) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    colours = {"prune": "tab:red", "constraint": "tab:orange", "categorical": "tab:gray", "fit": "tab:blue"}
    fig, ax = plt.subplots(figsize=(5.5, 3.6))
    for mode, runs in curves.items():
        x = np.arange(1, len(runs[0]) + 1)
        for run in runs:
            ax.plot(x, run, color=colours[mode], alpha=0.15, linewidth=0.8)
        ax.plot(x, np.median(np.vstack(runs), axis=0), color=colours[mode], label=f"{mode} (median of {len(runs)})")
    ax.set_xlabel("trials counted toward search.n_trials")
    ax.set_ylabel("hypervolume ÷ exhaustive")
    ax.set_title(f"{cores} cores: {fitting} of {total} configurations fit ({args.sampler})", fontsize=9)
    ax.set_ylim(0, 1.02)
    ax.legend(fontsize=8)
    fig.tight_layout()
    path = ROOT / "bench" / f"search_budget_{cores}cores.png"
    fig.savefig(path, dpi=110)
    plt.close(fig)
    print(f"  curve: {path.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
