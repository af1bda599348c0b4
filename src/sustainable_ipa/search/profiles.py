"""Stage profiles: measured per-batch latency and idle-subtracted energy of one variant × batch × threads ×
precision × runtime."""

from __future__ import annotations

import csv
import io
import math
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Callable

import numpy as np

from sustainable_ipa.errors import UserError

# Bumped whenever a stage's measured cost changes for the same configuration, so that older caches are refused:
# 1 → 2: a YOLOv5 batch of portrait and landscape frames runs as two sub-batches instead of one square.
# 2 → 3: every timed batch is kept (a distribution to draw from, not a p50 and a "p99" of three), with the load
#        that other processes put on the machine meanwhile.
# 3 → 4: a profile is also per precision and runtime (fp32/bf16/int8 on torch/OpenVINO).
# 4 → 5: a profile is timed or fitted from the timed batch sizes (`basis`, `fit_residual`), and a timed one may
#        stop before `profiling.repeats` rounds once its mean is known (`profiling.tolerance`).
PROFILER_VERSION = 5

OK, CONTENDED, NOISY = "ok", "contended", "noisy"  # StageProfile.quality
TIMED, FITTED = "timed", "fitted"  # StageProfile.basis


@dataclass(frozen=True)
class StageProfile:
    stage: str
    variant: str
    batch_size: int
    threads: int
    latency_samples_s: tuple[float, ...]  # every timed batch, pre- and post-processing included
    energy_j_per_item: float  # idle-subtracted
    energy_source: str
    others_cpu_share: float = 0.0  # CPU time of other processes while the batches ran ÷ (wall × the machine's cores)
    steal_share: float = 0.0  # CPU time the hypervisor took from the machine meanwhile, as the same share
    quality: str = OK  # ok | contended (others or the hypervisor took too much) | noisy (batches spread too far)
    reference_batch_s: float = 0.0  # `machine_load.reference_batch_s()` when this profile was measured (0: unknown)
    precision: str = "fp32"  # fp32 | bf16 | int8
    runtime: str = "torch"  # torch | openvino
    basis: str = TIMED  # timed | fitted (latency and energy from the batch fit, samples the nearest timed ones scaled)
    fit_residual: float = 0.0  # fitted: the fit's relative RMS error at the timed batch sizes
    # the estimate's power-model interval of energy_j_per_item (None: measured by a counter, or not recorded)
    energy_j_per_item_low: float | None = None
    energy_j_per_item_high: float | None = None

    @property
    def key(self) -> tuple[str, str, int, int, str, str]:
        return (self.stage, self.variant, self.batch_size, self.threads, self.precision, self.runtime)

    @property
    def label(self) -> str:
        """`qa roberta-base-squad2 b4 t1 int8/openvino`"""
        return f"{self.stage} {self.variant} b{self.batch_size} t{self.threads} {self.precision}/{self.runtime}"

    @property
    def latency_p50_s(self) -> float:
        return float(np.median(self.latency_samples_s))

    @property
    def latency_p90_s(self) -> float:
        return float(np.percentile(self.latency_samples_s, 90))

    @property
    def latency_p99_s(self) -> float:
        """The profiled batches' 99th percentile (with 20 batches, close to their maximum: the replay draws from
        all of them, so a pipeline's p99 is a percentile of many draws, not this figure in every batch)."""
        return float(np.percentile(self.latency_samples_s, 99))

    @property
    def throughput_items_s(self) -> float:
        """Items (frames or crops) per second of one replica, at the p50 batch latency."""
        return self.batch_size / self.latency_p50_s


# Written beside the samples for people reading the CSV; recomputed from the samples on load.
DERIVED = ("latency_p50_s", "latency_p99_s", "throughput_items_s")


