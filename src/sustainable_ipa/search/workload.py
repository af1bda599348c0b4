"""What a pipeline's stages get when they are profiled, and how items fan out from one stage to the next.

A request brings one item to the first stage (a frame); each item of a stage hands some items to the next (the
detector, a crop per box). Profiles are measured per item and batch; the composition needs, per stage, how many
items each request brings it, which follows from the fan-outs measured on the dataset.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from sustainable_ipa.data import Dataset
from sustainable_ipa.errors import UserError
from sustainable_ipa.models.classifier import crop


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


def frame_crops(dataset: Dataset) -> list[list[np.ndarray]]:
    """Each frame's ground-truth crops: what the classifier gets from it with random detector weights."""
    return [[c for gt in f.ground_truth if (c := crop(f.image_bgr, gt.box_xyxy)) is not None] for f in dataset.frames]


def video_workload(dataset: Dataset) -> Workload:
    """IPA's video pipeline: frames to the detector, which hands the classifier each frame's crops."""
    crops = frame_crops(dataset)
    return Workload({"detector": [f.image_bgr for f in dataset.frames], "classifier": [c for cs in crops for c in cs]},
                    {"detector": tuple(len(cs) for cs in crops), "classifier": ()})


WORKLOADS = {"video": video_workload}  # by pipeline.name


def pipeline_workload(pipeline, dataset: Dataset) -> Workload:
    """The workload of the configured pipeline, checked against its stages."""
    if pipeline.name not in WORKLOADS:
        raise UserError(f"no profiling workload for pipeline '{pipeline.name}'",
                        f"profile one of: {', '.join(WORKLOADS)}")
    workload = WORKLOADS[pipeline.name](dataset)
    if list(workload.inputs) != list(pipeline.stages):
        raise UserError(f"pipeline '{pipeline.name}' lists stages {list(pipeline.stages)}, its workload "
                        f"{list(workload.inputs)}", "list the pipeline's own stages in pipeline.stages")
    return workload
