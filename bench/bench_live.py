"""The live closed loop against the simulator on IPA's Twitter trace (issue 20, item 5).

    python bench/bench_live.py [--repetitions N] [Hydra overrides]
    python bench/bench_live.py --from-runs RUN_ID...   # the report again from the runs it made (in order)

IPA's Twitter workload (data/traces/twitter_ipa_6h.txt), scaled to what the real pipeline serves on this machine,
30 intervals of 600 trace seconds served live at speedup 200 (3 s each). Per repetition (`trial.seed` + r: other
Poisson arrivals) one `python src/adapt.py adapt.mode=live` run; IPA's objective and the energy-aware policy run
in every repetition, the carbon-aware one in the first. Reported, per policy: the median over intervals of the
relative error of the live SLA attainment and active energy against the simulator's prediction (target ≤ 15 %),
the energy the energy-aware policy saves over IPA's objective live with its 95 % CI over the repetitions (and as
simulated), a switch's degraded service (target < 1 s) and the decision time (target < 10 ms).

Energy is the run's meter minus its idle baseline: on a machine without counters the estimate (a power curve of
this CPU applied to the sampled load, energy/power_reference.py), labelled so in every run (tag energy_source) and in
the table.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from sustainable_ipa.adapt.live import live_job, relative_error  # noqa: E402
from sustainable_ipa.config import compose  # noqa: E402
from sustainable_ipa.metrics.stats import metric_interval  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
REPETITIONS = 3
# A space the 2-core development machine serves with a core per stage: what the adapter chooses between is the
# classifier (ResNet-18/34) and the batch sizes; small frames keep the detector from being the bottleneck.
BENCH = ["weights=random", "pipeline.detector.params.image_size=320",
         "search.space.detector.variants=[yolov5n]", "search.space.classifier.variants=[resnet18,resnet34]",
         "search.space.detector.batch_size=[1,2]", "search.space.classifier.batch_size=[1,4]",
         "search.space.detector.threads=[1]", "search.space.classifier.threads=[1]",
         "search.space.detector.precision=[fp32]", "search.space.classifier.precision=[fp32]",
         "search.space.detector.runtime=[torch]", "search.space.classifier.runtime=[torch]",
         f"profiling.cache_dir={ROOT}/mlruns/profiles-bench-live",  # frames of 320: not the default profiles' 640
         # 30 intervals of 10 minutes (the trace's first 5 hours) at 1/50 of IPA's rates: a mean of 1.2 requests/s,
         # where IPA's objective affords ResNet-34 and the energy-aware policy takes ResNet-18; the trace's bursts
         # (up to 3x the mean over 10 minutes) go past what 2 cores serve
         f"adapt.load={ROOT}/data/traces/twitter_ipa_6h.txt", "adapt.load_scale=0.02", "adapt.duration_s=18000",
         "adapt.step_s=600", "adapt.speedup=200", "adapt.max_cores=2", "adapt.carbon=diurnal"]


def from_runs(run_ids: list[str]) -> None:
    """The report again from the runs a bench made (their live_comparison/intervals/switches.csv artifacts)."""
    import io

    from mlflow.tracking import MlflowClient

    cfg = compose([])
    client = MlflowClient(tracking_uri=cfg.tracking.uri)
    tables, intervals, switches = [], [], []
    for r, run_id in enumerate(run_ids):
        def read(name: str) -> pd.DataFrame:
            text = Path(client.download_artifacts(run_id, name)).read_text()
            return pd.read_csv(io.StringIO(text), index_col=0 if name == "live_comparison.csv" else None) \
                if text.strip() else pd.DataFrame(columns=["degraded_s", "prepare_s", "energy_j"])

        tables.append(read("live_comparison.csv").assign(repetition=r))
        intervals.append(read("live_intervals.csv").assign(repetition=r))
        switches.append(read("live_switches.csv").assign(repetition=r))
    print(report(pd.concat(tables), pd.concat(intervals), pd.concat(switches), float("nan")))


def main() -> None:
    if sys.argv[1:2] == ["--from-runs"]:
        return from_runs(sys.argv[2:])
    began = time.perf_counter()
    args = sys.argv[1:]
    repetitions = int(args[1]) if args[:1] == ["--repetitions"] else REPETITIONS
    overrides = BENCH + (args[2:] if args[:1] == ["--repetitions"] else args)
    tables, intervals, switches = [], [], []
    for r in range(repetitions):
        policies = "[ipa,energy,carbon]" if r == 0 else "[ipa,energy]"
        cfg = compose(overrides + [f"adapt.live_policies={policies}"])
        table = live_job(cfg, seed=int(cfg.trial.seed) + r)
        summary = table.assign(repetition=r)
        summary.attrs = {}  # its intervals and switches are kept apart: pandas cannot concatenate frames in attrs
        tables.append(summary)
        intervals.append(table.attrs["intervals"].assign(repetition=r))
        switches.append(table.attrs["switches"].assign(repetition=r))
        print(f"repetition {r + 1}/{repetitions}: run {table.attrs['run_id']} "
              f"({time.perf_counter() - began:.0f} s so far)", flush=True)
    print(report(pd.concat(tables), pd.concat(intervals), pd.concat(switches), time.perf_counter() - began))


def steady_intervals(intervals: pd.DataFrame, switches: pd.DataFrame) -> pd.DataFrame:
    """The intervals no switch overlapped (a switch spans its interval's start + preparation + drain) whose live
    decision is the simulator's."""
    length_s = intervals["window_s"].median()
    busy = set()
    for s in switches.itertuples():
        for k in range(int(s.interval), int(s.interval + np.ceil((s.prepare_s + s.degraded_s) / length_s)) + 1):
            busy.add((s.repetition, s.policy, k))
    keep = [(r, p, k) not in busy for r, p, k in zip(intervals["repetition"], intervals["policy"],
                                                      intervals["interval"])]
    return intervals[np.array(keep) & (intervals["decision"] == intervals["sim_decision"]).to_numpy()]


def report(tables: pd.DataFrame, intervals: pd.DataFrame, switches: pd.DataFrame, wall_s: float) -> str:
    if "energy_j_per_request" not in intervals:  # runs made before the loop recorded it: the same arithmetic
        step_s = intervals["window_s"].median()
        intervals = intervals.assign(
            energy_j_per_request=intervals["energy_j"] / intervals["requests"].where(intervals["requests"] > 0),
            sim_energy_j_per_request=intervals["sim_energy_j"] / (intervals["load_rps"] * step_s))
    lines = ["| policy | repetitions | intervals | SLA attainment live / simulated | median rel. error SLA | "
             "active energy live / simulated (J, estimate) | median rel. error energy per interval | "
             "median rel. error energy per request | decisions as simulated | requests (lost) |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for policy, rows in intervals.groupby("policy", sort=False):
        totals = tables.loc[policy]
        totals = totals if isinstance(totals, pd.DataFrame) else totals.to_frame().T
        sla_err = relative_error(rows["sla_attainment"], rows["sim_sla_attainment"]).median()
        energy_err = relative_error(rows["energy_j"], rows["sim_energy_j"]).median()
        per_request_err = relative_error(rows["energy_j_per_request"], rows["sim_energy_j_per_request"]).median()
        lines.append(f"| {policy} | {len(totals)} | {len(rows)} | {totals['sla_attainment'].mean():.3f} / "
                     f"{totals['sim_sla_attainment'].mean():.3f} | {sla_err:.1%} | {totals['energy_j'].mean():.0f} / "
                     f"{totals['sim_energy_j'].mean():.0f} | {energy_err:.1%} | {per_request_err:.1%} | "
                     f"{(rows['decision'] == rows['sim_decision']).mean():.0%} | "
                     f"{int(totals['requests'].sum())} ({int(totals['requests_lost'].sum())}) |")
    steady = steady_intervals(intervals, switches)
    lines += ["", "Where no switch is under way (from its decision until the previous configuration is drained) and "
              "the live decision is the simulator's:", "",
              "| policy | intervals | median rel. error SLA | median rel. error energy per interval | "
              "median rel. error energy per request |", "|---|---|---|---|---|"]
    for policy, rows in steady.groupby("policy", sort=False):
        lines.append(f"| {policy} | {len(rows)} | "
                     f"{relative_error(rows['sla_attainment'], rows['sim_sla_attainment']).median():.1%} | "
                     f"{relative_error(rows['energy_j'], rows['sim_energy_j']).median():.1%} | "
                     f"{relative_error(rows['energy_j_per_request'], rows['sim_energy_j_per_request']).median():.1%} |")
    saved = tables.loc["energy", "energy_saved_fraction_vs_ipa"]
    saving = metric_interval("energy_saved_fraction_vs_ipa", list(np.atleast_1d(saved)))
    mean, low, high = saving.mean, saving.low, saving.high
    sim_saved = float(np.atleast_1d(tables.loc["energy", "sim_energy_saved_fraction_vs_ipa"]).mean())
    in_place = switches["how"] == "in place" if "how" in switches else pd.Series(False, index=switches.index)
    new_workers = switches[~in_place] if len(switches) else switches
    degraded = new_workers["degraded_s"] if len(new_workers) else pd.Series([0.0])
    prepare = new_workers["prepare_s"] if len(new_workers) else pd.Series([0.0])
    decision = intervals["decision_ms"]
    lines += [
        "",
        f"- energy saved by the energy-aware policy over IPA's objective, live: {mean:.1%} "
        f"(95 % CI {low:.1%} … {high:.1%} over {np.atleast_1d(saved).size} repetitions); simulated: {sim_saved:.1%}",
        f"- switches: {len(switches)}, {int(in_place.sum())} of them in place (batch sizes only: the same workers); "
        f"with new workers: degraded service (handover → the previous configuration's batches in flight done) "
        f"median {degraded.median():.3f} s, max {degraded.max():.3f} s; preparation (start, load, warm the next "
        f"while the current serves) median {prepare.median():.2f} s, max {prepare.max():.2f} s; switch energy "
        f"(active, machine-wide over preparation and drain) median "
        f"{new_workers['energy_j'].median() if len(new_workers) else 0:.1f} J",
        f"- decision time (options and program, per interval, wall): median {decision.median():.1f} ms, p95 "
        f"{decision.quantile(0.95):.1f} ms, max {decision.max():.1f} ms" + (
            f"; CPU time of the deciding thread: median {intervals['decision_cpu_ms'].median():.1f} ms, p95 "
            f"{intervals['decision_cpu_ms'].quantile(0.95):.1f} ms, max {intervals['decision_cpu_ms'].max():.1f} ms"
            if "decision_cpu_ms" in intervals else ""),
        f"- requests per live interval: median {intervals['requests'].median():.0f} (Poisson noise alone puts a "
        f"median relative error of about {0.674 / np.sqrt(max(intervals['requests'].median(), 1)):.0%} on an "
        "interval's energy)",
        f"- bench wall time {wall_s / 60:.1f} min",
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