class ProfileTable:
    def __init__(self, rows: list[StageProfile], hardware: str, items_per_request: dict[str, tuple[int, ...]],
                 fingerprint: str = ""):
        self.rows = {r.key: r for r in rows}
        self.hardware = hardware
        self.fingerprint = fingerprint  # `Fingerprint.key` of the machine the profiles were measured on ("": unknown)
        # Per stage, in pipeline order: the items each request brings it, in request order (requests cycle over the
        # dataset; `search.workload`): the first stage 1, the next what the items before hand on (a frame's crops).
        # The order decides how batches fill.
        self.items_per_request = {stage: tuple(int(n) for n in cycle) for stage, cycle in items_per_request.items()}

    def mean_items(self, stage: str) -> float:
        cycle = self.items_per_request[stage]
        return sum(cycle) / len(cycle)

    def get(self, stage: str, variant: str, batch_size: int, threads: int, precision: str = "fp32",
            runtime: str = "torch") -> StageProfile:
        try:
            return self.rows[(stage, variant, batch_size, threads, precision, runtime)]
        except KeyError:
            raise UserError(f"no profile for {stage} {variant} batch {batch_size} threads {threads} "
                            f"{precision}/{runtime} on {self.hardware}",
                            "run `python src/profiling.py` with this space (or profiling.refresh=true)") from None

    def of(self, stage: str, choice) -> StageProfile:
        """The profile of a stage's choice (`search.space.StageChoice`, an adapter option's `choice`)."""
        return self.get(stage, choice.variant, choice.batch_size, choice.threads, choice.precision, choice.runtime)

    def table_for(self, _choice) -> "ProfileTable":
        """The table a choice's profiles are read from: this one, whole (`lazy_profiles.LazyProfiles` makes its
        table as choices need it)."""
        return self

    def fitted(self) -> list[StageProfile]:
        return [r for r in self.rows.values() if r.basis == FITTED]

    def flagged(self) -> list[StageProfile]:
        """Profiles measured under contention or too noisy to trust as they are."""
        return [r for r in self.rows.values() if r.quality != OK]

    def to_csv(self) -> str:
        buffer = io.StringIO()
        names = [f.name for f in fields(StageProfile)]
        writer = csv.DictWriter(buffer, fieldnames=["profiler_version", "hardware", "fingerprint", *names, *DERIVED,
                                                    "items_per_request"])
        writer.writeheader()
        for row in self.rows.values():
            values = {f.name: getattr(row, f.name) for f in fields(StageProfile)}
            values["latency_samples_s"] = " ".join(repr(float(s)) for s in row.latency_samples_s)  # exact
            writer.writerow({"profiler_version": PROFILER_VERSION, "hardware": self.hardware,
                             "fingerprint": self.fingerprint, **values,
                             **{name: f"{getattr(row, name):.6g}" for name in DERIVED},
                             "items_per_request": " ".join(map(str, self.items_per_request[row.stage]))})
        return buffer.getvalue()

    def save(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(self.to_csv())

    @classmethod
    def load(cls, path: Path, warn: Callable[[str], None] | None = None) -> "ProfileTable":
        """The table saved at `path`. A row whose latency or energy no measurement gives (not finite, a latency not
        above 0, a negative energy) is left out, and `warn` told: the profiler then measures it again."""
        if not Path(path).is_file():
            raise UserError(f"no stage profiles at {path}", "run `python src/profiling.py`")
        rows, hardware, fingerprint, items, insane = [], "", "", {}, []
        with open(path, newline="") as f:
            for raw in csv.DictReader(f):
                version = raw.get("profiler_version") or "1"
                if version != str(PROFILER_VERSION):
                    raise UserError(f"profile cache {path} was measured by profiler version {version}, "
                                    f"this one is {PROFILER_VERSION} and measures stages differently",
                                    "rerun `python src/profiling.py profiling.refresh=true`")
                hardware, fingerprint = raw["hardware"], raw.get("fingerprint") or ""
                items[raw["stage"]] = tuple(int(n) for n in raw["items_per_request"].split())
                row = StageProfile(raw["stage"], raw["variant"], int(raw["batch_size"]), int(raw["threads"]),
                                   tuple(float(s) for s in raw["latency_samples_s"].split()),
                                   float(raw["energy_j_per_item"]), raw["energy_source"],
                                   float(raw["others_cpu_share"]), float(raw["steal_share"]), raw["quality"],
                                   float(raw["reference_batch_s"]), raw["precision"], raw["runtime"],
                                   raw["basis"], float(raw["fit_residual"]),
                                   _optional(raw.get("energy_j_per_item_low")),
                                   _optional(raw.get("energy_j_per_item_high")))
                (rows if plausible(row) else insane).append(row)
        if insane and warn:
            names = ", ".join(p.label for p in insane[:5])
            more = f" and {len(insane) - 5} more" if len(insane) > 5 else ""
            warn(f"{len(insane)} rows of the profile cache {path} have a latency or energy no measurement gives "
                 f"(not finite, or negative): {names}{more}. They are ignored and measured again")
        return cls(rows, hardware, items, fingerprint)


def _optional(text: str | None) -> float | None:
    return float(text) if text not in (None, "", "None") else None


def plausible(p: StageProfile) -> bool:
    """Whether a profile's figures are ones a measurement can give: batch latencies finite and above 0 (the
    throughput divides by them), energy per item finite and not negative."""
    return (len(p.latency_samples_s) > 0 and all(math.isfinite(s) and s > 0 for s in p.latency_samples_s)
            and math.isfinite(p.energy_j_per_item) and p.energy_j_per_item >= 0)
