"""Could the 2-thread profiles be derived instead of timed? Held-out error of a per-family scaling factor, on full
profile tables (every batch size and both thread counts timed).

    python bench/bench_thread_derivation.py FULL.csv [FULL2.csv ...]

Per stage, the factor is measured on its smallest variant only (what deriving would time): per batch size, its
2-thread p50 batch latency ÷ its 1-thread one. Every other variant's 2-thread p50 is then predicted as its 1-thread
p50 × that factor and compared with its own timed 2-thread p50. Deriving is safe where the error meets the bar the
batch fit meets (median ≤ 5 %, 90th percentile ≤ 10 %, issue 27).
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from sustainable_ipa.search.profiles import ProfileTable  # noqa: E402


def errors(table: ProfileTable) -> dict[str, list[float]]:
    by_stage: dict[str, list[float]] = {}
    rows = table.rows
    for stage in dict.fromkeys(key[0] for key in rows):
        keys = [k for k in rows if k[0] == stage]
        variants = list(dict.fromkeys(k[1] for k in keys))  # in the table's order: smallest first
        reference, others = variants[0], variants[1:]
        for (_, variant, batch, threads, precision, runtime) in keys:
            if variant == reference or threads != 2:
                continue
            one = rows.get((stage, variant, batch, 1, precision, runtime))
            ref_one = rows.get((stage, reference, batch, 1, precision, runtime))
            ref_two = rows.get((stage, reference, batch, 2, precision, runtime))
            if None in (one, ref_one, ref_two):
                continue
            predicted = one.latency_p50_s * ref_two.latency_p50_s / ref_one.latency_p50_s
            measured = rows[(stage, variant, batch, 2, precision, runtime)].latency_p50_s
            by_stage.setdefault(f"{stage} (factor from {reference}; {', '.join(others)} held out)", []).append(
                predicted / measured - 1)
    return by_stage


def main() -> None:
    for path in sys.argv[1:]:
        table = ProfileTable.load(Path(path))
        print(f"{path} ({table.fingerprint}):")
        for stage, errs in errors(table).items():
            a = np.abs(errs)
            print(f"  {stage}: n = {len(errs)}, error median {np.median(a):.1%}, p90 {np.percentile(a, 90):.1%}, "
                  f"max {a.max():.1%}; safe: {np.median(a) <= 0.05 and np.percentile(a, 90) <= 0.10}")


if __name__ == "__main__":
    main()
