"""Frames, ground truth and the COCO-format reading shared by the image datasets."""

from __future__ import annotations

import json
import math
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
        doc = json.loads(path.read_text(encoding="utf-8"))
    except UnicodeDecodeError as err:
        raise UserError(f"annotations file {path} is not UTF-8 text (byte {err.start})",
                        "save it as UTF-8 JSON (COCO's own files are)") from None
    except json.JSONDecodeError as err:
        raise UserError(f"annotations file {path} is not JSON ({err})",
                        "give a COCO instances JSON file: images, annotations and categories") from None
    except OSError as err:
        raise UserError(f"cannot read annotations file {path} ({err.strerror})",
                        "pass dataset.annotations=/path/to/instances.json, a readable file") from None
    problem = coco_problem(doc)
    if problem:
        raise UserError(f"annotations file {path} is not COCO instances JSON: {problem}",
                        "correct that entry, or give a file with images (id, file_name), categories (id, name) and "
                        "annotations (image_id and category_id of those, bbox [x, y, w, h])")
    return doc


def coco_problem(doc) -> str | None:
    """The first thing in a parsed instances file that reading frames from it would trip on; None when it is whole:
    every image with an id and a file name, every category with an id and a name, every annotation pointing at a
    listed image and category with a box of 4 finite numbers."""
    if not isinstance(doc, dict) or not all(isinstance(doc.get(key), list) for key in COCO_LISTS):
        return f"it needs the lists {', '.join(COCO_LISTS)}"
    images, categories = set(), set()
    for image in doc["images"]:
        if not isinstance(image, dict) or not _identifier(image.get("id")) or not _text(image.get("file_name")):
            return f"image {_shown(image)} has no id (a number or text) or no file_name"
        images.add(image["id"])
    for category in doc["categories"]:
        if not isinstance(category, dict) or not _identifier(category.get("id")) or not _text(category.get("name")):
            return f"category {_shown(category)} has no id (a number or text) or no name"
        categories.add(category["id"])
    for annotation in doc["annotations"]:
        if not isinstance(annotation, dict):
            return f"annotation {_shown(annotation)} is not an object"
        if not (_identifier(annotation.get("image_id")) and _identifier(annotation.get("category_id"))):
            return f"annotation {_shown(annotation)} has an image_id or category_id that is no number or text"
        if annotation.get("image_id") not in images:
            return f"annotation {annotation.get('id')} is for image {annotation.get('image_id')}, not in its images"
        if annotation.get("category_id") not in categories:
            return (f"annotation {annotation.get('id')} has category {annotation.get('category_id')}, not in its "
                    "categories")
        box = annotation.get("bbox")
        if not (isinstance(box, list) and len(box) == 4 and all(_finite(v) for v in box)):
            return f"annotation {annotation.get('id')} has bbox {_shown(box)}, not 4 finite numbers"
    return None


COCO_LISTS = ("images", "annotations", "categories")


def _identifier(value) -> bool:
    """An id COCO files use: an integer or text (never a list or an object, which cannot key a lookup)."""
    return (isinstance(value, int) and not isinstance(value, bool)) or isinstance(value, str)


def _text(value) -> bool:
    return isinstance(value, str) and bool(value.strip())


def _finite(value) -> bool:
    """A number a box can hold: not a bool, finite as a float (an integer past the float range is not)."""
    if not isinstance(value, (int, float)) or isinstance(value, bool):
        return False
    try:
        return math.isfinite(float(value))
    except OverflowError:
        return False


def _shown(value) -> str:
    """A bad entry as its line may show it: short, on one line."""
    return json.dumps(value)[:80]


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
