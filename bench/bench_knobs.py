"""End to end: an adaptation with its best precision/runtime knobs against the same adaptation in torch fp32.

Both pipelines run in stage worker processes as real runs do (one core per stage), on the embedded sample cycled to
`--requests` requests all queued at t = 0 (throughput mode), in alternating rounds so that drift hits both. Per
round: requests per second, and the energy per request of the `estimate` meter over the round (10 W per busy core
× the CPU time of this process and its workers: it follows CPU time by construction, an estimate, not a
measurement), idle power taken off as runs do.

    python bench/bench_knobs.py [--requests 24] [--rounds 5] [adaptation overrides for the knobbed pipeline]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
from itertools import cycle, islice
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

import numpy as np  # noqa: E402
import torch  # noqa: E402

from sustainable_ipa.config import compose  # noqa: E402
from sustainable_ipa.data import load_dataset  # noqa: E402
from sustainable_ipa.energy.estimate import EstimateMeter  # noqa: E402
from sustainable_ipa.energy.power_reference import constants_model  # noqa: E402
from sustainable_ipa.fingerprint import this_machine  # noqa: E402
from sustainable_ipa.families import stage_families  # noqa: E402
from sustainable_ipa.pipeline.runner import StageRunner, StageSettings, StageSpec  # noqa: E402
from sustainable_ipa.search.profiling_job import build_stage_model  # noqa: E402
from sustainable_ipa.search.workload import pipeline_workload  # noqa: E402

BEST = ["adaptation.detector.precision=int8", "adaptation.detector.runtime=openvino",
        "adaptation.classifier.precision=int8", "adaptation.classifier.runtime=openvino"]


def runner_for(cfg, dataset) -> StageRunner:
    """The adaptation's stages as profiled (random weights, the same in both pipelines: one seed), one replica of one
    thread each; stages on OpenVINO exported into cfg.export_dir."""
    build = build_stage_model(cfg, pipeline_workload(stage_families(cfg.pipeline), dataset))
    return StageRunner([StageSpec(s, build(s, c.variant, c.precision, c.runtime), StageSettings(c.batch_size, 1, 1))
                        for s in cfg.pipeline.stages if (c := cfg.adaptation[s])])


def measured_round(runner: StageRunner, frames: list, active_w: float, idle_w: float) -> tuple[float, float]:
    """(requests per second, estimated active joules per request, under the constants model: energy ∝ CPU time) of
    one pass over `frames`."""
    meter = EstimateMeter(constants_model(active_w, idle_w, this_machine().cores).curve, (), this_machine().cores, 1.0)
    meter.begin_window("round")
    result = runner.run(frames, np.zeros(len(frames)))
    m = meter.end_window("round")
    meter.close()
    active_j = m.total_j - idle_w * m.duration_s
    return len(result.requests) / result.duration_s, active_j / len(result.requests)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=24)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("overrides", nargs="*", help="Hydra overrides of the knobbed pipeline (default: both int8 "
                                                     "on OpenVINO)")
    args = parser.parse_args()
    export_dir = Path(tempfile.mkdtemp(prefix="bench-exports-"))
    base = compose(["adaptation=default", "hardware.cores=2", f"export_dir={export_dir}"])
    best = compose(["adaptation=default", "hardware.cores=2", f"export_dir={export_dir}", *(args.overrides or BEST)])
    dataset = load_dataset(base.dataset)
    frames = [f for f in islice(cycle(dataset.frames), args.requests)]
    estimate = base.hardware.estimate
    knobs = ", ".join(f"{s} {best.adaptation[s].runtime} {best.adaptation[s].precision}" for s in ("detector",
                                                                                                  "classifier"))
    print(f"CPU: {this_machine().key}; torch {torch.__version__}; adaptation default (yolov5n b1 + resnet18 b4, "
          f"1 core per stage, random weights), {args.requests} requests at t = 0, {args.rounds} alternating rounds")
    results = {"torch fp32": ([], []), knobs: ([], [])}
    with runner_for(base, dataset) as plain, runner_for(best, dataset) as knobbed:
        for runner in (plain, knobbed):
            runner.run(frames[:4], np.zeros(4))  # warm-up: first batches, OpenVINO's compilation
        for i in range(args.rounds):
            order = [("torch fp32", plain), (knobs, knobbed)]
            for name, runner in order if i % 2 == 0 else order[::-1]:
                rps, j = measured_round(runner, frames, float(estimate.active_w_per_core), float(estimate.idle_w))
                results[name][0].append(rps)
                results[name][1].append(j)
    (rps0, j0), (rps1, j1) = [(statistics.median(r), statistics.median(j)) for r, j in results.values()]
    for name, (rps, j) in zip(results, ((rps0, j0), (rps1, j1))):
        print(f"{name:<45} {rps:6.2f} requests/s   {j:7.3f} J/request (estimate)")
    print(f"ratio: {rps1 / rps0:.2f}× the requests per second (target ≥ 2×), {j1 / j0:.2f} of the energy per "
          f"request (target ≤ 0.5)")


if __name__ == "__main__":
    main()
