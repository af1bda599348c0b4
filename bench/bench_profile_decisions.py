"""Do reduced profiles change the adapter's decisions? The simulator on one trace, from a full and a reduced profile
table of the same space, interval by interval.

    python bench/bench_profile_decisions.py FULL.csv REDUCED.csv|replayed [hydra overrides: the space, the trace]

FULL.csv: every profile timed `profiling.repeats` rounds (`profiling.timed_batch_sizes=0 profiling.tolerance=0`).
REDUCED.csv: the same space profiled again with the reductions (the defaults): the comparison then holds the
reductions and the machine's drift between two profiling runs. `replayed`: the reductions replayed on FULL.csv's own
batches (its untimed batch sizes fitted from the timed ones' medians, each profile's batches cut where the stopping
rule would have stopped), which isolates the reductions. Nothing is measured here. For each policy of `adapt` (IPA's
objective, energy, carbon), an interval agrees when both tables lead to the same configuration or to ones whose
objective (α·accuracy − β·cores − δ·power or carbon rate, from each run's own figures) is within 1 %. Prints
the share of intervals that agree and the difference of each policy's energy over the trace.
"""

from __future__ import annotations

import sys
from dataclasses import replace
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from sustainable_ipa.adapt.adapt_job import policies, predictor, replay_traces  # noqa: E402
from sustainable_ipa.adapt.simulate import simulate  # noqa: E402
from sustainable_ipa.config import compose  # noqa: E402
from sustainable_ipa.metrics.accuracy import option_accuracies  # noqa: E402
from sustainable_ipa.search.batch_fit import batch_sizes_to_time, mean_known  # noqa: E402
from sustainable_ipa.search.profiler import fit_profiles  # noqa: E402
from sustainable_ipa.search.profiles import ProfileTable  # noqa: E402
from sustainable_ipa.search.space import configured_space  # noqa: E402


def close(a: float, b: float, share: float = 0.01) -> bool:
    return abs(a - b) <= share * max(abs(a), abs(b), 1e-12)


def replayed(full: ProfileTable, p) -> ProfileTable:
    """`full` as the reductions of `p` (conf/profiling) would have measured it, from its own batches."""
    rows = {}
    for key, row in full.rows.items():
        sizes = sorted({k[2] for k in full.rows if (k[0], k[1], k[3:]) == (key[0], key[1], key[3:])})
        if key[2] not in batch_sizes_to_time(sizes, int(p.timed_batch_sizes)):
            continue  # fitted below
        samples = list(row.latency_samples_s)
        n = next((k for k in range(1, len(samples) + 1) if mean_known(samples[:k], float(p.tolerance),
                                                                          int(p.min_repeats))), len(samples))
        rows[key] = replace(row, latency_samples_s=tuple(samples[:n]))
    degree = {"linear": 1, "quadratic": 2}[p.batch_fit]
    rows.update(fit_profiles([k for k in full.rows if k not in rows], rows, degree))
    return ProfileTable(list(rows.values()), full.hardware, full.items_per_request, full.fingerprint)


def objective(interval, weights) -> float:
    rate = interval.power_w * (interval.carbon_intensity_g_per_kwh / 1000 if weights.objective == "carbon" else 1)
    return weights.alpha * interval.accuracy - weights.beta * interval.cores - weights.delta * rate


def main() -> None:
    full = ProfileTable.load(Path(sys.argv[1]))
    cfg = compose(sys.argv[3:])
    reduced = replayed(full, cfg.profiling) if sys.argv[2] == "replayed" else ProfileTable.load(Path(sys.argv[2]))
    a = cfg.adapt
    replay = replay_traces(cfg)
    stage_space = configured_space(cfg, max_cores=None).profile_grid()
    reference = option_accuracies(cfg.pipeline.variants)
    print(f"trace {replay.load.name}, {replay.span_s:.0f} s in steps of {a.step_s} s; full: {len(full.rows)} profiles, "
          f"reduced ({sys.argv[2]}): {len(reduced.rows)} ({len(reduced.fitted())} fitted)")
    for policy in policies(a):
        runs = [simulate(policy, table, stage_space, reference, replay.load, replay.carbon, cfg.trial.sla_s,
                         int(a.max_cores), float(a.step_s), float(cfg.hardware.pue), predictor(cfg), a.plan_for,
                         replay.span_s) for table in (full, reduced)]
        agree = [x.stages == y.stages or close(objective(x, policy.weights), objective(y, policy.weights))
                 for x, y in zip(*runs)]
        same = sum(x.stages == y.stages for x, y in zip(*runs))
        energy = [sum(i.energy_j for i in run) for run in runs]
        print(f"{policy.name}: {sum(agree)}/{len(agree)} intervals agree ({sum(agree) / len(agree):.1%}; "
              f"{same} the same configuration); energy {energy[0]:.0f} J from full profiles, {energy[1]:.0f} J from "
              f"reduced ({energy[1] / energy[0] - 1:+.1%})")


if __name__ == "__main__":
    main()
