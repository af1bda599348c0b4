"""Co-location: one stage's batch latency alone vs while the other stage runs beside it (one thread each).

Profiles measure each stage alone; in the pipeline both stages run at once on the machine's cores, sharing caches,
memory bandwidth and the interpreter. This VM's speed drifts by tens of percent over minutes, so the two are
measured in tight pairs: one batch alone (the neighbour paused), then one batch beside the running neighbour,
again and again; each pair's ratio sees the same machine, and the median of the ratios is the co-location factor.

    python bench/bench_corun.py [--detector yolov5s] [--frames 1] [--classifier resnet18] [--crops 2] [--pairs 15]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import threading
import time
from itertools import cycle, islice
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

import torch  # noqa: E402

from sustainable_ipa.config import compose  # noqa: E402
from sustainable_ipa.data import load_dataset  # noqa: E402
from sustainable_ipa.families import stage_families  # noqa: E402
from sustainable_ipa.search.workload import pipeline_workload  # noqa: E402
from sustainable_ipa.search.profiling_job import build_stage_model  # noqa: E402


class Neighbour:
    """Runs `model(batch)` in a loop on its own thread (one torch thread) while resumed."""

    def __init__(self, model, batch):
        self._model, self._batch = model, batch
        self._state = threading.Condition()
        self._may_run = self._busy = self._stop = False
        self._thread = threading.Thread(target=self._loop, daemon=True)
        self._thread.start()

    def _loop(self) -> None:
        torch.set_num_threads(1)
        while True:
            with self._state:  # the decision to run and `busy` change together: pause() cannot miss a batch
                self._busy = False
                self._state.notify_all()
                self._state.wait_for(lambda: self._may_run or self._stop)
                if self._stop:
                    return
                self._busy = True
                self._state.notify_all()
            self._model(self._batch)

    def resume(self) -> None:
        """Returns once a batch of the neighbour is running."""
        with self._state:
            self._may_run = True
            self._state.notify_all()
            self._wait(lambda: self._busy)

    def pause(self) -> None:
        """Returns once the neighbour's batch in flight has finished: the machine is ours."""
        with self._state:
            self._may_run = False
            self._wait(lambda: not self._busy)

    def _wait(self, condition) -> None:
        if not self._state.wait_for(lambda: condition() or not self._thread.is_alive(), timeout=60):
            raise RuntimeError("the neighbour stage did not answer within 60 s")
        if not self._thread.is_alive():
            raise RuntimeError("the neighbour stage's thread died")

    def close(self) -> None:
        with self._state:
            self._stop = True
            self._state.notify_all()
        self._thread.join()


def paired_ratios(model, batch, neighbour: Neighbour, pairs: int) -> tuple[list[float], list[float]]:
    """Seconds alone, and beside/alone ratios, of `pairs` alternating calls (after one warm-up call)."""
    torch.set_num_threads(1)
    model(batch)
    alone_s, ratios = [], []
    for _ in range(pairs):
        neighbour.pause()
        began = time.perf_counter()
        model(batch)
        one_alone_s = time.perf_counter() - began
        neighbour.resume()
        began = time.perf_counter()
        model(batch)
        one_beside_s = time.perf_counter() - began
        neighbour.pause()
        alone_s.append(one_alone_s)
        ratios.append(one_beside_s / one_alone_s)
    return alone_s, ratios


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--detector", default="yolov5s")
    parser.add_argument("--classifier", default="resnet18")
    parser.add_argument("--frames", type=int, default=1,
                        help="detector batch size (the sample's frames in order: portrait and landscape mixed)")
    parser.add_argument("--crops", type=int, default=2, help="classifier batch size")
    parser.add_argument("--pairs", type=int, default=15)
    args = parser.parse_args()
    if args.pairs < 2:
        parser.error("--pairs must be 2 or more (quartiles of the ratios)")
    if args.frames < 1 or args.crops < 1:
        parser.error("--frames and --crops must be 1 or more")
    torch.set_num_threads(1)
    cfg = compose([])
    inputs = pipeline_workload(stage_families(cfg.pipeline), load_dataset(cfg.dataset)).inputs
    build = build_stage_model(cfg)
    det, cls = build("detector", args.detector), build("classifier", args.classifier)
    frames = list(islice(cycle(inputs["detector"]), args.frames))
    crops = list(islice(cycle(inputs["classifier"]), args.crops))
    for name, model, batch, other_name, other, other_batch in (
            (f"{args.classifier} b{args.crops}", cls, crops, args.detector, det, frames),
            (f"{args.detector} b{args.frames}", det, frames, f"{args.classifier} b{args.crops}", cls, crops)):
        neighbour = Neighbour(other, other_batch)
        try:
            alone_s, ratios = paired_ratios(model, batch, neighbour, args.pairs)
        finally:
            neighbour.close()
        quartiles = statistics.quantiles(ratios, n=4)
        print(f"{name}: alone median {statistics.median(alone_s) * 1e3:.0f} ms (range {min(alone_s) * 1e3:.0f}–"
              f"{max(alone_s) * 1e3:.0f}); beside {other_name} ÷ alone, {args.pairs} pairs: median "
              f"{statistics.median(ratios):.3f}×, quartiles {quartiles[0]:.3f}–{quartiles[2]:.3f}", flush=True)


if __name__ == "__main__":
    main()
