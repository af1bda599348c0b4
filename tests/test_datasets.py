"""The dataset options: embedded sample, a local COCO folder (deterministic by seed), frames of a video."""

import json

import cv2
import numpy as np
import pytest

from sustainable_ipa.config import compose
from sustainable_ipa.data import load_dataset
from sustainable_ipa.errors import UserError


def test_sample_has_both_images_and_their_ground_truth():
    dataset = load_dataset(compose().dataset)
    assert [f.name for f in dataset.frames] == ["bus.jpg", "zidane.jpg"]
    assert [len(f.ground_truth) for f in dataset.frames] == [5, 4]
    assert dataset.frames[0].image_bgr.shape == (1080, 810, 3)
    assert dataset.categories[6] == "bus"


def _coco(tmp_path, n=6):
    root = tmp_path / "images"
    root.mkdir()
    images, annotations = [], []
    for i in range(1, n + 1):
        cv2.imwrite(str(root / f"{i}.jpg"), np.full((64, 64, 3), 10 * i, np.uint8))
        images.append({"id": i, "file_name": f"{i}.jpg", "width": 64, "height": 64})
        category = 1 if i % 2 else 3  # odd images hold a person, even ones a car
        annotations.append({"id": i, "image_id": i, "category_id": category, "bbox": [4, 4, 20, 20], "area": 400,
                            "iscrowd": 0})
    doc = {"images": images, "annotations": annotations,
           "categories": [{"id": 1, "name": "person"}, {"id": 3, "name": "car"}]}
    (tmp_path / "instances.json").write_text(json.dumps(doc))
    return [f"dataset.root={root}", f"dataset.annotations={tmp_path / 'instances.json'}"]


def test_coco_picks_images_with_the_category_deterministically_by_seed(tmp_path):
    paths = _coco(tmp_path)
    pick = lambda seed: load_dataset(compose(["dataset=coco", *paths, "dataset.n_images=2", f"trial.seed={seed}"]).dataset)
    first = pick(0)
    assert [f.image_id for f in first.frames] == [f.image_id for f in pick(0).frames]
    assert all(f.image_id % 2 == 1 for f in first.frames) and len(first.frames) == 2
    seeds = {tuple(f.image_id for f in pick(s).frames) for s in range(6)}
    assert len(seeds) > 1  # the seed matters


def test_coco_unknown_category_is_a_clear_error(tmp_path):
    with pytest.raises(UserError, match="category 'zebra'"):
        load_dataset(compose(["dataset=coco", *_coco(tmp_path), "dataset.category=zebra"]).dataset)


def test_video_frames_are_read_with_opencv(tmp_path):
    path = tmp_path / "clip.avi"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 10, (96, 64))
    for i in range(7):
        writer.write(np.full((64, 96, 3), 30 * i, np.uint8))
    writer.release()
    dataset = load_dataset(compose(["dataset=video", f"dataset.path={path}", "dataset.stride=2"]).dataset)
    assert len(dataset.frames) == 4 and dataset.frames[0].image_bgr.shape == (64, 96, 3)
    assert dataset.annotations is None


def test_video_that_does_not_exist(tmp_path):
    with pytest.raises(UserError, match="does not exist"):
        load_dataset(compose(["dataset=video", f"dataset.path={tmp_path}/none.mp4"]).dataset)
