"""The adaptation space: per stage, the variants, batch sizes, threads and replicas to choose from."""

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
    detector: StageChoice
    classifier: StageChoice

    def stages(self) -> dict[str, StageChoice]:
        return {"detector": self.detector, "classifier": self.classifier}

    @property
    def cores(self) -> int:
        return sum(s.threads * s.replicas for s in self.stages().values())

    def overrides(self) -> list[str]:
        """Hydra overrides that run this choice with `src/main.py`."""
        return [f"adaptation.{stage}.{key}={getattr(choice, key)}" for stage, choice in self.stages().items()
                for key in ("variant", *KNOBS)]


@dataclass(frozen=True)
class SearchSpace:
    stages: dict[str, dict[str, tuple]]  # stage -> {"variants": (...), "batch_size": (...), ...}
    max_cores: int | None = None

    @classmethod
    def from_config(cls, space: DictConfig, catalogue: DictConfig, max_cores: int | None) -> "SearchSpace":
        stages = {}
        for stage in ("detector", "classifier"):
            if stage not in space:
                raise UserError(f"search.space has no '{stage}' stage", f"add search.space.{stage}")
            spec = space[stage]
            options = {"variants": tuple(spec.get("variants") or ())}
            for knob in KNOBS:
                options[knob] = tuple(spec.get(knob) or ())
            for key, values in options.items():
                if not values:
                    raise UserError(f"search.space.{stage}.{key} is empty", f"list at least one value in search.space.{stage}.{key}")
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

    def all_choices(self, check_cores: bool = True) -> list[PipelineChoice]:
        choices = [PipelineChoice(d, c) for d, c in
                   itertools.product(self.stage_choices("detector"), self.stage_choices("classifier"))]
        if check_cores and self.max_cores is not None:
            choices = [c for c in choices if c.cores <= self.max_cores]
        return choices
