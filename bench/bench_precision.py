"""bf16 against fp32, per stage variant, on one thread of this CPU, measured in one run.

For each model and batch: the median wall time and CPU time per item over alternating rounds (fp32, bf16, fp32,
…, so drift hits both), their ratio, the energy per item as the `estimate` meter would give it (active power per
core × CPU time: it follows CPU time by construction, so its ratio is the CPU-time ratio, not a measurement), and
the fidelity against fp32 on the same inputs (random weights: see README, Precision).

    python bench/bench_precision.py [--rounds 7]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

import cv2  # noqa: E402
import torch  # noqa: E402
from ultralytics.utils import ASSETS  # noqa: E402

from sustainable_ipa.config import compose  # noqa: E402
from sustainable_ipa.fingerprint import this_machine  # noqa: E402
from sustainable_ipa.models.classifier import Classifier  # noqa: E402
from sustainable_ipa.models.detector import Detector  # noqa: E402
from sustainable_ipa.models.fidelity import classifier_fidelity, detector_fidelity, fp32_twin  # noqa: E402

CASES = [("classifier", "resnet18", 8), ("classifier", "resnet50", 8), ("classifier", "resnet152", 8),
         ("detector", "yolov5n", 1), ("detector", "yolov5s", 1), ("detector", "yolov5x", 1)]


def per_item_s(call, items: int, rounds: int) -> tuple[list[float], list[float]]:
    wall, cpu = [], []
    for _ in range(rounds):
        w, c = time.perf_counter(), time.process_time()
        call()
        wall.append((time.perf_counter() - w) / items)
        cpu.append((time.process_time() - c) / items)
    return wall, cpu


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=7)
    args = parser.parse_args()
    torch.set_num_threads(1)
    cfg = compose()
    active_w = float(cfg.hardware.estimate.active_w_per_core)
    frames = [cv2.imread(str(ASSETS / "bus.jpg")), cv2.imread(str(ASSETS / "zidane.jpg"))]
    crops = [f[i * 50:i * 50 + 200, i * 60:i * 60 + 180] for f in frames for i in range(4)]
    print(f"CPU: {this_machine().key}; torch {torch.__version__}, 1 thread, random weights, {args.rounds} rounds")
    print(f"{'model':<10} {'batch':>5} {'fp32 ms/item':>12} {'bf16 ms/item':>12} {'wall ratio':>10} "
          f"{'CPU ratio':>9} {'est. J/item fp32→bf16':>22}  fidelity (bf16 vs fp32)")
    for stage, variant, batch in CASES:
        torch.manual_seed(0)
        if stage == "classifier":
            low = Classifier(variant, None, cfg.pipeline.classifier.crop_size, "cpu", "bf16")
            x = low.preprocess((crops * batch)[:batch])
            fidelity = classifier_fidelity(low, crops)
            shown = f"top-1 agreement {fidelity['fidelity_classifier_top1_agreement']:.3f}, logit cosine " \
                    f"{fidelity['fidelity_classifier_logit_cosine_mean']:.6f}"
        else:
            low = Detector(variant, None, cfg.pipeline.detector.image_size, device="cpu", precision="bf16")
            x = low.preprocess(frames[:1] * batch)
            fidelity = detector_fidelity(low, frames)
            shown = f"box cosine {fidelity['fidelity_detector_box_cosine_mean']:.6f}, score cosine " \
                    f"{fidelity['fidelity_detector_score_cosine_mean']:.6f}"
        high = fp32_twin(low)
        runs = {"fp32": ([], []), "bf16": ([], [])}
        for model in (high, low):
            model.infer(x)  # warm-up: kernel selection
        for _ in range(args.rounds):
            for name, model in (("fp32", high), ("bf16", low)):
                wall, cpu = per_item_s(lambda: model.infer(x), batch, 1)
                runs[name][0].extend(wall)
                runs[name][1].extend(cpu)
        (w32, c32), (w16, c16) = [(statistics.median(w), statistics.median(c)) for w, c in runs.values()]
        print(f"{variant:<10} {batch:>5} {w32 * 1e3:>12.1f} {w16 * 1e3:>12.1f} {w32 / w16:>9.2f}× {c32 / c16:>8.2f}× "
              f"{active_w * c32:>10.3f} → {active_w * c16:.3f}  {shown}")


if __name__ == "__main__":
    main()
