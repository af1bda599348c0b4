"""IPA's integer program with energy: per stage one variant × batch × threads × replicas × precision × runtime.

    maximise  α·accuracy − β·cores − δ·power          (or − δ·carbon rate = power × intensity)
    subject to  one option per stage,
                Σ stages latency p99 (each stage's batching rules replayed on its own: batch-fill wait, replica wait,
                                     batch latency) ≤ SLA,
                Σ cores ≤ available cores,
                optionally power ≤ budget (W) or carbon rate ≤ budget (g/h),
                and the pipelines the end-to-end model rejected excluded (below).

Replicas are a choice: per variant × batch × threads an option for each replica count from the fewest that keep up
with the load at the p50 batch latency to `extra_replicas` more, since with latencies drawn from the profiled
distribution one more replica can be what drains the queue in time. Each option carries its replicas, cores and
power as constants, so the program stays linear. Power is active power, item rate × idle-subtracted energy per
item — it depends on the variant and the batch chosen, which is what IPA's attempt at an energy term lacked.
Accuracy: an option's is its variant's in its precision (the catalogue's fp32 reference plus the published change for
the precision: `metrics.accuracy.option_accuracies`), so a lower precision is picked where the energy or cores it
saves outweigh, at the weights given, the accuracy it gives up. `sum` of stage accuracies (linear) or `product`
(IPA's PAS), linearised exactly with one continuous variable per combination of the stages' accuracy classes
(variant × precision; one per pair in a two-stage pipeline), those holding a stage's class summing to that stage's
choice of it: 0/1 marginals force a 0/1 combination (in `decide`). The stages are those of `options`, in pipeline
order, as many as the pipeline has.

The per-stage sum is separable, which an integer program needs, but it is not the pipeline's latency: in the
pipeline a stage is fed by the bursts of the one before (ResNet by YOLOv5's crops). The SLA verdict is
therefore the study's own model (`search.compose.latency_s`, the end-to-end replay): a pipeline the program picks
that the model says misses the SLA is excluded by a cut (Σ its options ≤ stages − 1) and the program solved again.
The decision is thus the optimum among the pipelines the per-stage sum admits and the model accepts; one the sum
rejects is not considered even where its end-to-end p99 (usually lower) would meet the SLA. Solved by scipy's HiGHS; an SLA nothing meets is
answered with the least-bad choice, flagged.
"""

from __future__ import annotations

import itertools
import math
import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace

import numpy as np
from scipy.optimize import Bounds, LinearConstraint, milp

from sustainable_ipa.metrics.accuracy import option_accuracy_pct
from sustainable_ipa.metrics.latency import sla_violation_s
from sustainable_ipa.search.compose import latency_s, stage_capacity_rps, stage_latency_p99_s
from sustainable_ipa.search.profiles import ProfileTable
from sustainable_ipa.search.space import NUMERICS, PipelineChoice, StageChoice

EXTRA_REPLICAS = 2  # replica counts an option is offered beyond the fewest that keep up at the p50 batch latency
MAX_CUTS = 64  # pipelines the end-to-end model may reject in one decision before the last pick is taken, flagged
SLACK_PENALTY = 1e6  # per second of SLA violation: only used when nothing meets the SLA
# On a program this small HiGHS's presolve and its feasibility-jump heuristic cost more than they save: without them a
# decision takes about half the time (bench/bench_adapt.py). Neither changes the optimum, only the way to it.
HIGHS_OPTIONS = {"presolve": False, "mip_heuristic_run_feasibility_jump": False,
                 "mip_rel_gap": 0.0}  # the optimum itself, not one within HiGHS's default 0.01 % of it


@dataclass(frozen=True)
class Option:
    """One stage's choice (its knobs: `search.space.StageChoice`, the one definition) priced at one load: the figures
    the program weighs it by."""
    stage: str
    choice: StageChoice
    accuracy_pct: float
    latency_s: float  # p99 in the stage fed by the arrivals: batch latency, batch-fill and replica waits (a guide)
    power_w: float  # active power at the offered load
    cores: int
    energy_j_per_request: float  # idle-subtracted, items per request × energy per item
    capacity_rps: float  # requests per second the option's replicas serve

    @property
    def accuracy_class(self) -> tuple[str, str]:
        """What the option's accuracy depends on: its variant and its precision (not its runtime)."""
        return (self.choice.variant, self.choice.precision)


