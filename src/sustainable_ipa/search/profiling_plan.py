"""A profiling job's plan before any profile is timed: what it will time, fit and build, about how long that takes
and how much memory its largest model needs, and, under `profiling.budget_s`, what it leaves out to fit.

The estimate comes from a probe: each variant built once (torch fp32) and one batch of one item timed after a
warm-up, with the memory the build and the batch took. A profile's batch is estimated as that item time × its batch
size, × the median measured ÷ estimated ratio of the nearest kind of profile timed so far (this variant in these
numerics, else this variant, else these numerics); an export as the mean of the exports built so far (20 s before
any: an OpenVINO conversion of a YOLOv5 or ResNet on 2 cores). A batch of one item is the dearest per item, so
before anything is timed the estimate errs high on compute (bench/RESULTS.md measures how far).
"""

from __future__ import annotations

import statistics
import time
from dataclasses import dataclass, field
from itertools import cycle, islice

import psutil

from sustainable_ipa.search.profiler import ModelKey, ProfileKey, ProfilingPlan, release_memory

FIRST_EXPORT_S = 20.0
# Peak memory of profiling a model ÷ what building it and one batch of one item took: torch runs larger batches
# than the probe's; OpenVINO holds the torch model, its conversion (and NNCF's calibration) and the compiled model
# at once (bench/RESULTS.md, "Profiling's memory").
MEMORY_FACTOR = {"torch": 2.0, "openvino": 4.0}


@dataclass(frozen=True)
class Probe:
    item_s: float  # one batch of one item, torch fp32, after a warm-up batch
    build_s: float
    memory_bytes: int  # resident memory the build and the batch added


def probe_variants(variants: list[tuple[str, str]], build, inputs: dict[str, list], threads: int = 1,
                   on_probe=None) -> dict[tuple[str, str], Probe]:
    """`variants`: (stage, variant) pairs; each built on torch fp32, timed on one item, then released. Each stage's
    first variant is built and run once before, untimed, so that what a family sets up once per process (imports,
    thread pools, caches) is not counted as that variant's memory or time."""
    import torch

    process = psutil.Process()
    out = {}
    for stage in dict.fromkeys(stage for stage, _ in variants):
        first = next(v for s, v in variants if s == stage)
        build(stage, first, "fp32", "torch")(list(islice(cycle(inputs[stage]), 1)))
    for stage, variant in variants:
        release_memory()
        before = process.memory_info().rss
        began = time.perf_counter()
        model = build(stage, variant, "fp32", "torch")
        build_s = time.perf_counter() - began
        torch.set_num_threads(threads)
        batch = list(islice(cycle(inputs[stage]), 1))
        model(batch)
        began = time.perf_counter()
        model(batch)
        item_s = time.perf_counter() - began
        out[(stage, variant)] = Probe(item_s, build_s, max(0, process.memory_info().rss - before))
        del model
        release_memory()
        if on_probe:
            on_probe(stage, variant)
    return out


