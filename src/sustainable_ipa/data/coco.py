"""A local COCO-format dataset: an image folder and its instances JSON."""

from __future__ import annotations

import random
from pathlib import Path

from sustainable_ipa.data.frames import Dataset, coco_frames, read_coco
from sustainable_ipa.errors import UserError


def coco_dataset(name: str, root: str, annotations: str, category: str, n_images: int, seed: int) -> Dataset:
    if root in (None, "???") or not Path(root).is_dir():
        raise UserError(f"dataset folder {root} does not exist", "pass dataset.root=/path/to/val2017")
    doc = read_coco(annotations)
    categories = {c["id"]: c["name"] for c in doc["categories"]}
    by_name = {v: k for k, v in categories.items()}
    if category not in by_name:
        raise UserError(f"category '{category}' is not in {annotations}", f"pass dataset.category= one of {', '.join(sorted(by_name)[:8])}, …")
    with_category = sorted({a["image_id"] for a in doc["annotations"] if a["category_id"] == by_name[category]})
    if not with_category:
        raise UserError(f"no image in {annotations} contains '{category}'", "choose another dataset.category")
    # Deterministic by seed, independent of the file's ordering.
    chosen = sorted(random.Random(seed).sample(with_category, min(n_images, len(with_category))))
    return Dataset(name, coco_frames(Path(root), doc, chosen), Path(annotations), categories)