@dataclass(frozen=True)
class Weights:
    alpha: float = 2.0  # accuracy (fraction for product, percentage points / 100 for sum)
    beta: float = 1.0  # per core
    delta: float = 0.0  # per W (energy-aware) or per g/h (carbon-aware)
    objective: str = "power"  # power | carbon
    accuracy: str = "product"  # product | sum


@dataclass(frozen=True)
class Decision:
    options: tuple[Option, ...]
    choice: PipelineChoice | None
    accuracy: float
    cores: int
    power_w: float
    latency_s: float  # p99 end to end, by the pipeline model when one was given (else the per-stage sum)
    meets_sla: bool
    sla_violation_s: float
    objective: float
    nothing_within_budget: bool = False  # nothing fitted the power or carbon budget: the least power meeting the SLA

    @property
    def flagged(self) -> bool:
        return not self.meets_sla or self.nothing_within_budget


# Over a budget nothing fits: power first (at 1e4 per W, 2 mW outweigh any accuracy or cores), then accuracy and cores
# as IPA weighs them. A carbon budget ranks the same: every option's carbon rate is its power × the one intensity.
LEAST_POWER = Weights(delta=1e4)


# An idle interval of a trace (load 0) is composed as a trickle: each request alone, so an option's latency is
# what one request would see (a batch above 1 waits for company that takes ~1000 s per request to come).
IDLE_LOAD_RPS = 1e-3
LOAD_GRID_STEP = 1.01  # latency replayed at the load rounded up to the next 1 % step


def load_grid_rps(load_rps: float) -> float:
    """The load an option's latency is replayed at: rounded up to a 1 % grid, so a trace, whose load is new every
    interval, revisits grid points and the replays are cached. At most 1 % more load, never less: latency can only
    be overstated (near saturation by more than 1 %, as a queue grows fast there), so the SLA is never met on paper only."""
    load_rps = max(load_rps, IDLE_LOAD_RPS)
    return LOAD_GRID_STEP ** math.ceil(math.log(load_rps, LOAD_GRID_STEP) - 1e-9)


def stage_options(profiles: ProfileTable, space: dict[str, dict], load_rps: float,
                  reference: dict[str, dict], extra_replicas: int = EXTRA_REPLICAS) -> dict[str, list[Option]]:
    """Per stage, every variant × batch × threads × numerics of `space` (`SearchSpace.profile_grid()`; numerics
    fp32/torch where it lists none) × replica count. `reference`: `option_accuracies` (or fp32-only
    `reference_accuracies`)."""
    out: dict[str, list[Option]] = {}
    latency_load_rps = load_grid_rps(load_rps)
    for position, (stage, o) in enumerate(space.items()):  # `space` lists the stages in pipeline order
        items = profiles.mean_items(stage)
        rate = max(load_rps * items, 1e-9)
        options = []
        for v, b, t, (precision, runtime) in itertools.product(o["variants"], o["batch_size"], o["threads"],
                                                               o.get(NUMERICS, (("fp32", "torch"),))):
            p = profiles.get(stage, v, b, t, precision, runtime)
            accuracy_pct = option_accuracy_pct(reference, stage, v, precision)
            fewest = max(1, math.ceil(rate / p.throughput_items_s))
            for replicas in range(fewest, fewest + extra_replicas + 1):
                latency_p99 = stage_latency_p99_s(stage, position, p, replicas, profiles, latency_load_rps)
                options.append(Option(stage, StageChoice(v, b, t, replicas, precision, runtime), accuracy_pct,
                                      latency_p99, rate * p.energy_j_per_item, replicas * t,
                                      items * p.energy_j_per_item, stage_capacity_rps(p, replicas, items)))
        out[stage] = options
    return out


def pipeline_p99_s(profiles: ProfileTable, load_rps: float) -> Callable[[PipelineChoice], float]:
    """The SLA verdict's model for `decide`: a pipeline's end-to-end p99 at the load its options were made for."""
    latency_load_rps = load_grid_rps(load_rps)
    return lambda choice: latency_s(choice, profiles, latency_load_rps)[1]


def _accuracy(options: tuple[Option, ...], how: str) -> float:
    if how == "sum":
        return sum(o.accuracy_pct for o in options) / 100.0
    return math.prod(o.accuracy_pct / 100.0 for o in options)


