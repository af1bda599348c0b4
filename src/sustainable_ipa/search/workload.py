"""What a pipeline's stages get when they are profiled or calibrated, and how items fan out from one stage to the
next.

A request brings one item to the first stage (a frame, a clip, a text); each item of a stage hands some items to the
next (YOLOv5, a crop per box; a speech recogniser, one transcript). The items each stage gets are those its families
hand on by the items' references (`ModelFamily.reference_handoffs`: the ground truth's crops, the reference
transcript), as random-weight stages hand them on at run time; where a dataset has no references for a stage, a
model's own handoffs stand in. Profiles are measured per item and batch; the composition needs, per stage, how many
items each request brings it, which follows from the fan-outs.
"""

from __future__ import annotations

from dataclasses import dataclass

from sustainable_ipa.errors import UserError


@dataclass(frozen=True)
class Workload:
    inputs: dict[str, list]  # per stage, in pipeline order: the items its profiled batches are cut from (cycled)
    handoffs: dict[str, tuple[int, ...]]  # per stage: items the next stage gets per item of this one, in item order
    # (cycled, as requests cycle over the dataset); the last stage's are not used

    def items_per_request(self) -> dict[str, tuple[int, ...]]:
        """Per stage, the items each request brings it, one cycle of them in request order."""
        stages = list(self.inputs)
        out = {stages[0]: (1,)}
        for before, stage in zip(stages, stages[1:]):
            out[stage] = fan_out(out[before], self.handoffs[before])
        return out


def fan_out(items_per_request: tuple[int, ...], handoffs_per_item: tuple[int, ...]) -> tuple[int, ...]:
    """Items per request at the next stage: each request's items in turn (numbered across requests) hand on
    `handoffs_per_item` of the item's number in its cycle. The cycle returned closes when both cycles do."""
    if not handoffs_per_item:
        raise ValueError("a stage that feeds another needs its handoffs per item")
    out, item, request = [], 0, 0
    while True:
        n = items_per_request[request % len(items_per_request)]
        out.append(sum(handoffs_per_item[(item + k) % len(handoffs_per_item)] for k in range(n)))
        item, request = item + n, request + 1
        if request % len(items_per_request) == 0 and item % len(handoffs_per_item) == 0:
            return tuple(out)


def pipeline_workload(families: dict, dataset, models: dict | None = None) -> Workload:
    """The items every stage of the pipeline gets from `dataset` (`families`, by stage in pipeline order, as
    `families.stage_families` gives them), by the references; a stage whose items carry none hands on what its
    model in `models` (torch fp32) makes of them."""
    stages = list(families)
    first = families[stages[0]]
    if dataset.kind != first.consumes:
        raise UserError(f"dataset '{dataset.name}' holds {dataset.kind} items but the first stage, '{stages[0]}', "
                        f"takes {first.consumes} items", f"choose a dataset of {first.consumes} items")
    inputs, handoffs = {stages[0]: list(dataset.items)}, {}
    for stage, after in zip(stages, stages[1:]):
        handed = [families[stage].reference_handoffs(item) for item in inputs[stage]]
        if all(h is None for h in handed) and models and stage in models:
            handed = [r.handoffs for r in models[stage].fp32_twin()(inputs[stage])]
        handed = [list(h or ()) for h in handed]
        handoffs[stage] = tuple(len(h) for h in handed)
        inputs[after] = [item for h in handed for item in h]
    handoffs[stages[-1]] = ()
    return Workload(inputs, handoffs)
