"""A study's first answer with profiles made as trials need them (profiling.lazy=true) against profiling the space
first, on this machine, in one run; and how much of a space a study's trials visit.

    python bench/bench_lazy_profiles.py timed [--trials 10] [hydra overrides]   # both arms, each from an empty cache
    python bench/bench_lazy_profiles.py visited [hydra overrides]               # on made-up profiles: seconds

`timed`: `search_job` twice on the same space, sampler and seed, each with its own empty profile cache and store:
upfront (the reduced plan, then the study) and lazy; prints the wall time of each to the Pareto set and the ratio.
`visited`: the share of the space's profile lines (variant × threads × precision × runtime per stage) that the
configurations evaluated by studies of 10 to 100 trials touch, per sampler, on made-up profiles: what a lazy study
of the default space would profile, counted, not timed (TPE's path depends on the figures, so on real profiles it
differs).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT / "tests" / "search"))
sys.path.insert(0, str(ROOT / "tests"))

from rich.console import Console  # noqa: E402

from sustainable_ipa.config import compose, core_budget  # noqa: E402
from sustainable_ipa.fingerprint import this_machine  # noqa: E402
from sustainable_ipa.search.configurations import is_new_configuration  # noqa: E402
from sustainable_ipa.search.lazy_profiles import choice_space  # noqa: E402
from sustainable_ipa.search.profiler import missing_profiles  # noqa: E402
from sustainable_ipa.search.search_job import search_job  # noqa: E402
from sustainable_ipa.search.space import configured_space  # noqa: E402

import optuna  # noqa: E402


def store(folder: Path) -> list[str]:
    return [f"tracking.uri=sqlite:///{folder}/mlruns/mlflow.db", f"tracking.artifact_root={folder}/mlruns/artifacts",
            f"energy.idle_cache={folder}/idle.json", f"energy.lock_path={folder}/energy.lock",
            f"search.storage=sqlite:///{folder}/optuna.db", f"profiling.cache_dir={folder}/profiles"]


def lines(keys) -> set:
    return {(stage, variant, threads, precision, runtime) for stage, variant, _, threads, precision, runtime in keys}


def visited_lines(study, space) -> set:
    chosen = [space.choice_from_params(t.params) for t in study.trials
              if t.state == optuna.trial.TrialState.COMPLETE and is_new_configuration(t)]
    return {line for c in chosen for line in lines(missing_profiles(choice_space(space, c), None))}


def timed(args, overrides) -> None:
    print(f"machine: {this_machine().key}")
    results = {}
    for arm in ("upfront", "lazy"):
        with tempfile.TemporaryDirectory() as folder:
            cfg = compose([*overrides, *store(Path(folder)), f"search.n_trials={args.trials}",
                           f"profiling.lazy={arm == 'lazy'}"])
            space = configured_space(cfg, None)
            began = time.perf_counter()
            outcome = search_job(cfg, Console(stderr=True, quiet=True))
            wall_s = time.perf_counter() - began
            results[arm] = wall_s
            print(f"{arm}: first answer (Pareto set of {len(outcome.pareto)}) after {wall_s:.0f} s; lines visited "
                  f"{len(visited_lines(outcome.study, space))} of {len(lines(missing_profiles(space, None)))}",
                  flush=True)
    print(f"lazy / upfront: {results['lazy'] / results['upfront']:.2f}")


def visited(overrides) -> None:
    from study_workers import write_fake_profiles

    with tempfile.TemporaryDirectory() as folder:  # one store and one table of made-up profiles for every study
        base = [*overrides, *store(Path(folder)), "trial.sla_s=1e9"]
        write_fake_profiles(compose(base))
        for sampler in ("random", "tpe"):
            for n_trials in (10, 20, 50, 100):
                shares, of_plan = [], []
                for seed in range(3):
                    cfg = compose([*base, f"search.n_trials={n_trials}", f"search.sampler={sampler}",
                                   f"search.seed={seed}", f"search.study_name={sampler}-{n_trials}-{seed}"])
                    space = configured_space(cfg, None)  # what src/profiling.py profiles
                    planned = lines(missing_profiles(configured_space(cfg, core_budget(cfg)), None))  # the study's
                    outcome = search_job(cfg, Console(stderr=True, quiet=True))
                    seen = visited_lines(outcome.study, space)
                    shares.append(len(seen) / len(lines(missing_profiles(space, None))))
                    of_plan.append(len(seen) / len(planned))
                print(f"{sampler} n_trials={n_trials}: {statistics.median(shares):.0%} of the space's lines visited "
                      f"(median of 3 seeds, {min(shares):.0%}-{max(shares):.0%}), {statistics.median(of_plan):.0%} "
                      "of those the study's upfront plan profiles on these cores", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("what", choices=["timed", "visited"])
    parser.add_argument("--trials", type=int, default=10)
    args, overrides = parser.parse_known_args()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    if args.what == "timed":
        timed(args, overrides)
    else:
        visited(overrides)


if __name__ == "__main__":
    main()