def score(options: tuple[Option, ...], w: Weights, intensity_g_per_kwh: float) -> float:
    power = sum(o.power_w for o in options)
    rate = power * intensity_g_per_kwh / 1000.0 if w.objective == "carbon" else power  # g/h from W
    return w.alpha * _accuracy(options, w.accuracy) - w.beta * sum(o.cores for o in options) - w.delta * rate


def undominated(options: list[Option]) -> list[Option]:
    """The options that no other option of the same accuracy class (variant and precision) matches or beats on
    latency, cores and power at once.

    The program sees an option only through its accuracy class and those three numbers, so a dominated option
    is never needed for an optimum, nor for the least-bad choice (the smallest latency survives); dropping them
    shrinks the program several-fold. Of identical options the first is kept."""
    def beats(p: Option, o: Option) -> bool:
        return (p.accuracy_class == o.accuracy_class and p.latency_s <= o.latency_s and p.cores <= o.cores
                and p.power_w <= o.power_w)

    return [o for i, o in enumerate(options)
            if not any(beats(p, o) and (j < i or not beats(o, p)) for j, p in enumerate(options) if j != i)]


def to_choice(options: tuple[Option, ...]) -> PipelineChoice:
    """The pipeline of one option per stage, in pipeline order."""
    return PipelineChoice(**{o.stage: o.choice for o in options})


def least_power_tie(chosen: tuple[Option, ...], options: dict[str, list[Option]], sla_s: float,
                    meets: Callable[[tuple[Option, ...]], bool]) -> tuple[Option, ...]:
    """Of the choices equal to `chosen` in accuracy and cores (same variant and precision, same cores per stage) that
    meet the SLA
    (`meets`), the one with the least power, then the least latency.

    Without a power term (δ = 0, IPA's objective) these tie and the solver's pick among them is arbitrary: it moved
    with HiGHS's settings. Taking the least power makes decisions reproducible and keeps the comparison fair: an
    energy-aware policy is not credited with power that IPA's objective would have saved at no cost of its own.
    With δ > 0 `chosen` already has the least power of them."""
    alternatives = [[o for o in options[c.stage] if o.accuracy_class == c.accuracy_class and o.cores == c.cores]
                    for c in chosen]
    candidates = sorted((combo for combo in itertools.product(*alternatives) if sum(o.latency_s for o in combo) <= sla_s),
                        key=lambda combo: (sum(o.power_w for o in combo), sum(o.latency_s for o in combo)))
    return next((combo for combo in candidates if combo == chosen or meets(combo)), chosen)


@dataclass
class _Program:
    """`decide`'s integer program. Variables: one 0/1 x per option of `flat` (every stage's, in pipeline order;
    stage k's between offsets[k] and offsets[k + 1]), then, when accuracy is a product, one continuous y per
    combination of the stages' accuracy classes (`combos`), then the SLA slack. `c` is what milp minimises."""
    stages: list[str]
    flat: list[Option]
    offsets: np.ndarray
    combos: list[tuple]
    c: np.ndarray
    rows: list = field(default_factory=list)
    low: list = field(default_factory=list)
    high: list = field(default_factory=list)

    @property
    def n_x(self):
        return self.offsets[-1]

    @property
    def n(self):
        return self.n_x + len(self.combos) + 1

    @property
    def slack(self):
        return self.n - 1

    def add(self, row, lo, hi) -> None:
        self.rows.append(row)
        self.low.append(lo)
        self.high.append(hi)

    def solve(self, solver_options: Mapping) -> np.ndarray | None:
        n, slack = self.n, self.slack
        integrality = np.zeros(n)
        integrality[:self.n_x] = 1  # the combination variables and the slack may stay continuous
        constraints = LinearConstraint(np.array(self.rows), self.low, self.high)
        upper = np.ones(n)
        # First with the SLA as a hard constraint (slack fixed at 0), the usual case and the easier program; only
        # when nothing meets it does the slack open, for the least-bad choice.
        for slack_bound in (0.0, np.inf):
            upper[slack] = slack_bound
            with warnings.catch_warnings():  # scipy passes options it does not list to HiGHS verbatim, and warns so
                warnings.filterwarnings("ignore", "Unrecognized options", RuntimeWarning)
                result = milp(self.c, constraints=constraints, integrality=integrality,
                              bounds=Bounds(np.zeros(n), upper), options=dict(solver_options))
            if result.x is not None:
                return result.x
        return None

    def picks(self, x: np.ndarray) -> list[int]:
        """The index in `flat` of each stage's chosen option."""
        offsets = self.offsets
        return [offsets[k] + int(np.argmax(x[offsets[k]:offsets[k + 1]])) for k in range(len(self.stages))]

    def exclude(self, picks: list[int]) -> None:
        """A cut: the pipeline of these options is not chosen again."""
        row = np.zeros(self.n)
        row[picks] = 1
        self.add(row, -np.inf, len(self.stages) - 1)


