"""The embedded default dataset: the images shipped inside the ultralytics package."""

from __future__ import annotations

from pathlib import Path

from sustainable_ipa.data.frames import Dataset, coco_frames, read_coco


def sample_dataset(name: str, root: str | None, annotations: str) -> Dataset:
    if root is None:
        from ultralytics.utils import ASSETS

        root = ASSETS
    doc = read_coco(annotations)
    ids = sorted(img["id"] for img in doc["images"])
    categories = {c["id"]: c["name"] for c in doc["categories"]}
    return Dataset(name, coco_frames(Path(root), doc, ids), Path(annotations), categories)
