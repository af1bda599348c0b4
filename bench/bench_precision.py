"""Precision and runtime against torch fp32, per stage variant, on one thread of this CPU, measured in one run.

For each model and batch, every combination the stage can run (classifier: torch fp32 | bf16, OpenVINO fp32 | bf16 |
int8; detector: the same), in alternating rounds so that drift hits all of them: the median wall time and
CPU time per item, the CPU-time ratio to torch fp32, the energy per item as the `estimate` meter would give it
(active power per core × CPU time: it follows CPU time by construction, so its ratio is the CPU-time ratio, not a
measurement), and the fidelity against torch fp32 on the same inputs (random weights: see README, Precision).
Exports go to a temporary folder; their one-off cost is printed apart.

    python bench/bench_precision.py [--rounds 7]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

import cv2  # noqa: E402
import torch  # noqa: E402

from sustainable_ipa.config import compose  # noqa: E402
from sustainable_ipa.fingerprint import this_machine  # noqa: E402
from sustainable_ipa.families.resnet import Classifier  # noqa: E402
from sustainable_ipa.families.yolov5 import Detector  # noqa: E402
from sustainable_ipa.families.resnet import classifier_fidelity  # noqa: E402
from sustainable_ipa.families.yolov5 import detector_fidelity  # noqa: E402

CLASSIFIERS = [("resnet18", 8), ("resnet50", 8), ("resnet152", 8)]
DETECTORS = [("yolov5n", 1), ("yolov5s", 1), ("yolov5x", 1)]
CLASSIFIER_COMBOS = [("torch", "fp32"), ("torch", "bf16"), ("openvino", "fp32"), ("openvino", "bf16"),
                     ("openvino", "int8")]
DETECTOR_COMBOS = CLASSIFIER_COMBOS


def timed(call, items: int) -> tuple[float, float]:
    wall, cpu = time.perf_counter(), time.process_time()
    call()
    return (time.perf_counter() - wall) / items, (time.process_time() - cpu) / items


def compare(name: str, batch: int, models: dict, x, fidelity, rounds: int, active_w: float) -> None:
    """Alternating rounds over `models`, then one line per combination against the first (torch fp32)."""
    for model in models.values():
        model.infer(x)  # warm-up: kernel selection, OpenVINO's first inference
    samples = {combo: ([], []) for combo in models}
    for _ in range(rounds):
        for combo, model in models.items():
            wall, cpu = timed(lambda: model.infer(x), batch)
            samples[combo][0].append(wall)
            samples[combo][1].append(cpu)
    medians = {combo: (statistics.median(w), statistics.median(c)) for combo, (w, c) in samples.items()}
    base_wall, base_cpu = next(iter(medians.values()))
    for combo, (wall, cpu) in medians.items():
        shown = "baseline" if combo == next(iter(models)) else fidelity(models[combo])
        print(f"{name:<10} {batch:>5} {'+'.join(combo):<14} {wall * 1e3:>9.1f} {cpu * 1e3:>9.1f} "
              f"{base_wall / wall:>8.2f}× {cpu / base_cpu:>9.2f} {active_w * cpu:>9.3f}  {shown}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=7)
    args = parser.parse_args()
    from ultralytics.utils import ASSETS  # after sustainable_ipa: its import sets ultralytics' quiet, offline env

    torch.set_num_threads(1)
    cfg = compose()
    active_w = float(cfg.hardware.estimate.active_w_per_core)
    frames = [cv2.imread(str(ASSETS / "bus.jpg")), cv2.imread(str(ASSETS / "zidane.jpg"))]
    crops = [f[i * 50:i * 50 + 200, i * 60:i * 60 + 180] for f in frames for i in range(4)]
    export_dir = Path(tempfile.mkdtemp(prefix="bench-exports-"))
    print(f"CPU: {this_machine().key}; torch {torch.__version__}, 1 thread, random weights, {args.rounds} rounds; "
          f"int8 calibrated on {len(crops)} crops (classifier), {len(frames)} frames (detector)")
    print(f"{'model':<10} {'batch':>5} {'runtime+prec':<14} {'ms/item':>9} {'CPU ms':>9} {'speed-up':>9} "
          f"{'CPU ratio':>9} {'est. J':>9}  fidelity against torch fp32")
    exports = []
    for variant, batch in CLASSIFIERS:
        models = {}
        for runtime, precision in CLASSIFIER_COMBOS:
            torch.manual_seed(0)  # the same weights in every combination
            model = Classifier(variant, None, cfg.pipeline.classifier.params.crop_size, "cpu", precision)
            if runtime == "openvino":
                made = model.use_openvino(export_dir, crops)
                if not made.cached:
                    exports.append(f"{variant} {made.key.precision}: {made.wall_s:.1f} s wall, {made.cpu_s:.1f} s CPU")
            models[(runtime, precision)] = model
        x = next(iter(models.values())).preprocess((crops * batch)[:batch])

        def fidelity(model):
            f = classifier_fidelity(model, crops)
            return f"top-1 agreement {f['top1_agreement']:.3f}, logit cosine " \
                   f"{f['logit_cosine_mean']:.6f}"

        compare(variant, batch, models, x, fidelity, args.rounds, active_w)
    for variant, batch in DETECTORS:
        models = {}
        for runtime, precision in DETECTOR_COMBOS:
            torch.manual_seed(0)
            model = Detector(variant, None, cfg.pipeline.detector.params.image_size, device="cpu", precision=precision)
            if runtime == "openvino":
                made = model.use_openvino(export_dir, frames)
                if not made.cached:
                    exports.append(f"{variant} {made.key.precision}: {made.wall_s:.1f} s wall, {made.cpu_s:.1f} s CPU")
            models[(runtime, precision)] = model
        x = models[("torch", "fp32")].preprocess(frames[:1] * batch)

        def fidelity(model):
            f = detector_fidelity(model, frames)
            return f"box cosine {f['box_cosine_mean']:.6f}, score cosine " \
                   f"{f['score_cosine_mean']:.6f}, score correlation " \
                   f"{f['score_correlation_mean']:.6f}"

        compare(variant, batch, models, x, fidelity, args.rounds, active_w)
    print("exports (one-off, not in any per-item figure): " + "; ".join(exports))


if __name__ == "__main__":
    main()
