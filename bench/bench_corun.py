"""Co-location: one stage's batch latency alone vs while the other stage runs beside it (one thread each).

Profiles measure each stage alone; in the pipeline both stages run at once on the machine's cores, sharing caches
and memory bandwidth. This prints the ratio, per round, for one detector/classifier pair.

    python bench/bench_corun.py [--detector yolov5s] [--classifier resnet18] [--crops 2] [--rounds 3]
"""

from __future__ import annotations

import argparse
import sys
import threading
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import torch  # noqa: E402

from sustainable_ipa.config import compose  # noqa: E402
from sustainable_ipa.data import load_dataset  # noqa: E402
from sustainable_ipa.search.profiler import stage_inputs  # noqa: E402
from sustainable_ipa.search.profiling_job import build_stage_model  # noqa: E402
from timing import median_call_s  # noqa: E402


def median_batch_s(model, batch, n: int) -> float:
    torch.set_num_threads(1)
    return median_call_s(lambda: model(batch), n)


def beside(model, batch, other, other_batch, n: int) -> float:
    """`median_batch_s` of `model` while `other` runs in a loop on another thread."""
    stop = threading.Event()

    def loop() -> None:
        torch.set_num_threads(1)
        while not stop.is_set():
            other(other_batch)

    worker = threading.Thread(target=loop)
    worker.start()
    try:
        return median_batch_s(model, batch, n)
    finally:
        stop.set()
        worker.join()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--detector", default="yolov5s")
    parser.add_argument("--classifier", default="resnet18")
    parser.add_argument("--crops", type=int, default=2, help="classifier batch size")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    cfg = compose([])
    inputs = stage_inputs(load_dataset(cfg.dataset))
    build = build_stage_model(cfg)
    det, cls = build("detector", args.detector), build("classifier", args.classifier)
    frames, crops = inputs["detector"][:1], inputs["classifier"][:args.crops]
    for r in range(args.rounds):
        cls_alone, det_alone = median_batch_s(cls, crops, 9), median_batch_s(det, frames, 5)
        cls_beside, det_beside = beside(cls, crops, det, frames, 9), beside(det, frames, cls, crops, 5)
        print(f"round {r}: {args.classifier} b{args.crops} alone {cls_alone * 1e3:.0f} ms, beside {args.detector} "
              f"{cls_beside * 1e3:.0f} ms ({cls_beside / cls_alone:.2f}x); {args.detector} b1 alone "
              f"{det_alone * 1e3:.0f} ms, beside {args.classifier} {det_beside * 1e3:.0f} ms "
              f"({det_beside / det_alone:.2f}x)", flush=True)


if __name__ == "__main__":
    main()
