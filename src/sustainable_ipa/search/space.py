"""The adaptation space: per stage, the variants, batch sizes, threads and replicas to choose from.

The stages and their order are the pipeline's (`pipeline.stages`); nothing here names a stage.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

from omegaconf import DictConfig

from sustainable_ipa.errors import UserError

KNOBS = ("batch_size", "threads", "replicas")


@dataclass(frozen=True)
class StageChoice:
    variant: str
    batch_size: int
    threads: int
    replicas: int


@dataclass(frozen=True)
class PipelineChoice:
    """One choice per stage, in pipeline order: `PipelineChoice(detector=…, classifier=…)`; `choice["detector"]`."""

    by_stage: tuple[tuple[str, StageChoice], ...]

    def __init__(self, **by_stage: StageChoice):
        object.__setattr__(self, "by_stage", tuple(by_stage.items()))  # keyword order is pipeline order

    def stages(self) -> dict[str, StageChoice]:
        return dict(self.by_stage)

    def __getitem__(self, stage: str) -> StageChoice:
        return self.stages()[stage]

    @property
    def cores(self) -> int:
        return sum(s.threads * s.replicas for s in self.stages().values())

    def params(self) -> dict[str, object]:
        """Every knob by its run-record name (`detector.variant`, `detector.threads`…)."""
        return {f"{stage}.{key}": getattr(choice, key) for stage, choice in self.stages().items()
                for key in ("variant", *KNOBS)}

    def overrides(self) -> list[str]:
        """Hydra overrides that run this choice with `src/main.py`."""
        return [f"adaptation.{name}={value}" for name, value in self.params().items()]


# Where some combinations of threads and replicas exceed the cores, the study suggests one core `allocation`
# (threads x replicas of every stage) among those that fit, as an index into them ordered by cores: every trial
# fits, the distribution is fixed for the study (Optuna refuses choices that change from trial to trial, as a
# per-stage knob limited by what the other stage took would), and neighbouring indices cost alike, which TPE and GP
# can model (measured better than a categorical of the same allocations: bench/RESULTS.md). Where every
# combination fits, threads and replicas stay per-stage knobs: nothing is wasted and each knob is modelled alone.
ALLOCATION = "allocation"


def allocation_label(threads_replicas: dict[str, tuple[int, int]]) -> str:
    """`detector 1x2, classifier 1x1`: threads x replicas per stage."""
    return ", ".join(f"{stage} {t}x{r}" for stage, (t, r) in threads_replicas.items())


@dataclass(frozen=True)
class SearchSpace:
    stages: dict[str, dict[str, tuple]]  # stage -> {"variants": (...), "batch_size": (...), ...}
    max_cores: int | None = None

    @classmethod
    def from_config(cls, space: DictConfig, pipeline: DictConfig, max_cores: int | None) -> "SearchSpace":
        """`space`: search.space; `pipeline`: the pipeline config, whose `stages` name the stages in order and whose
        `variants` are each stage's catalogue."""
        catalogue = pipeline.variants
        stages = {}
        for stage in pipeline.stages:
            if stage not in space:
                raise UserError(f"search.space has no '{stage}' stage", f"add search.space.{stage}")
            spec = space[stage]
            options = {"variants": tuple(spec.get("variants") or ())}
            for knob in KNOBS:
                options[knob] = tuple(spec.get(knob) or ())
            for key, values in options.items():
                if not values:
                    raise UserError(f"search.space.{stage}.{key} is empty", f"list at least one value in search.space.{stage}.{key}")
            if stage not in catalogue:
                raise UserError(f"pipeline.variants has no '{stage}' catalogue", f"add pipeline.variants.{stage}")
            unknown = [v for v in options["variants"] if v not in catalogue[stage]]
            if unknown:
                raise UserError(f"search.space.{stage}.variants has unknown {', '.join(unknown)}",
                                f"choose from {', '.join(catalogue[stage])}")
            for knob in KNOBS:
                bad = [v for v in options[knob] if not isinstance(v, int) or v <= 0]
                if bad:
                    raise UserError(f"search.space.{stage}.{knob} has non-positive or non-integer {bad}",
                                    "use positive integers")
            stages[stage] = options
        result = cls(stages, max_cores)
        if max_cores is not None and min(c.cores for c in result.all_choices(check_cores=False)) > max_cores:
            raise UserError(f"no configuration of search.space fits in {max_cores} cores", "allow fewer threads or replicas, or more cores")
        return result

    def profile_grid(self) -> dict[str, dict[str, tuple]]:
        """What profiles are measured over: per stage variants, batch sizes and threads (not replicas)."""
        return {s: {k: o[k] for k in ("variants", "batch_size", "threads")} for s, o in self.stages.items()}

    def stage_choices(self, stage: str):
        o = self.stages[stage]
        return [StageChoice(v, b, t, r) for v, b, t, r in
                itertools.product(o["variants"], o["batch_size"], o["threads"], o["replicas"])]

    def allocations(self) -> list[dict[str, tuple[int, int]]]:
        """The core allocations (stage -> (threads, replicas)) that fit `max_cores`, fewest cores first."""
        per_stage = [[(s, (t, r)) for t, r in itertools.product(o["threads"], o["replicas"])]
                     for s, o in self.stages.items()]
        fitting = [dict(combo) for combo in itertools.product(*per_stage)
                   if self.max_cores is None or sum(t * r for _, (t, r) in combo) <= self.max_cores]
        fitting.sort(key=lambda a: sum(t * r for t, r in a.values()))  # stable: the config's order within a count
        return fitting

    @property
    def cores_bind(self) -> bool:
        """Whether some combination of the stages' threads and replicas needs more than `max_cores`."""
        combinations = 1
        for o in self.stages.values():
            combinations *= len(o["threads"]) * len(o["replicas"])
        return len(self.allocations()) < combinations

    def choice_from_params(self, params: dict) -> PipelineChoice:
        """The configuration a trial's parameters name: variant and batch size per stage, and threads and replicas
        per stage or the index of an allocation (`suggest` in search/study.py)."""
        if ALLOCATION in params:
            allocation = self.allocations()[params[ALLOCATION]]
        else:
            allocation = {stage: (params[f"{stage}.threads"], params[f"{stage}.replicas"]) for stage in self.stages}
        return PipelineChoice(**{stage: StageChoice(params[f"{stage}.variant"], params[f"{stage}.batch_size"], *tr)
                                 for stage, tr in allocation.items()})

    def all_choices(self, check_cores: bool = True) -> list[PipelineChoice]:
        choices = [PipelineChoice(**dict(zip(self.stages, combo)))
                   for combo in itertools.product(*(self.stage_choices(stage) for stage in self.stages))]
        if check_cores and self.max_cores is not None:
            choices = [c for c in choices if c.cores <= self.max_cores]
        return choices
