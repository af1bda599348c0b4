"""Benchmarks of the pipeline runner, each a ratio against a baseline measured in the same process.

1. Throughput: this runner (a worker process per replica) vs the loop a user would write (ultralytics `predict` per
   frame, then torchvision per crop), same adaptation, same frames; and vs the same runner with replica threads in
   one process (`isolation="threads"`, the runner before stage isolation), in the same rounds.
2. Orientation: a detector batch of portrait and landscape frames as one square vs a sub-batch per orientation.
3. Achieved FLOP rate of the heavy variants as a fraction of this machine's fp32 matmul rate (2 FLOPs per
   multiply-add), contiguous vs channels_last.

    python bench/bench_runner.py            # figures for bench/RESULTS.md
    python bench/bench_runner.py --quick    # a smoke run
    python bench/bench_runner.py --only throughput --cores 16   # on a bigger machine: replicas fill 16 cores
Machines are noisy: every figure is a median over rounds, and ratios are taken within the same round.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from itertools import cycle, islice
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import numpy as np  # noqa: E402
import torch  # noqa: E402

from sustainable_ipa.config import compose  # noqa: E402
from sustainable_ipa.data import load_dataset  # noqa: E402
from sustainable_ipa.families.resnet import Classifier, crop  # noqa: E402
from sustainable_ipa.families.yolov5 import Detector  # noqa: E402
from sustainable_ipa.families.resnet import Classify  # noqa: E402
from sustainable_ipa.families.yolov5 import DetectAndCrop  # noqa: E402
from sustainable_ipa.pipeline.runner import StageRunner, StageSettings, StageSpec  # noqa: E402
from timing import median_call_s  # noqa: E402


def naive_loop(yolo, classifier_model, transform, frames, cores: int) -> float:
    """What a user writes first: predict per frame, classify per crop. Returns seconds."""
    from PIL import Image

    torch.set_num_threads(cores)
    began = time.perf_counter()
    with torch.inference_mode():
        for frame in frames:
            result = yolo.predict(frame.image_bgr, imgsz=640, conf=0.25, iou=0.45, device="cpu", verbose=False)[0]
            boxes = result.boxes.xyxy.tolist() or [gt.box_xyxy for gt in frame.ground_truth]  # random weights: GT
            for box in boxes:
                piece = crop(frame.image_bgr, box)
                if piece is not None:
                    image = Image.fromarray(piece[..., ::-1].copy())
                    classifier_model(transform(image).unsqueeze(0)).argmax(1)
    return time.perf_counter() - began


def bench_throughput(adaptation: str, rounds: int, requests: int, cores: int) -> None:
    from torchvision.models import get_model, get_model_weights
    from ultralytics import YOLO

    cfg = compose([f"adaptation={adaptation}", f"hardware.cores={cores}"])
    a = cfg.adaptation
    frames = list(islice(cycle(load_dataset(cfg.dataset).frames), requests))
    crops = float(np.mean([len(f.ground_truth) for f in frames]))
    torch.manual_seed(0)
    detector = Detector(a.detector.variant, None)
    classifier = Classifier(a.classifier.variant, None)

    def stage_costs_s() -> tuple[float, float]:
        return one_thread_cost_s(detector, classifier, frames, a.detector.batch_size, a.classifier.batch_size, cores)

    frame_s, crop_s = stage_costs_s()
    detector_replicas, classifier_replicas = split_cores(cores, frame_s, crops * crop_s)
    detector_settings = StageSettings(a.detector.batch_size, 1, detector_replicas)
    classifier_settings = StageSettings(a.classifier.batch_size, 1, classifier_replicas)
    stages = [StageSpec("detector", DetectAndCrop(detector, "reference"), detector_settings),
              StageSpec("classifier", Classify(classifier), classifier_settings)]
    runners = {isolation: StageRunner(stages, isolation=isolation) for isolation in ("processes", "threads")}
    yolo = YOLO(f"{a.detector.variant}.yaml")
    naive_classifier = get_model(a.classifier.variant, weights=None).eval()
    transform = get_model_weights(a.classifier.variant)["IMAGENET1K_V1"].transforms()
    for runner in runners.values():  # warm-up: both runners (the workers start here), then the naive loop
        runner.run(frames[:2 * cores], np.zeros(2 * cores))
    naive_loop(yolo, naive_classifier, transform, frames[:2], cores)
    rows = []  # per round, all against that round's naive loop: the machine's speed drifts between rounds
    for i in range(rounds):
        # alternating order within a round: neither runner always runs right after the naive loop
        order = ("processes", "threads") if i % 2 == 0 else ("threads", "processes")
        rps = {isolation: requests / runners[isolation].run(frames, np.zeros(len(frames))).duration_s
               for isolation in order}
        naive_rps = requests / naive_loop(yolo, naive_classifier, transform, frames, cores)
        frame_s, crop_s = stage_costs_s()
        # The most any runner could get out of these cores with this batching: every core busy all the time at
        # the one-thread cost per item (a core is never more productive split across threads) ...
        bound_rps = cores / (frame_s + crops * crop_s)
        # ... and the most with cores owned by stages (IPA's allocation): the slower stage's rate.
        slower_stage_rps = min(detector_replicas / frame_s, classifier_replicas / (crops * crop_s))
        rows.append({"runner": rps["processes"], "threads": rps["threads"], "naive": naive_rps,
                     "ratio": rps["processes"] / naive_rps, "threads ratio": rps["threads"] / naive_rps,
                     "vs threads": rps["processes"] / rps["threads"], "bound": bound_rps / naive_rps,
                     "slower stage": slower_stage_rps / naive_rps, "reached": rps["processes"] / slower_stage_rps,
                     "frame_ms": frame_s * 1e3, "crop_ms": crop_s * 1e3})
    for runner in runners.values():
        runner.close()

    def med(key: str) -> float:
        return statistics.median(r[key] for r in rows)

    def per_round(key: str) -> str:
        return ", ".join(f"{r[key]:.2f}" for r in rows)

    print(f"throughput  adaptation={a.name} ({a.detector.variant} b{a.detector.batch_size} × {detector_replicas} + "
          f"{a.classifier.variant} b{a.classifier.batch_size} × {classifier_replicas} replicas of one thread, "
          f"{cores} cores), {requests} requests, {rounds} rounds; medians of per-round figures")
    print(f"  runner  {med('runner'):.2f} req/s (worker processes); replica threads {med('threads'):.2f} req/s; "
          f"naive {med('naive'):.2f} req/s ({cores} threads)")
    print(f"  ratio   {med('ratio'):.2f}x naive (per round: {per_round('ratio')}); replica threads "
          f"{med('threads ratio'):.2f}x (per round: {per_round('threads ratio')})")
    print(f"  processes / threads {med('vs threads'):.2f}x (per round: {per_round('vs threads')})")
    print(f"  bound   {med('bound'):.2f}x naive: {cores} cores never idle at {med('frame_ms'):.0f} ms per frame "
          f"(b{a.detector.batch_size}) + {crops:.1f} × {med('crop_ms'):.0f} ms per crop (b{a.classifier.batch_size}), "
          f"one thread each")
    print(f"  slower stage {med('slower stage'):.2f}x naive: the most with {detector_replicas} + {classifier_replicas} "
          f"cores owned by the stages; the runner reaches {med('reached'):.0%} of it")


def split_cores(cores: int, frame_s: float, request_crops_s: float) -> tuple[int, int]:
    """Replicas of one thread per stage that maximise the slower stage's rate, as IPA would allocate the cores."""
    if cores < 2:
        raise SystemExit("the runner needs at least 2 cores: one per stage")
    return max(((d, cores - d) for d in range(1, cores)),
               key=lambda split: min(split[0] / frame_s, split[1] / request_crops_s))


