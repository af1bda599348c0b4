"""What a switch of configuration costs, how an interval with one is served, and when the gain is worth the cost.

The live loop (`adapt/live.py`, its states in `adapt/live_serving.py`) switches like this: a decision that changes batch sizes alone is made in place, at no
cost; any other starts the next configuration's workers, loads and warms them (one batch through every replica, stage
after stage) while the current configuration keeps serving on the same cores, then hands over. The model here:

- **Cost** (`switch_cost`): for new workers, preparation seconds and active joules are the sums, over the next
  configuration's stages and replicas, of one replica's bring-up (`BringUp`, keyed like the profile table); in place
  and no change cost nothing.
- **Service** (`serve_interval`): over the interval's first `prepare_s` seconds the current configuration serves, at
  the share of its capacity that preparing leaves it (`serving_share`); the next one serves the rest. Energy is each
  one's requests × its energy per request, plus the switch's joules. A preparation longer than the interval ends
  there: the current configuration serves the whole interval and the next one takes the next.
- **Decision** (`worth_switching`): a switch that needs new workers is made when the objective it gains (the
  decision's score less the held configuration's, both at the planned load) over the expected dwell outweighs its
  cost in the objective's own units: β × the next configuration's cores × the preparation seconds (cores held twice)
  plus δ × its joules (power objective) or δ × its grams × 3600 (carbon: that term is a rate in g/h). The expected
  dwell is how long the new optimum has already lasted, intervals × step (a level that has lasted d is likely to
  last about d more: the break-even rule of ski rental, which never pays more than twice what the best choice in
  hindsight pays). IPA's objective (δ = 0) weighs cores only: every policy is held to the same rule, with its own
  weights.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace

from sustainable_ipa.adapt.optimizer import Decision, Weights
from sustainable_ipa.adapt.traces import Trace, served_requests
from sustainable_ipa.search.space import PipelineChoice

NEW_WORKERS, IN_PLACE, NO_SWITCH = "new workers", "in place", "none"


@dataclass(frozen=True)
class BringUp:
    """Bringing up one replica of a stage option: its workers started, model loaded, one batch warmed."""

    prepare_s: float
    energy_j: float  # active
    serving_share: float = 1.0  # the share of the serving configuration's capacity left while this prepares


BringUps = Mapping[tuple[str, str, int, int, str, str], BringUp]  # (stage, variant, batch, threads, precision, runtime)


@dataclass(frozen=True)
class SwitchCost:
    how: str  # new workers | in place | none
    prepare_s: float = 0.0
    energy_j: float = 0.0
    serving_share: float = 1.0


def only_batch_sizes(current: PipelineChoice, nxt: PipelineChoice) -> bool:
    """Whether `nxt` differs from `current` in batch sizes alone: the running workers can serve it as they are."""
    return all(replace(c, batch_size=0) == replace(n, batch_size=0)
               for c, n in zip(current.stages().values(), nxt.stages().values()))


def switch_cost(current: PipelineChoice | None, nxt: PipelineChoice, bring_ups: BringUps | None) -> SwitchCost:
    """What going from `current` to `nxt` costs (nothing from no configuration: the first is prepared before
    serving; nothing without `bring_ups`: switches taken as free, as before issue 29)."""
    if current is None or current == nxt:
        return SwitchCost(NO_SWITCH)
    if only_batch_sizes(current, nxt):
        return SwitchCost(IN_PLACE)
    return SwitchCost(NEW_WORKERS) if bring_ups is None else bring_up(nxt, bring_ups)


def bring_up(choice: PipelineChoice, bring_ups: BringUps) -> SwitchCost:
    """Bringing up every replica of `choice` with new workers, while another configuration serves."""
    ups = [(bring_ups[(stage, c.variant, c.batch_size, c.threads, c.precision, c.runtime)], c.replicas)
           for stage, c in choice.stages().items()]
    return SwitchCost(NEW_WORKERS, sum(u.prepare_s * r for u, r in ups), sum(u.energy_j * r for u, r in ups),
                      min(u.serving_share for u, _ in ups))


def switch_penalty(cost: SwitchCost, cores: int, w: Weights, intensity_g_per_kwh: float) -> float:
    """The switch's cost in the objective's units × seconds: β × cores × preparation seconds + δ × its joules (or
    grams × 3600: the carbon term is a rate in g/h)."""
    energy = cost.energy_j * intensity_g_per_kwh / 1000.0 if w.objective == "carbon" else cost.energy_j
    return w.beta * cores * cost.prepare_s + w.delta * energy


def worth_switching(decision: Decision, held: Decision, cost: SwitchCost, dwell_s: float, w: Weights,
                    intensity_g_per_kwh: float) -> bool:
    """Whether `decision` gains more over `dwell_s` than switching to it from `held` costs (`held`: the serving
    configuration scored at the same load)."""
    gain = decision.objective - held.objective
    return gain * dwell_s > switch_penalty(cost, decision.cores, w, intensity_g_per_kwh)


class Dwell:
    """How long the adapter's optimum has lasted: the intervals in a row it has been the same configuration."""

    def __init__(self):
        self.optimum, self.intervals = None, 0

    def update(self, choice: PipelineChoice | None) -> int:
        """`choice` is this interval's optimum: the intervals it has lasted, this one included."""
        self.intervals = self.intervals + 1 if choice == self.optimum else 1
        self.optimum = choice
        return self.intervals


@dataclass(frozen=True)
class Served:
    arrived: float
    served: float
    within_sla: float  # requests served by a configuration that meets the SLA at the planned load
    energy_j: float


def serve_interval(load: Trace, start_s: float, length_s: float, current: Decision | None, decision: Decision,
                   cost: SwitchCost) -> Served:
    """The interval served by `decision`, after `cost.prepare_s` seconds of `current` at `cost.serving_share` of its
    capacity when the switch needs new workers; the switch's joules included."""
    prepare_s = min(cost.prepare_s, length_s) if cost.how == NEW_WORKERS and current is not None else 0.0
    parts = [(current, start_s, prepare_s, cost.serving_share),
             (decision, start_s + prepare_s, length_s - prepare_s, 1.0)]
    arrived = served = within = energy = 0.0
    for d, begin_s, span_s, share in parts:
        if span_s <= 0:
            continue
        capacity = share * min(o.capacity_rps for o in d.options)
        a, s = served_requests(load, begin_s, span_s, capacity)
        arrived, served = arrived + a, served + s
        within += s if d.meets_sla else 0.0
        energy += s * sum(o.energy_j_per_request for o in d.options)
    return Served(arrived, served, within, energy + (cost.energy_j if prepare_s > 0 else 0.0))