@dataclass
class PlanClock:
    """Seconds a plan's remaining work takes, estimated, refined as its profiles are timed."""

    plan: ProfilingPlan
    probes: dict[tuple[str, str], Probe]
    repeats: int
    factors: dict[tuple, list[float]] = field(default_factory=dict)  # a kind of profile -> measured ÷ estimated
    export_s: list[float] = field(default_factory=list)
    rounds_left: dict[ProfileKey, int] = field(default_factory=dict)
    models_left: set[ModelKey] = field(default_factory=set)

    def __post_init__(self):
        self.rounds_left = {key: self.repeats + 1 for key in self.plan.timed}  # a warm-up batch, then the rounds
        self.models_left = set(self.plan.groups)

    def batch_s(self, key: ProfileKey) -> float:
        """The probe's item time × the batch size × the measured ÷ estimated ratio of the nearest kind timed so far:
        this variant in these numerics, else this variant, else any variant in these numerics, else 1."""
        stage, variant, batch_size, threads, precision, runtime = key
        for kind in ((stage, variant, threads, precision, runtime), (stage, variant), (threads, precision, runtime)):
            if self.factors.get(kind):
                return self.probes[(stage, variant)].item_s * batch_size * statistics.median(self.factors[kind])
        return self.probes[(stage, variant)].item_s * batch_size

    def build_s(self, model: ModelKey) -> float:
        stage, variant, _, runtime, _ = model
        build = self.probes[(stage, variant)].build_s
        if runtime != "openvino":
            return build
        return build + (statistics.mean(self.export_s) if self.export_s else FIRST_EXPORT_S)

    def left_s(self) -> float:
        return sum(n * self.batch_s(k) for k, n in self.rounds_left.items()) + \
            sum(self.build_s(m) for m in self.models_left)

    def batches_left(self) -> int:
        return sum(self.rounds_left.values())

    # what the profiler reports
    def built(self, model: ModelKey, seconds: float) -> None:
        self.models_left.discard(model)
        if model[3] == "openvino":
            self.export_s.append(max(0.0, seconds - self.probes[model[:2]].build_s))

    def timed(self, key: ProfileKey, seconds: float, timed: bool = True) -> None:
        self.rounds_left[key] = max(0, self.rounds_left[key] - 1)
        if not timed:  # a warm-up batch pays for first calls: not what the rounds cost
            return
        stage, variant, batch_size, threads, precision, runtime = key
        ratio = seconds / (self.probes[(stage, variant)].item_s * batch_size)
        for kind in ((stage, variant, threads, precision, runtime), (stage, variant), (threads, precision, runtime)):
            self.factors.setdefault(kind, []).append(ratio)

    def stopped(self, key: ProfileKey) -> None:
        self.rounds_left[key] = 0


def memory_needed(plan: ProfilingPlan, probes: dict[tuple[str, str], Probe]) -> tuple[int, str]:
    """Resident memory the largest model of the plan adds while profiled (bytes), and which model that is."""
    worst, what = 0, ""
    for stage, variant, precision, runtime, _ in plan.groups:
        need = int(probes[(stage, variant)].memory_bytes * MEMORY_FACTOR[runtime])
        if need > worst:
            worst, what = need, f"{stage} {variant} {precision}/{runtime}"
    return worst, what


def minutes(seconds: float) -> str:
    return f"{seconds / 60:.0f} min" if seconds >= 90 else f"{seconds:.0f} s"


NARROWED_FIRST = ("precision", "runtime", "threads", "batch_size", "variants")  # what a budget gives up first


def narrow_to_budget(space_cfg, budget_s: float, estimate) -> list[str]:
    """Shrinks `space_cfg` (search.space, edited in place) until `estimate(space_cfg)` (seconds of profiling; inf
    for a space no run can use) is within `budget_s`, one value at a time: of the first knob in `NARROWED_FIRST`
    whose removal leaves a usable space, the value listed last, in the stage where that saves most. Returns the
    overrides that say what is kept (`search.space.classifier.precision=[fp32,bf16]`), empty where nothing needed
    to go or nothing could."""
    from omegaconf import OmegaConf

    changed: dict[tuple[str, str], list] = {}
    while estimate(space_cfg) > budget_s:
        options = []
        for knob in NARROWED_FIRST:
            for stage in space_cfg:
                values = list(space_cfg[stage].get(knob) or [])
                if len(values) > 1:  # the value listed last goes first: a space lists what matters first
                    trial = OmegaConf.to_container(space_cfg)
                    trial[stage][knob] = values[:-1]
                    seconds = estimate(OmegaConf.create(trial))
                    if seconds != float("inf"):  # inf: a space no run can use (no numerics left a stage)
                        options.append((seconds, stage, knob, values[-1]))
            if options:
                break
        if not options:
            break
        _, stage, knob, value = min(options, key=lambda o: o[0])
        space_cfg[stage][knob] = [v for v in space_cfg[stage][knob] if v != value]
        changed[(stage, knob)] = list(space_cfg[stage][knob])
    return [f"search.space.{stage}.{knob}=[{','.join(map(str, values))}]" for (stage, knob), values in changed.items()]
