"""How much each profiling reduction costs in accuracy, against full profiles on held-out points.

    python bench/bench_profile_reduction.py PROFILES.csv [--timed 3] [--tolerance 0.05] [--min-repeats 8]

PROFILES.csv is a profile table measured in full (every batch size timed `profiling.repeats` rounds, no stopping):
`python src/profiling.py profiling.timed_batch_sizes=0 profiling.tolerance=0 <space>` writes one into
`profiling.cache_dir`. Nothing is measured again here; each reduction is replayed on those measurements:

- the batch fit: per (stage, variant, threads, precision, runtime), the fit is made from the medians of the batch
  sizes `--timed` would time (`batch_fit.batch_sizes_to_time`) and compared, at every other batch size, with that
  batch size's measured median (held out: the fit never saw it). Linear and IPA's quadratic side by side.
- sequential stopping: each profile's samples, in the order they were timed, are cut where `mean_known` would have
  stopped; the mean of what is left is compared with the mean of all of them, and the rounds saved counted.

Prints medians and 90th percentiles of the relative errors, and the share of timing the reductions save (batch
latency × rounds: what profiling spends).
"""

from __future__ import annotations

import argparse
import sys
from collections import defaultdict
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from sustainable_ipa.search.batch_fit import batch_sizes_to_time, fit_batches, mean_known  # noqa: E402
from sustainable_ipa.search.profiles import ProfileTable  # noqa: E402


def fit_errors(table: ProfileTable, timed_count: int, degree: int) -> tuple[list[float], float, float]:
    """Relative errors of the fit at held-out batch sizes, and the seconds of timing all vs the timed ones take."""
    groups = defaultdict(dict)
    for p in table.rows.values():
        groups[(p.stage, p.variant, p.threads, p.precision, p.runtime)][p.batch_size] = p
    errors, all_s, timed_s = [], 0.0, 0.0
    for by_batch in groups.values():
        timed = batch_sizes_to_time(list(by_batch), timed_count)
        held_out = [b for b in by_batch if b not in timed]
        all_s += sum(sum(p.latency_samples_s) for p in by_batch.values())
        timed_s += sum(sum(by_batch[b].latency_samples_s) for b in timed)
        if not held_out:
            continue
        fit = fit_batches(timed, [by_batch[b].latency_p50_s for b in timed], degree)
        errors += [abs(fit(b) / by_batch[b].latency_p50_s - 1) for b in held_out]
    return errors, all_s, timed_s


def stopping_errors(table: ProfileTable, tolerance: float, min_repeats: int) -> tuple[list[float], float, float]:
    errors, all_s, kept_s = [], 0.0, 0.0
    for p in table.rows.values():
        samples = list(p.latency_samples_s)
        n = next((k for k in range(1, len(samples) + 1) if mean_known(samples[:k], tolerance, min_repeats)),
                 len(samples))
        errors.append(abs(np.mean(samples[:n]) / np.mean(samples) - 1))
        all_s += sum(samples)
        kept_s += sum(samples[:n])
    return errors, all_s, kept_s


def line(name: str, errors: list[float], all_s: float, kept_s: float) -> str:
    if not errors:
        return f"{name}: no held-out points"
    e = np.asarray(errors) * 100
    return (f"{name}: n={len(e)}  error median {np.median(e):.1f} %  p90 {np.percentile(e, 90):.1f} %  "
            f"max {e.max():.1f} %  timing kept {kept_s / all_s:.0%} of {all_s:.0f} s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("profiles", type=Path)
    parser.add_argument("--timed", type=int, default=3, help="batch sizes timed per profile group (the rest fitted)")
    parser.add_argument("--tolerance", type=float, default=0.05)
    parser.add_argument("--min-repeats", type=int, default=8)
    args = parser.parse_args()
    table = ProfileTable.load(args.profiles)
    rounds = sorted({len(p.latency_samples_s) for p in table.rows.values()})
    print(f"{len(table.rows)} profiles of {table.fingerprint} ({args.profiles}), rounds per profile {rounds}")
    for degree, name in ((1, "linear"), (2, "quadratic (IPA)")):
        print(line(f"batch fit, {name}, {args.timed} batch sizes timed", *fit_errors(table, args.timed, degree)))
    print(line(f"sequential stopping at ±{args.tolerance:.0%} (95 %), at least {args.min_repeats} rounds",
               *stopping_errors(table, args.tolerance, args.min_repeats)))


if __name__ == "__main__":
    main()
