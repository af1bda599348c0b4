"""Energy meter costs, each against a baseline in the same run.

1. One `rapl` window (begin + end, two reads of every counter) on a powercap tree of 2 packages with core and
   dram subdomains, laid out in a tmpfs folder like /sys/class/powercap (this VM has no RAPL).
2. Meter overhead: the same pipeline run with and without a polling meter, alternating, median wall times.

    python bench/bench_energy.py
"""

from __future__ import annotations

import statistics
import sys
import tempfile
import time
from itertools import cycle, islice
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "energy"))

import numpy as np  # noqa: E402
import torch  # noqa: E402

from fakes import PowercapTree  # noqa: E402
from sustainable_ipa.config import compose  # noqa: E402
from sustainable_ipa.data import load_dataset  # noqa: E402
from sustainable_ipa.energy.estimate import EstimateMeter  # noqa: E402
from sustainable_ipa.energy.power_reference import reference_model  # noqa: E402
from sustainable_ipa.energy.meter import CounterMeter  # noqa: E402
from sustainable_ipa.fingerprint import this_machine  # noqa: E402
from sustainable_ipa.energy.rapl import RaplReader  # noqa: E402
from sustainable_ipa.families.resnet import Classifier  # noqa: E402
from sustainable_ipa.families.yolov5 import Detector  # noqa: E402
from sustainable_ipa.families.resnet import Classify  # noqa: E402
from sustainable_ipa.families.yolov5 import DetectAndCrop  # noqa: E402
from sustainable_ipa.pipeline.runner import StageRunner, StageSettings, StageSpec  # noqa: E402


def bench_window_read(n: int = 2000) -> None:
    folder = Path(tempfile.mkdtemp(dir="/dev/shm" if Path("/dev/shm").is_dir() else None))
    PowercapTree(folder)
    meter = CounterMeter(RaplReader(folder), start_polling=False)
    times = []
    for i in range(n):
        began = time.perf_counter()
        meter.begin_window("w")
        meter.end_window("w")
        times.append(time.perf_counter() - began)
    print(f"rapl window (begin + end, 2 packages + core + dram): median {statistics.median(times) * 1e3:.3f} ms, "
          f"p99 {np.percentile(times, 99) * 1e3:.3f} ms over {n} windows (target < 1 ms)")
    polls = []
    for _ in range(n):
        began = time.perf_counter()
        meter.poll()
        polls.append(time.perf_counter() - began)
    poll_s = statistics.median(polls)
    print(f"rapl poll: median {poll_s * 1e3:.3f} ms; at the default 1 poll/s the poller takes "
          f"{poll_s * 100:.4f} % of wall time")


def bench_overhead(rounds: int, requests: int) -> None:
    cfg = compose(["adaptation=default", "hardware.cores=2"])
    a = cfg.adaptation
    frames = list(islice(cycle(load_dataset(cfg.dataset).frames), requests))
    torch.manual_seed(0)
    runner = StageRunner([
        StageSpec("detector", DetectAndCrop(Detector(a.detector.variant, None), "reference"),
                  StageSettings(a.detector.batch_size, 1, 1)),
        StageSpec("classifier", Classify(Classifier(a.classifier.variant, None)),
                  StageSettings(a.classifier.batch_size, 1, 1))])
    runner.run(frames[:4], np.zeros(4))
    folder = Path(tempfile.mkdtemp(dir="/dev/shm" if Path("/dev/shm").is_dir() else None))
    PowercapTree(folder)
    def plain() -> float:
        began = time.perf_counter()
        runner.run(frames, np.zeros(len(frames)))
        return time.perf_counter() - began

    def metered() -> float:
        # both meters the layer can poll here, polling every second as the default config does
        model = reference_model(this_machine())
        meters = [CounterMeter(RaplReader(folder), 1.0),
                  EstimateMeter(model.curve, model.alternatives, this_machine().cores, 1.0)]
        began = time.perf_counter()
        for m in meters:
            m.begin_window("trial")
        runner.run(frames, np.zeros(len(frames)))
        for m in meters:
            m.end_window("trial")
        elapsed = time.perf_counter() - began
        for m in meters:
            m.close()
        return elapsed

    without, with_meter = [], []
    for i in range(rounds):  # alternate which goes first, so drift does not favour either
        if i % 2:
            with_meter.append(metered())
            without.append(plain())
        else:
            without.append(plain())
            with_meter.append(metered())
    ratios = [w / o for w, o in zip(with_meter, without)]
    print(f"meter overhead (default adaptation, {requests} requests, {rounds} alternating rounds): without "
          f"{statistics.median(without):.2f} s, with {statistics.median(with_meter):.2f} s, median per-round ratio "
          f"{statistics.median(ratios):.4f} ({(statistics.median(ratios) - 1) * 100:+.2f} %; target ≤ 1 %) "
          f"per round: {', '.join(f'{r:.3f}' for r in ratios)}")


if __name__ == "__main__":
    bench_window_read()
    bench_overhead(rounds=12, requests=24)
