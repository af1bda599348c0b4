"""The adaptation space: per stage, the variants, batch sizes, threads, replicas and numerics (precision × runtime)
to choose from.

The stages and their order are the pipeline's (`pipeline.stages`); nothing here names a stage.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

from omegaconf import DictConfig

from sustainable_ipa.errors import UserError

KNOBS = ("batch_size", "threads", "replicas")
NUMERIC_KNOBS = ("precision", "runtime")  # searched together: `numerics`, the pairs a run can build
NUMERICS = "numerics"  # per stage: the (precision, runtime) pairs of the space, those refused left out


@dataclass(frozen=True)
class StageChoice:
    variant: str
    batch_size: int
    threads: int
    replicas: int
    precision: str = "fp32"
    runtime: str = "torch"

    @property
    def numerics(self) -> tuple[str, str]:
        return (self.precision, self.runtime)


def numerics_label(precision: str, runtime: str) -> str:
    """`int8/openvino`: one categorical value per pair, so a trial never draws a pair a run refuses."""
    return f"{precision}/{runtime}"


def parse_numerics(label: str) -> tuple[str, str]:
    precision, _, runtime = label.partition("/")
    return precision, runtime


def refused_numerics(stage: str, precision: str, runtime: str, runtimes: tuple[str, ...], machine=None,
                     allow_emulated: bool = False) -> str | None:
    """Why a run would refuse this stage in this precision on this runtime (`config.validate`'s rules for one
    adaptation: `runtimes` are those the stage's family runs on; and the CPU gating of `models/precision.py` when
    `machine` is given), or None."""
    from sustainable_ipa.models.precision import missing_feature

    if precision == "int8" and runtime != "openvino":
        return "int8 runs on openvino only"
    if runtime not in runtimes:
        return f"{runtime} is not built for the {stage} stage's family"
    if machine is not None and not allow_emulated:
        lacking = missing_feature(precision, machine)
        if lacking:
            return f"{precision} needs {lacking}, which this CPU lacks (hardware.allow_emulated=true to measure it)"
    return None


@dataclass(frozen=True)
class PipelineChoice:
    """One choice per stage, in pipeline order: `PipelineChoice(asr=…, qa=…)`; `choice["asr"]`."""

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
        """Every knob by its run-record name (`asr.variant`, `asr.threads`…)."""
        return {f"{stage}.{key}": getattr(choice, key) for stage, choice in self.stages().items()
                for key in ("variant", *KNOBS, *NUMERIC_KNOBS)}

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
    """`asr 1x2, qa 1x1`: threads x replicas per stage."""
    return ", ".join(f"{stage} {t}x{r}" for stage, (t, r) in threads_replicas.items())


@dataclass(frozen=True)
class SearchSpace:
    # stage -> {"variants": (...), "batch_size": (...), "threads": (...), "replicas": (...),
    #           "numerics": ((precision, runtime), ...)}
    stages: dict[str, dict[str, tuple]]
    max_cores: int | None = None
    skipped: tuple[tuple[str, str, str, str], ...] = ()  # (stage, precision, runtime, why) left out of the space

    @classmethod
    def from_config(cls, space: DictConfig, pipeline: DictConfig, max_cores: int | None, machine=None,
                    allow_emulated: bool = False) -> "SearchSpace":
        """`space`: search.space; `pipeline`: the pipeline config, whose `stages` name the stages in order and whose
        `variants` are each stage's catalogue. Each stage's numerics are its `precision` × `runtime` lists (fp32 and
        torch where a space lists none) less the pairs a run refuses (`refused_numerics`; on `machine`, a
        `Fingerprint`, also the precisions its CPU lacks unless `allow_emulated`), which are kept in `skipped`."""
        catalogue = pipeline.variants
        runtimes = stage_runtimes(pipeline)
        stages, skipped = {}, []
        for stage in pipeline.stages:
            if stage not in space:
                raise UserError(f"search.space has no '{stage}' stage", f"add search.space.{stage}")
            spec = space[stage]
            options = {"variants": tuple(spec.get("variants") or ())}
            for knob in KNOBS:
                options[knob] = tuple(spec.get(knob) or ())
            numeric = {"precision": tuple(spec.get("precision", ("fp32",)) or ()),
                       "runtime": tuple(spec.get("runtime", ("torch",)) or ())}
            for key, values in {**options, **numeric}.items():
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
            pairs = []
            for precision, runtime in itertools.product(numeric["precision"], numeric["runtime"]):
                why = refused_numerics(stage, precision, runtime, runtimes[stage], machine, allow_emulated)
                if why:
                    skipped.append((stage, precision, runtime, why))
                else:
                    pairs.append((precision, runtime))
            if not pairs:
                reasons = "; ".join(f"{p}/{r}: {why}" for s, p, r, why in skipped if s == stage)
                raise UserError(f"search.space.{stage}: no precision × runtime of it can run ({reasons})",
                                f"list fp32 in search.space.{stage}.precision and torch in search.space.{stage}.runtime")
            _check_accuracies(stage, options["variants"], {p for p, _ in pairs}, catalogue[stage])
            options[NUMERICS] = tuple(pairs)
            stages[stage] = options
        result = cls(stages, max_cores, tuple(skipped))
        if max_cores is not None and min(c.cores for c in result.all_choices(check_cores=False)) > max_cores:
            raise UserError(f"no configuration of search.space fits in {max_cores} cores", "allow fewer threads or replicas, or more cores")
        return result

    def profile_grid(self) -> dict[str, dict[str, tuple]]:
        """What profiles are measured over: per stage variants, batch sizes, threads and numerics (not replicas);
        within `max_cores`, only the thread counts some configuration that fits can use (`usable_threads`)."""
        return {s: {"variants": o["variants"], "batch_size": o["batch_size"], "threads": self.usable_threads(s),
                    NUMERICS: o[NUMERICS]} for s, o in self.stages.items()}

    def usable_threads(self, stage: str) -> tuple:
        """The stage's thread counts that fit `max_cores` beside the least the other stages take: on 2 cores a
        two-stage pipeline never runs a stage on 2 threads, so its profiles would never be read."""
        options = self.stages[stage]
        if self.max_cores is None:
            return options["threads"]
        others = sum(min(o["threads"]) * min(o["replicas"]) for s, o in self.stages.items() if s != stage)
        return tuple(t for t in options["threads"] if t * min(options["replicas"]) + others <= self.max_cores)

    def stage_choices(self, stage: str):
        o = self.stages[stage]
        return [StageChoice(v, b, t, r, p, rt) for v, b, t, r, (p, rt) in
                itertools.product(o["variants"], o["batch_size"], o["threads"], o["replicas"], o[NUMERICS])]

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
        # a study made before the numerics were searched has none: its trials ran fp32 on torch
        return PipelineChoice(**{stage: StageChoice(params[f"{stage}.variant"], params[f"{stage}.batch_size"], *tr,
                                                    *parse_numerics(params.get(f"{stage}.{NUMERICS}", "fp32/torch")))
                                 for stage, tr in allocation.items()})

    def all_choices(self, check_cores: bool = True) -> list[PipelineChoice]:
        choices = [PipelineChoice(**dict(zip(self.stages, combo)))
                   for combo in itertools.product(*(self.stage_choices(stage) for stage in self.stages))]
        if check_cores and self.max_cores is not None:
            choices = [c for c in choices if c.cores <= self.max_cores]
        return choices


def stage_runtimes(pipeline: DictConfig) -> dict[str, tuple[str, ...]]:
    """The runtimes each stage's family runs on; torch alone for a stage no family is given for (fake profiles)."""
    from sustainable_ipa.families import family_class

    return {stage: family_class(str(pipeline[stage].family)).runtimes
            if stage in pipeline and "family" in pipeline[stage] else ("torch",) for stage in pipeline.stages}


