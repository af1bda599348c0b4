"""Frames, ground truth and the COCO-format reading shared by the image datasets."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from omegaconf import DictConfig

from sustainable_ipa.errors import UserError


@dataclass(frozen=True)
class GroundTruthBox:
    box_xyxy: tuple[float, float, float, float]  # pixels of the original frame
    category_id: int  # COCO category id (1..90)


@dataclass(frozen=True)
class Frame:
    image_id: int
    name: str
    image_bgr: np.ndarray = field(repr=False)  # H × W × 3, uint8, OpenCV channel order
    ground_truth: tuple[GroundTruthBox, ...] = ()


@dataclass(frozen=True)
class Dataset:
    """Frames for a pipeline whose first stage takes frames. Every dataset has a `name`, a `kind` (the item kind of
    its `items`, one per request) and its `items`; a speech or text dataset is a `samples.SampleDataset`."""

    name: str
    frames: list[Frame]
    annotations: Path | None = None  # COCO instances JSON the frames' ground truth comes from
    categories: dict[int, str] = field(default_factory=dict)  # COCO id -> name
    kind = "frame"

    @property
    def items(self) -> list[Frame]:
        return self.frames

    @property
    def image_ids(self) -> list[int]:
        return [f.image_id for f in self.frames]


def load_dataset(cfg: DictConfig):
    """Build the dataset the config names (its `_target_`): a `Dataset` of frames or a `samples.SampleDataset`."""
    from hydra.errors import InstantiationException
    from hydra.utils import instantiate
    from omegaconf.errors import MissingMandatoryValue

    try:
        dataset = instantiate(cfg)
    except MissingMandatoryValue as err:
        raise UserError(f"{err.full_key} is not set", f"pass {err.full_key}=…") from None
    except InstantiationException as err:
        if isinstance(err.__cause__, UserError):  # Hydra wraps what the dataset builder raised
            raise err.__cause__ from None
        raise
    if not dataset.items:
        raise UserError(f"dataset '{dataset.name}' has no items", "point the dataset's paths at images, a video, "
                        "clips or texts")
    return dataset


def read_image(path: Path) -> np.ndarray:
    import cv2

    if not path.is_file():
        raise UserError(f"image {path} does not exist", "check dataset.root and the file names in dataset.annotations")
    image = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if image is None or image.size == 0:
        raise UserError(f"image {path} is corrupt or not an image", "replace or remove that file")
    return image


def read_coco(annotations: str | Path | None) -> dict:
    if annotations is None or str(annotations) in ("", "???"):
        raise UserError("no annotations file given", "pass dataset.annotations=/path/to/instances.json")
    path = Path(annotations)
    if not path.is_file():
        raise UserError(f"annotations file {path} does not exist", "pass dataset.annotations=/path/to/instances.json")
    try:
        doc = json.loads(path.read_text())
        doc["images"], doc["annotations"], doc["categories"]
    except (json.JSONDecodeError, KeyError, TypeError) as err:
        raise UserError(f"annotations file {path} is not COCO instances JSON ({err})",
                        "give a file with images, annotations and categories") from None
    return doc


def coco_frames(root: Path, doc: dict, image_ids: list[int]) -> list[Frame]:
    if not root.is_dir():
        raise UserError(f"dataset folder {root} does not exist", "pass dataset.root=/path/to/images")
    images = {img["id"]: img for img in doc["images"]}
    boxes: dict[int, list[GroundTruthBox]] = {i: [] for i in image_ids}
    for ann in doc["annotations"]:
        if ann["image_id"] in boxes and not ann.get("iscrowd", 0):
            x, y, w, h = ann["bbox"]
            boxes[ann["image_id"]].append(GroundTruthBox((x, y, x + w, y + h), ann["category_id"]))
    return [Frame(i, images[i]["file_name"], read_image(root / images[i]["file_name"]), tuple(boxes[i])) for i in image_ids]
