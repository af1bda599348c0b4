"""Does the power model change which configuration needs least energy per request, or only the scale? And how far
from this project's estimate is CodeCarbon's on the same windows?

    python bench/bench_power_models.py --run            # the ten shipped video adaptations first (energy_study,
                                                        # one trial each, energy.compare=codecarbon), then the figures
    python bench/bench_power_models.py                  # the figures of the latest sweep already in the experiment
    python bench/bench_power_models.py --tracking-uri sqlite:///elsewhere/mlflow.db

Every trial of the estimate logs its sampled load (`load.csv`); here each trial's load is put through every curve:
Boavizta's (the default), its TDP quartiles, its straight line (energy ∝ the run's CPU seconds: the CPU-time-linear
model), Cloud Carbon Footprint's linear min-max, and the old constants. Per configuration: the mean active energy per
request under each, Spearman's ρ of each against Boavizta's across configurations, and the pairs whose order
changes. The run's own figures (logged by the run) are checked against the recomputation from its load.csv.
"""

from __future__ import annotations

import argparse
import itertools
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
from scipy import stats

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from sustainable_ipa.config import compose  # noqa: E402
from sustainable_ipa.energy.power_curve import LoadSample  # noqa: E402
from sustainable_ipa.energy.power_reference import constants_model, reference_model  # noqa: E402
from sustainable_ipa.energy.timeseries import read_load_csv  # noqa: E402
from sustainable_ipa.fingerprint import this_machine  # noqa: E402

EXPERIMENT = "bench-power-models"


def run_sweep(repetitions: int) -> None:
    subprocess.run([sys.executable, str(ROOT / "src" / "main.py"), "+experiment=energy_study",
                    f"trial.repetitions={repetitions}", "energy.compare=codecarbon",
                    f"tracking.experiment={EXPERIMENT}"], check=True, cwd=ROOT)


def trials(client, experiment_id: str):
    runs = client.search_runs([experiment_id], max_results=5000)
    sweeps = [r.data.tags["sweep_id"] for r in runs if "sweep_id" in r.data.tags]
    latest = max(sweeps, key=lambda s: max(r.info.start_time for r in runs if r.data.tags.get("sweep_id") == s))
    jobs = {r.info.run_id for r in runs if r.data.tags.get("sweep_id") == latest}
    return latest, [r for r in runs if "requests_served" in r.data.metrics
                    and (r.info.run_id in jobs or r.data.tags.get("mlflow.parentRunId") in jobs)]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--run", action="store_true")
    parser.add_argument("--repetitions", type=int, default=1)
    parser.add_argument("--tracking-uri", default=None, help="the store to read (default: where src/main.py logs)")
    args = parser.parse_args()
    if args.run:
        run_sweep(args.repetitions)
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=args.tracking_uri or compose().tracking.uri)  # where src/main.py logged
    experiment = client.get_experiment_by_name(EXPERIMENT)
    sweep, runs = trials(client, experiment.experiment_id)
    machine = this_machine()
    model = reference_model(machine)
    curves = [model.curve, *model.alternatives, constants_model(10.0, 20.0, machine.cores).curve]
    print(f"{machine.cpu_model} ({machine.key}); sweep {sweep}, {len(runs)} trials")
    per_config: dict[str, dict[str, list[float]]] = {}
    checks, utilisation, codecarbon = [], {}, {}
    for run in runs:
        if run.data.tags.get("machine") != machine.key:
            sys.exit(f"trial {run.info.run_id} ran on {run.data.tags.get('machine')}, not here: "
                     "curves are for this machine's CPU")
        with tempfile.TemporaryDirectory() as folder:
            samples = read_load_csv(Path(client.download_artifacts(run.info.run_id, "load.csv", folder)).read_text())
        name, m = run.data.tags["adaptation"], run.data.metrics
        requests = m["requests_served"]
        # as if the run had been alone on the machine: its own share of the load at the curve's operating point
        alone = [LoadSample(s.time_s, s.dt_s, s.load * s.run_share, 1.0) for s in samples]
        for curve in curves:
            for label, trace in ((curve.name, samples), (f"{curve.name} alone", alone)):
                active_j = sum(curve.energy_j(trace).values()) - curve.static_w * sum(s.dt_s for s in trace)
                per_config.setdefault(name, {}).setdefault(label, []).append(active_j / requests)
        checks.append(per_config[name]["boavizta"][-1] / m["energy_j_per_request"] - 1)
        span_s = sum(s.dt_s for s in samples)
        utilisation.setdefault(name, []).append((sum(s.load * s.dt_s for s in samples) / span_s,
                                                 sum(s.load * s.run_share * s.dt_s for s in samples) / span_s))
        if "codecarbon_to_ours_ratio" in m:
            codecarbon.setdefault(name, []).append((m["codecarbon_to_ours_ratio"], m["energy_j_total_codecarbon"],
                                                    m["energy_j_total"]))
    print(f"recomputed from load.csv vs the run's own energy_j_per_request: largest difference "
          f"{max(abs(c) for c in checks):.2%}")
    names = sorted(per_config, key=lambda n: np.mean(per_config[n]["boavizta"]))
    header = "configuration".ljust(20) + "load  own  " + "".join(c.name.rjust(16) for c in curves)
    print("mean active energy per request (J) under each curve; mean vCPU load (all processes, the run's own):")
    print(header)
    for n in names:
        load, own = np.mean(utilisation[n], axis=0)
        print(n.ljust(20) + f"{load:4.0%} {own:4.0%}  " +
              "".join(f"{np.mean(per_config[n][c.name]):16.3f}" for c in curves))
    print("as if each run had been alone (its own load only, from the same samples):")
    for n in names:
        print(n.ljust(20) + f"{np.mean(utilisation[n], axis=0)[1]:9.0%}  " +
              "".join(f"{np.mean(per_config[n][c.name + ' alone']):16.3f}" for c in curves))
    for suffix in ("", " alone"):
        for curve in curves[1:]:
            print(ranking_line(per_config, names, "boavizta" + suffix, curve.name + suffix))
    if codecarbon:
        print("CodeCarbon (machine mode) over the same windows, totals idle included:")
        for n in names:
            ratio, cc, ours = np.median(np.array(codecarbon[n]), axis=0)
            print(f"  {n.ljust(20)} CodeCarbon {cc:8.1f} J, ours {ours:8.1f} J, ratio {ratio:.2f}")


def ranking_line(per_config: dict, names: list[str], a: str, b: str) -> str:
    """Spearman's ρ of two models' mean energy per request across configurations, and the pairs they order apart."""
    first = {n: np.mean(per_config[n][a]) for n in names}
    second = {n: np.mean(per_config[n][b]) for n in names}
    rho = stats.spearmanr(list(first.values()), list(second.values())).statistic
    swapped = [f"{x}/{y}" for x, y in itertools.combinations(names, 2)
               if (first[x] - first[y]) * (second[x] - second[y]) < 0]
    return f"Spearman ρ {a} vs {b}: {rho:.3f}; order changes: {', '.join(swapped) or 'none'}"


if __name__ == "__main__":
    main()