def _objective_program(options: dict[str, list[Option]], w: Weights, per_g_h: float) -> _Program:
    """The program's variables and objective: cores, power (or carbon rate) and accuracy at the weights `w`."""
    stages = list(options)
    offsets = np.cumsum([0, *[len(options[s]) for s in stages]])
    n_x = offsets[-1]
    flat = [o for s in stages for o in options[s]]
    product = w.accuracy == "product"
    variants = [sorted({o.accuracy_class for o in options[st]}) for st in stages]  # accuracy classes per stage
    # The product of stage accuracies is not linear in the options. One continuous y ≥ 0 per combination of variants
    # (a variant per stage), tied to the options by: for every stage k and variant v, Σ y over the combinations with
    # v at k = [stage k chose v] (`_add_constraints`). With exactly one variant chosen per stage, any combination
    # holding an unchosen variant has y = 0, so all weight sits on the one combination chosen: y is its 0/1 indicator
    # and Σ y·Π accuracy is the product exactly, for any number of stages. (A log of the product is no substitute:
    # the objective adds cores and power to α × the product, and the log of a sum is not a sum of logs.) The
    # combinations grow as the product of the stages' variant counts (125 for three stages of 5), the price of
    # exactness.
    combos = list(itertools.product(*variants)) if product else []
    n = n_x + len(combos) + 1  # x, variant-combination variables, SLA slack (s)
    power = np.array([o.power_w for o in flat])
    c = np.zeros(n)  # milp minimises
    c[:n_x] = w.beta * np.array([o.cores for o in flat]) + w.delta * power * (per_g_h if w.objective == "carbon" else 1.0)
    accuracy = {st: {o.accuracy_class: o.accuracy_pct / 100.0 for o in options[st]} for st in stages}
    if product:
        for j, combo in enumerate(combos):
            c[n_x + j] = -w.alpha * math.prod(accuracy[st][v] for st, v in zip(stages, combo))
    else:
        c[:n_x] -= w.alpha * np.array([o.accuracy_pct for o in flat]) / 100.0
    c[n - 1] = SLACK_PENALTY
    return _Program(stages, flat, offsets, combos, c)


def _add_constraints(program: _Program, sla_s: float, max_cores: int, per_g_h: float,
                     power_budget_w: float | None, carbon_budget_g_per_h: float | None) -> None:
    """One option per stage; the per-stage latency sum within the SLA (less the slack); the cores and the budgets;
    and, for a product of accuracies, each combination variable tied to the stages' choices."""
    n, n_x, offsets, flat = program.n, program.n_x, program.offsets, program.flat
    for k, _ in enumerate(program.stages):  # one option per stage
        row = np.zeros(n)
        row[offsets[k]:offsets[k + 1]] = 1
        program.add(row, 1, 1)
    row = np.zeros(n)
    row[:n_x] = [o.latency_s for o in flat]
    row[program.slack] = -1
    program.add(row, -np.inf, sla_s)  # latency − slack ≤ SLA
    row = np.zeros(n)
    row[:n_x] = [o.cores for o in flat]
    program.add(row, -np.inf, max_cores)
    power = np.array([o.power_w for o in flat])
    if power_budget_w is not None:
        row = np.zeros(n)
        row[:n_x] = power
        program.add(row, -np.inf, power_budget_w)
    if carbon_budget_g_per_h is not None:
        row = np.zeros(n)
        row[:n_x] = power * per_g_h
        program.add(row, -np.inf, carbon_budget_g_per_h)
    if not program.combos:  # accuracy a sum: no combination variables to tie
        return
    for k in range(len(program.stages)):  # per stage k and class v: Σ y[combos with v at k] = [stage k chose v]
        for v in sorted({o.accuracy_class for o in flat[offsets[k]:offsets[k + 1]]}):
            row = np.zeros(n)
            for i in range(offsets[k], offsets[k + 1]):
                row[i] = -1.0 if flat[i].accuracy_class == v else 0.0
            for j, combo in enumerate(program.combos):
                row[n_x + j] = 1.0 if combo[k] == v else 0.0
            program.add(row, 0, 0)


