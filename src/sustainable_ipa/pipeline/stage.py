"""What the runner knows of a pipeline stage: a batch of items in, per item its output and the items it hands on.

The runner never names a stage's model: a pipeline is a list of `StageSpec`s, each a `Stage` with its settings.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol, Sequence


@dataclass(frozen=True)
class StageSettings:
    batch_size: int
    threads: int  # torch intra-op threads of each replica, on as many cores of its own
    replicas: int  # parallel workers of the stage, each taking whole batches


@dataclass(frozen=True)
class ItemResult:
    """What a stage made of one item of its batch."""

    output: object  # recorded on the item's request under the stage's name (detections, a class index)
    handoffs: Sequence = field(default_factory=tuple)  # items for the next stage (crops); the last stage hands none


class Stage(Protocol):
    """One stage as a replica runs it: `stage(batch) -> [ItemResult per item, in order]`.

    With the runner's default `isolation="processes"` each replica runs the stage in a worker process of its own:
    the stage is pickled once (`torch.save`, so tensors are stored once and memory-mapped by every replica) and
    must not rely on state shared with the parent; its outputs and handoffs travel back pickled. A stage that needs
    its items' request (ground truth, say) gets it inside the item.
    """

    def __call__(self, batch: list) -> list[ItemResult]: ...


@dataclass(frozen=True)
class StageSpec:
    name: str  # names its metrics (`cpu_<name>_s`, `energy_<name>_j`) and its outputs on each request
    stage: Stage
    settings: StageSettings
