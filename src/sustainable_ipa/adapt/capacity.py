"""The most load a space can serve within a core budget, and the line that says a trace asks for more.

A stage's replicas serve `replicas × batch / p50 batch latency / items per request` requests per second
(`search.compose.stage_capacity_rps`, the rate the adapter sizes replicas by); the pipeline serves what its
slowest stage does. The maximum over the space: for every split of the cores between the stages, each stage's best
option on its share (replicas = its cores // threads), the split whose slowest stage is fastest. Latency is not a
constraint here: this is the throughput ceiling, above which no decision keeps up whatever the SLA.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import numpy as np

from sustainable_ipa.search.compose import stage_capacity_rps
from sustainable_ipa.search.profiles import ProfileTable
from sustainable_ipa.search.space import NUMERICS


def stage_capacity_by_cores(profiles: ProfileTable, stage: str, space: dict, max_cores: int) -> np.ndarray:
    """[c] = the most requests/s the stage serves on at most c cores (0 for c = 0), over the space's options."""
    best = np.zeros(max_cores + 1)
    items = profiles.mean_items(stage)
    for v, b, t, (precision, runtime) in itertools.product(space["variants"], space["batch_size"], space["threads"],
                                                           space.get(NUMERICS, (("fp32", "torch"),))):
        p = profiles.get(stage, v, b, t, precision, runtime)
        for cores in range(t, max_cores + 1):
            best[cores] = max(best[cores], stage_capacity_rps(p, cores // t, items))
    return np.maximum.accumulate(best)


def max_load_rps(profiles: ProfileTable, space: dict[str, dict], max_cores: int) -> float:
    """The most requests/s the pipeline serves within `max_cores` (`space`: `SearchSpace.profile_grid()`)."""
    tables = [stage_capacity_by_cores(profiles, stage, o, max_cores) for stage, o in space.items()]
    # best[c]: the most the stages so far serve together on c cores (the min over them, the best split)
    best = tables[0]
    for table in tables[1:]:
        best = np.array([max((min(best[c - k], table[k]) for k in range(c + 1)), default=0.0)
                         for c in range(max_cores + 1)])
    return float(best[max_cores])


@dataclass(frozen=True)
class Capacity:
    max_load_rps: float
    max_cores: int
    intervals: int
    over: int  # intervals whose planned load is above the maximum
    peak_load_rps: float  # the highest planned load of the trace
    load_scale: float  # the scale the trace was read with

    @property
    def over_share(self) -> float:
        return self.over / self.intervals if self.intervals else 0.0

    @property
    def fitting_scale(self) -> float:
        """The load scale at which every interval's planned load fits (the current one when they all fit)."""
        if self.peak_load_rps <= self.max_load_rps or self.peak_load_rps == 0:
            return self.load_scale
        return self.load_scale * self.max_load_rps / self.peak_load_rps

    def line(self) -> str | None:
        """The warning printed before the replay, or None when every interval fits."""
        if not self.over:
            return None
        if self.max_load_rps <= 0:
            return (f"capacity: no option of the space meets the SLA at any load on {self.max_cores} cores, so no "
                    "adapt.load_scale fits; every interval is replayed with the least-bad choice, and counted")
        return (f"capacity: the space serves at most {self.max_load_rps:.3g} requests/s on {self.max_cores} cores; "
                f"{self.over} of {self.intervals} intervals ({self.over_share:.0%}) ask for more (up to "
                f"{self.peak_load_rps:.3g} requests/s); adapt.load_scale={self.fitting_scale:.3g} would fit them all "
                f"(now {self.load_scale:g}). Those intervals are replayed with the most the space serves, and counted")

    def metrics(self) -> dict[str, float]:
        return {"capacity_max_load_rps": self.max_load_rps, "capacity_intervals_over_share": self.over_share,
                "capacity_fitting_load_scale": self.fitting_scale}


def capacity(profiles: ProfileTable, space: dict[str, dict], max_cores: int, planned_rps: list[float],
             load_scale: float = 1.0) -> Capacity:
    """The space's ceiling against the loads the replay will plan for (`planned_rps`: one per interval)."""
    ceiling = max_load_rps(profiles, space, max_cores)
    over = sum(load > ceiling for load in planned_rps)
    return Capacity(ceiling, max_cores, len(planned_rps), int(over), max(planned_rps, default=0.0), load_scale)