def _check_accuracies(stage: str, variants, precisions: set[str], catalogue: DictConfig) -> None:
    """Every searched variant in every searched precision has an accuracy (its fp32 reference adjusted by the
    catalogue's published change), before anything is profiled."""
    for variant in variants:
        changes = catalogue[variant].get("precision_change") or {}
        missing = sorted(p for p in precisions if p != "fp32" and p not in changes)
        if missing:
            raise UserError(f"pipeline.variants.{stage}.{variant} has no published accuracy change for "
                            f"{', '.join(missing)}", f"add pipeline.variants.{stage}.{variant}.precision_change."
                            f"{missing[0]} (points, basis, source), or leave {missing[0]} out of "
                            f"search.space.{stage}.precision")


def configured_space(cfg: DictConfig, max_cores: int | None) -> SearchSpace:
    """`search.space` as this machine can run it: the precisions its CPU lacks left out unless
    `hardware.allow_emulated`."""
    from sustainable_ipa.fingerprint import this_machine

    return SearchSpace.from_config(cfg.search.space, cfg.pipeline, max_cores, this_machine(),
                                   bool(cfg.hardware.allow_emulated))


def skipped_line(space: SearchSpace) -> str | None:
    """One line naming the precision × runtime pairs of search.space left out, and why; None when none was."""
    if not space.skipped:
        return None
    return "search.space: left out " + "; ".join(f"{stage} {numerics_label(p, r)} ({why})"
                                                 for stage, p, r, why in space.skipped)
