"""A model family: one kind of stage model behind one small interface, as `energy/` puts each meter behind a window.

A pipeline YAML names, per stage, its family (`pipeline.<stage>.family`), the family's parameters
(`pipeline.<stage>.params`, declared by the family's `Params`) and the stage's variant catalogue
(`pipeline.variants.<stage>`: published accuracy, its source, and what the family builds, `model`). The runner and
its worker processes, profiling, the workload model, the records, the live loop and the report take everything
from here, never from a stage's name.

A family says:
- what a batch holds (`consumes`, an item kind) and what it hands the next stage (`emits`; None at a pipeline's end);
- how a variant is built (`build`: random weights offline, pretrained ones from a file or folder `weights_source`
  names), in a precision, on a runtime (`StageModel.use_openvino`);
- what it hands on for an item without running a model (`reference_handoffs`: the item's references, as the
  ground-truth crops of a frame or the reference transcript of a clip). Random weights hand those on, so that the
  next stage's workload stays realistic, and the profiling workload is made of them;
- which accuracy it measures (`accuracy`, a fraction in [0, 1] under the name `metric`), where weights allow.

A `StageModel` is what a replica runs: `model(items) -> [ItemResult per item]`, pickled once to every worker
process of its stage (`pipeline/replicas.py`).
"""

from __future__ import annotations

import copy
from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, ClassVar, Literal

from pydantic import BaseModel, ConfigDict

from sustainable_ipa.pipeline.stage import ItemResult

# How a stage model chooses what it hands on: what its model made, or the item's references (random weights).
Handoff = Literal["model", "reference"]


class FamilySettings(BaseModel):
    """Base of a family's `Params` and `Model` declarations: strict, finite, no unknown key (as `schema.Settings`)."""

    model_config = ConfigDict(strict=True, extra="forbid", allow_inf_nan=False)


class NoModel(FamilySettings):
    """A family whose variants are known to its library by name (torchvision's ResNets) declares nothing more."""


@dataclass(frozen=True)
class WeightsSource:
    """Where a variant's pretrained weights are found: `name` (a file, or a folder of files) in `weights=<folder>`
    or `weights_dir`, else in the library's own caches; fetched from `url` when the machine is online."""

    name: str
    url: str | None = None  # shown to the user; `fetch` downloads it
    library_cache: tuple[Path, ...] = ()  # where the library itself keeps it (a file or folder path each)
    fetch: Callable[[Path], bool] | None = None  # writes the weights at the given path; False when it cannot


class StageModel(ABC):
    """A variant built in a precision: what a stage replica runs. Picklable (sent to the worker processes).

    `precision` (fp32 | bf16 | int8) and `runtime` (torch | openvino) say how it runs; `handoff` what it hands on.
    `fp32_twin()` gives the same weights run by torch in fp32: fidelity is measured against it.
    """

    variant: str
    precision: str
    runtime: str
    handoff: Handoff

    @abstractmethod
    def __call__(self, items: list) -> list[ItemResult]:
        """One batch: per item, its output (recorded on its request) and what it hands the next stage."""

    @abstractmethod
    def fidelity(self, items: list) -> dict[str, float]:
        """How far this model's outputs stray from its torch fp32 twin's on `items` (agreement, cosine), keyed
        without the stage (the caller names them `fidelity_<stage>_<key>`). Meaningful with random weights too."""

    def use_openvino(self, cache_dir: Path, items: list):
        """Run on OpenVINO from now on: exported into `cache_dir` (int8: calibrated on `items`, this stage's inputs)
        or read from it. Returns the `openvino_runtime.Export`. Families that have no export refuse this."""
        raise NotImplementedError(f"{type(self).__name__} has no OpenVINO export")

    def describe(self) -> dict[str, float]:
        """Static facts logged as run params `<stage>.<key>` (parameter count, multiply-adds per item)."""
        return {}

    def fp32_twin(self) -> "StageModel":
        """The same model, weights shared, run by torch in fp32."""
        twin = copy.copy(self)
        twin.precision, twin.runtime = "fp32", "torch"
        return twin


class ModelFamily(ABC):
    """One kind of stage model. Instances are made per stage from the pipeline YAML: `Family(stage, params)`."""

    consumes: ClassVar[str]  # the item kind its batches hold: "frame", "crop", "speech", "text", ...
    emits: ClassVar[str | None]  # the item kind it hands on; None: it hands nothing on (a pipeline's last stage)
    metric: ClassVar[str]  # its measured accuracy, a fraction in [0, 1], recorded as `<stage>_<metric>`
    metric_description: ClassVar[str]  # what `reference_accuracy` and `metric` measure, for docs and the report
    runtimes: ClassVar[tuple[str, ...]] = ("torch",)  # "openvino" where `StageModel.use_openvino` is built
    Params: ClassVar[type[FamilySettings]] = FamilySettings  # pipeline.<stage>.params
    Model: ClassVar[type[FamilySettings]] = NoModel  # pipeline.variants.<stage>.<variant>.model
    # Modules a stage worker needs to unpickle this family's models, imported once by the workers' forkserver
    # (`pipeline/replicas.py`) beside the family's own module: each worker would otherwise import them itself.
    preload: ClassVar[tuple[str, ...]] = ()

    def __init__(self, stage: str, params: FamilySettings):
        self.stage = stage
        self.params = params

    @abstractmethod
    def weights_source(self, variant: str, model: FamilySettings) -> WeightsSource:
        """What pretrained weights this variant loads (one file, or one folder), and where they are looked for."""

    def check(self, variant: str, model: FamilySettings) -> None:
        """What can be told of a variant's catalogue entry without building it (a hyper-parameter its config class
        does not know): one `UserError`. Run for every variant when a config is validated."""

    @abstractmethod
    def build(self, variant: str, model: FamilySettings, weights: Path | None, precision: str, device: str,
              handoff: Handoff) -> StageModel:
        """The variant with `weights` (the file or folder `weights_source` named; None: random init, the same for
        the same torch seed). Weights of another architecture: one `UserError`."""

    @abstractmethod
    def reference_handoffs(self, item) -> list | None:
        """What this stage hands on for `item` according to the item's references, without a model; None when the
        item has none (a frame without ground truth): then a model's own handoffs stand in."""

    @classmethod
    def worker_modules(cls) -> list[str]:
        return [cls.__module__, *cls.preload]

    def accuracy(self, model: StageModel, items: list, dataset) -> dict[str, float]:
        """The measured accuracy of `model` (pretrained weights) on this stage's reference inputs `items` (and the
        dataset's references): `{metric: fraction, ...}`, keyed without the stage. Empty when nothing can be
        scored."""
        return {}