def _pick_with_cuts(program: _Program, sla_s: float, meets: Callable[[tuple[Option, ...]], bool],
                    solver_options: Mapping) -> tuple[Option, ...] | None:
    """The program's pick, solved again with a cut while the end-to-end model (`meets`) rejects the pick, at most
    MAX_CUTS times; None when nothing fits the cores and budgets (and cuts)."""
    chosen = None
    for _ in range(MAX_CUTS):
        x = program.solve(solver_options)
        if x is None:  # only the core or power/carbon budgets (and cuts) can make it infeasible: nothing fits
            break
        picks = program.picks(x)
        chosen = tuple(program.flat[i] for i in picks)
        if sla_violation_s(sum(o.latency_s for o in chosen), sla_s) > 1e-9 or meets(chosen):
            break  # the least-bad choice (nothing meets the per-stage guide), or one the model accepts
        program.exclude(picks)  # the model rejects this pipeline: exclude it, solve again
    return chosen


def decide(options: dict[str, list[Option]], sla_s: float, max_cores: int, w: Weights,
           intensity_g_per_kwh: float = 0.0, power_budget_w: float | None = None,
           carbon_budget_g_per_h: float | None = None, solver_options: Mapping = HIGHS_OPTIONS,
           pipeline_p99_s: Callable[[PipelineChoice], float] | None = None) -> Decision:
    """The optimal choice, or — when no choice meets the SLA — the least-bad one within the budgets, flagged. When
    no choice at all fits the power or carbon budget (within the cores), the choice of least power that meets the
    SLA, marked `nothing_within_budget` (served over the budget, never silently).

    `pipeline_p99_s`: the end-to-end model whose verdict on the SLA counts (`pipeline_p99_s(profiles, load)`, the
    study's own); without it, the per-stage sum is taken as the pipeline's latency (for hand-made options).
    `solver_options`: HiGHS's options; bench/bench_adapt.py compares these with HiGHS's defaults."""
    options = {stage: undominated(opts) for stage, opts in options.items()}
    per_g_h = intensity_g_per_kwh / 1000.0
    program = _objective_program(options, w, per_g_h)
    _add_constraints(program, sla_s, max_cores, per_g_h, power_budget_w, carbon_budget_g_per_h)

    def model_p99_s(combo: tuple[Option, ...]) -> float:
        return pipeline_p99_s(to_choice(combo)) if pipeline_p99_s else sum(o.latency_s for o in combo)

    def meets(combo: tuple[Option, ...]) -> bool:
        return sla_violation_s(model_p99_s(combo), sla_s) <= 1e-9

    chosen = _pick_with_cuts(program, sla_s, meets, solver_options)
    if chosen is None and (power_budget_w is not None or carbon_budget_g_per_h is not None):
        least = decide(options, sla_s, max_cores, LEAST_POWER, intensity_g_per_kwh, solver_options=solver_options,
                       pipeline_p99_s=pipeline_p99_s)
        if least.choice is not None:  # else the cores alone leave nothing: as without a budget
            return replace(least, nothing_within_budget=True, objective=score(least.options, w, intensity_g_per_kwh))
    if chosen is None:
        return Decision((), None, 0.0, 0, 0.0, float("inf"), False, float("inf"), float("-inf"))
    if meets(chosen) and sum(o.latency_s for o in chosen) <= sla_s:
        # only a pick of the program with the SLA held: it is then among the tie's candidates, so the tie can
        # only lower its power, never break a power or carbon budget the relaxed program left unmet
        chosen = least_power_tie(chosen, options, sla_s, meets)
    latency = model_p99_s(chosen)
    violation = sla_violation_s(latency, sla_s)
    return Decision(chosen, to_choice(chosen), _accuracy(chosen, w.accuracy), sum(o.cores for o in chosen),
                    sum(o.power_w for o in chosen), latency, violation <= 1e-9, violation,
                    score(chosen, w, intensity_g_per_kwh))