def one_thread_cost_s(detector, classifier, frames, detector_batch: int, classifier_batch: int,
                      cores: int) -> tuple[float, float]:
    """Median seconds per frame and per crop of the runner's stages at their batch sizes on one thread (torch is
    left with `cores` threads). Every distinct frame and crop is timed, in the runner's order and batches: frames
    of other sizes and orientations cost differently."""
    torch.set_num_threads(1)
    distinct = list({id(f): f for f in frames}.values())  # requests cycle over the dataset's frames
    images = [f.image_bgr for f in distinct]
    crops = [c for f in distinct for gt in f.ground_truth if (c := crop(f.image_bgr, gt.box_xyxy)) is not None]
    frame_batches, crop_batches = whole_batches(images, detector_batch), whole_batches(crops, classifier_batch)
    frame_s = median_call_s(lambda: [detector(b) for b in frame_batches], 3) / (len(frame_batches) * detector_batch)
    crop_s = median_call_s(lambda: [classifier(b) for b in crop_batches], 3) / (len(crop_batches) * classifier_batch)
    torch.set_num_threads(cores)
    return frame_s, crop_s


def whole_batches(items: list, batch: int) -> list[list]:
    """Batches cycling over `items` until each has been in one; whole batches only (a partial one costs more per
    item than the runner's full ones)."""
    cycled = list(islice(cycle(items), -(-len(items) // batch) * batch))
    return [cycled[i:i + batch] for i in range(0, len(cycled), batch)]


def bench_orientation(variant: str, batch: int, rounds: int) -> None:
    """A batch mixing portrait and landscape frames: one 640 × 640 square vs a sub-batch per orientation."""
    frames = load_dataset(compose([]).dataset).frames  # the sample: one portrait, one landscape frame
    images = list(islice(cycle([f.image_bgr for f in frames]), batch))
    detector = Detector(variant, None)
    torch.set_num_threads(1)

    def one_square():
        x = detector.preprocess(images)  # one shape for the whole batch: the square
        return detector.postprocess(detector.infer(x), tuple(x.shape[2:]), [i.shape[:2] for i in images])

    one_square(), detector(images)  # warm-up
    ratios = []
    for _ in range(rounds):  # alternating pairs: the machine's drift cancels within a pair
        square_s = median_call_s(one_square, 1)
        split_s = median_call_s(lambda: detector(images), 1)
        ratios.append(square_s / split_s)
    print(f"orientation {variant} batch {batch} (portrait and landscape mixed), one thread, {rounds} pairs: one square "
          f"÷ a sub-batch per orientation = median {statistics.median(ratios):.2f}x "
          f"(quartiles {np.percentile(ratios, 25):.2f} – {np.percentile(ratios, 75):.2f})")


def matmul_gflops(threads: int, n: int = 2048, reps: int = 5) -> float:
    torch.set_num_threads(threads)
    a, b = torch.randn(n, n), torch.randn(n, n)
    a @ b
    times = []
    for _ in range(reps):
        t = time.perf_counter()
        a @ b
        times.append(time.perf_counter() - t)
    return 2 * n ** 3 / statistics.median(times) / 1e9


def model_gflops(forward, x, gmacs_per_item: float, reps: int) -> float:
    return 2 * gmacs_per_item * x.shape[0] / median_call_s(lambda: forward(x), reps)


def bench_flop_rate(threads: int, reps: int, quick: bool) -> None:
    peak = matmul_gflops(threads)
    print(f"flop rate   fp32 matmul 2048^3 with {threads} threads: {peak:.1f} GFLOP/s (the baseline)")
    torch.set_num_threads(threads)
    heavy = [("resnet50", 8), ("resnet101", 8), ("resnet152", 8), ("yolov5l", 1), ("yolov5x", 1)]
    variants = heavy if not quick else [("resnet50", 4), ("yolov5n", 1)]
    for variant, batch in variants:
        if variant.startswith("resnet"):
            model = Classifier(variant, None)
            size, gmacs = 224, model.gmacs_per_crop
        else:
            model = Detector(variant, None)
            size, gmacs = 640, model.gmacs_per_image
        for layout in (torch.contiguous_format, torch.channels_last):
            net = model.model.to(memory_format=layout)
            x = torch.rand(batch, 3, size, size).contiguous(memory_format=layout)
            with torch.inference_mode():
                rate = model_gflops(net, x, gmacs, reps)
            name = "channels_last" if layout == torch.channels_last else "contiguous"
            print(f"  {variant:10s} batch {batch:2d} {name:13s} {rate:6.1f} GFLOP/s = {rate / peak:5.1%} of matmul")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--only", choices=["throughput", "orientation", "flops"])
    parser.add_argument("--adaptation", nargs="+", default=["default", "yolov5s-resnet18", "yolov5s-resnet50"])
    parser.add_argument("--cores", type=int, default=2,
                        help="cores for both: the runner's replicas fill them, the naive loop uses as many threads")
    parser.add_argument("--requests", type=int, help="per round; default 8 per core (6 with --quick)")
    parser.add_argument("--rounds", type=int, default=5, help="throughput rounds (1 with --quick)")
    args = parser.parse_args()
    available = len(os.sched_getaffinity(0))
    if args.cores > available:
        raise SystemExit(f"--cores {args.cores}: this machine has {available}")
    print(f"torch {torch.__version__}, {available} cores available, {args.cores} used")
    if args.only in (None, "throughput"):
        requests = args.requests or (6 if args.quick else 8 * args.cores)
        for adaptation in args.adaptation:
            bench_throughput(adaptation, rounds=1 if args.quick else args.rounds, requests=requests, cores=args.cores)
    if args.only in (None, "orientation"):
        for variant, batch in ([("yolov5n", 2)] if args.quick else [("yolov5n", 4), ("yolov5s", 4), ("yolov5m", 8)]):
            bench_orientation(variant, batch, rounds=1 if args.quick else 7)
    if args.only in (None, "flops"):
        bench_flop_rate(threads=2, reps=1 if args.quick else 5, quick=args.quick)


if __name__ == "__main__":
    main()
