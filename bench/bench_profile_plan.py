"""What profiling a space would take, in full and with the reductions, as the job's own plan estimates it.

    python bench/bench_profile_plan.py [hydra overrides, e.g. pipeline=audio-qa 'search.space.asr.threads=[1]']

Probes every variant of search.space once (a build and one batch of one item, torch fp32, as a profiling job does
before it starts) and prints the plan and its estimate twice: every profile timed `profiling.repeats` rounds
(timed_batch_sizes=0, tolerance=0: the full profile) and with the configured reductions, where the stopping rule is
counted at `profiling.min_repeats` rounds (the least it can take) and at `profiling.repeats` (the most). These are
estimates from the probe, extrapolated, not timings: bench/RESULTS.md says how far the probe's estimate was from a
timed profile. Exports are counted at 20 s each.
"""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from sustainable_ipa.config import compose  # noqa: E402
from sustainable_ipa.data import load_dataset  # noqa: E402
from sustainable_ipa.families import stage_families  # noqa: E402
from sustainable_ipa.fingerprint import this_machine  # noqa: E402
from sustainable_ipa.search.profiler import Reduction, plan_profiles  # noqa: E402
from sustainable_ipa.search.profiling_job import build_stage_model, reduction_of  # noqa: E402
from sustainable_ipa.search.profiling_plan import PlanClock, memory_needed, minutes, probe_variants  # noqa: E402
from sustainable_ipa.search.space import configured_space  # noqa: E402
from sustainable_ipa.search.workload import pipeline_workload  # noqa: E402


def main() -> None:
    cfg = compose(sys.argv[1:])
    space = configured_space(cfg, max_cores=None)
    workload = pipeline_workload(stage_families(cfg.pipeline), load_dataset(cfg.dataset))
    full = plan_profiles(space, None, Reduction())
    variants = list(dict.fromkeys((stage, variant) for stage, variant, *_ in full.groups))
    print(f"machine: {this_machine().key}")
    print(f"probing {len(variants)} variants of pipeline {cfg.pipeline.name} ...", flush=True)
    probes = probe_variants(variants, build_stage_model(cfg, workload), workload.inputs)
    for (stage, variant), p in probes.items():
        print(f"  {stage} {variant}: {p.item_s * 1000:.0f} ms an item, build {p.build_s:.1f} s, "
              f"+{p.memory_bytes / 2**20:.0f} MB")
    repeats, least = int(cfg.profiling.repeats), int(cfg.profiling.min_repeats)
    reduced = plan_profiles(space, None, reduction_of(cfg.profiling))
    full_s = PlanClock(full, probes, repeats).left_s()
    print(f"full: {len(full.timed)} profiles timed, {len(full.groups)} builds ({full.exports} exports), "
          f"{repeats} rounds each: about {minutes(full_s)}")
    for rounds in (least, repeats):
        reduced_s = PlanClock(reduced, probes, rounds).left_s()
        print(f"reduced: {len(reduced.timed)} timed + {len(reduced.fitted)} fitted, {rounds} rounds each: about "
              f"{minutes(reduced_s)} ({reduced_s / full_s:.2f} of full)")
    need, what = memory_needed(full, probes)
    print(f"memory: about {need / 2**30:.1f} GiB at most ({what})")


if __name__ == "__main__":
    main()
