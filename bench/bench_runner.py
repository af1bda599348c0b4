"""Benchmarks of the pipeline runner, each a ratio against a baseline measured in the same process.

1. Throughput: this runner vs the loop a user would write (ultralytics `predict` per frame, then torchvision per
   crop), same adaptation, same frames.
2. Achieved FLOP rate of the heavy variants as a fraction of this machine's fp32 matmul rate (2 FLOPs per
   multiply-add), contiguous vs channels_last.

    python bench/bench_runner.py            # figures for bench/RESULTS.md
    python bench/bench_runner.py --quick    # a smoke run
Machines are noisy: every figure is a median over rounds, and ratios are taken within the same round.
"""

from __future__ import annotations

import argparse
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
from sustainable_ipa.models.classifier import Classifier, crop  # noqa: E402
from sustainable_ipa.models.detector import Detector  # noqa: E402
from sustainable_ipa.pipeline.runner import PipelineRunner, StageSettings  # noqa: E402
from timing import median_call_s  # noqa: E402


def naive_loop(yolo, classifier_model, transform, frames, cores: int) -> float:
    """What a user writes first: predict per frame, classify per crop. Returns seconds."""
    from PIL import Image

    torch.set_num_threads(cores)
    began = time.perf_counter()
    with torch.inference_mode():
        for frame in frames:
            result = yolo.predict(frame.image_bgr, imgsz=640, conf=0.25, iou=0.45, verbose=False)[0]
            boxes = result.boxes.xyxy.tolist() or [gt.box_xyxy for gt in frame.ground_truth]  # random weights: GT
            for box in boxes:
                piece = crop(frame.image_bgr, box)
                if piece is not None:
                    image = Image.fromarray(piece[..., ::-1].copy())
                    classifier_model(transform(image).unsqueeze(0)).argmax(1)
    return time.perf_counter() - began


def bench_throughput(adaptation: str, rounds: int, requests: int) -> None:
    from torchvision.models import get_model, get_model_weights
    from ultralytics import YOLO

    cfg = compose([f"adaptation={adaptation}", "hardware.cores=2"])
    a = cfg.adaptation
    frames = list(islice(cycle(load_dataset(cfg.dataset).frames), requests))
    torch.manual_seed(0)
    detector = Detector(a.detector.variant, None)
    classifier = Classifier(a.classifier.variant, None)
    runner = PipelineRunner(detector, classifier, StageSettings(a.detector.batch_size, 1, 1),
                            StageSettings(a.classifier.batch_size, 1, 1), crops_from_ground_truth=True)
    yolo = YOLO(f"{a.detector.variant}.yaml")
    naive_classifier = get_model(a.classifier.variant, weights=None).eval()
    transform = get_model_weights(a.classifier.variant)["IMAGENET1K_V1"].transforms()
    runner.run(frames[:4], np.zeros(4))  # warm-up both
    naive_loop(yolo, naive_classifier, transform, frames[:2], 2)
    ours, naive, ratios = [], [], []
    for _ in range(rounds):
        t = runner.run(frames, np.zeros(len(frames))).duration_s
        n = naive_loop(yolo, naive_classifier, transform, frames, 2)
        ours.append(requests / t)
        naive.append(requests / n)
        ratios.append(n / t)
    print(f"throughput  adaptation={a.name} ({a.detector.variant} b{a.detector.batch_size} + {a.classifier.variant} "
          f"b{a.classifier.batch_size}, 2 cores), {requests} requests, {rounds} rounds")
    print(f"  runner  median {statistics.median(ours):.2f} req/s")
    print(f"  naive   median {statistics.median(naive):.2f} req/s")
    print(f"  ratio   median {statistics.median(ratios):.2f}x  (per round: {', '.join(f'{r:.2f}' for r in ratios)})")
    # The most any runner could get out of this machine with this batching: every core busy all the time at
    # the one-thread cost per item (a core is never more productive split across threads).
    frame_s, crop_s = one_thread_cost_s(detector, classifier, frames, a.detector.batch_size, a.classifier.batch_size)
    crops = np.mean([len(f.ground_truth) for f in frames])
    bound_rps = 2 / (frame_s + crops * crop_s)
    print(f"  bound   {bound_rps:.2f} req/s = {bound_rps / statistics.median(naive):.2f}x naive: 2 cores never idle at "
          f"{frame_s * 1e3:.0f} ms per frame (b{a.detector.batch_size}) + {crops:.1f} × {crop_s * 1e3:.0f} ms per crop "
          f"(b{a.classifier.batch_size}), one thread each")


def one_thread_cost_s(detector, classifier, frames, detector_batch: int, classifier_batch: int) -> tuple[float, float]:
    """Median seconds per frame and per crop of the runner's stages at their batch sizes on one thread."""
    torch.set_num_threads(1)
    images = list(islice(cycle([f.image_bgr for f in frames]), detector_batch))
    crops = list(islice(cycle([c for f in frames for gt in f.ground_truth
                               if (c := crop(f.image_bgr, gt.box_xyxy)) is not None]), classifier_batch))
    frame_s = median_call_s(lambda: detector(images), 3) / len(images)
    crop_s = median_call_s(lambda: classifier(crops), 3) / len(crops)
    torch.set_num_threads(2)
    return frame_s, crop_s


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
    variants = [("resnet50", 8), ("resnet152", 8), ("yolov5l", 1), ("yolov5x", 1)] if not quick else [("resnet50", 4), ("yolov5n", 1)]
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
    parser.add_argument("--only", choices=["throughput", "flops"])
    parser.add_argument("--adaptation", nargs="+", default=["yolov5n-resnet34", "yolov5s-resnet18", "yolov5s-resnet50"])
    args = parser.parse_args()
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads available")
    if args.only in (None, "throughput"):
        for adaptation in args.adaptation:
            bench_throughput(adaptation, rounds=1 if args.quick else 3, requests=6 if args.quick else 16)
    if args.only in (None, "flops"):
        bench_flop_rate(threads=2, reps=1 if args.quick else 3, quick=args.quick)


if __name__ == "__main__":
    main()
