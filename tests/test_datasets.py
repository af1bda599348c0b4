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


def _unlisted_image(doc):
    doc["annotations"][0]["image_id"] = 99


def _category_without_a_name(doc):
    del doc["categories"][0]["name"]


def _box_not_finite(doc):
    doc["annotations"][0]["bbox"] = [4, 4, float("inf"), 20]


def _unknown_category(doc):
    doc["annotations"][1]["category_id"] = 7


def _image_without_a_file(doc):
    doc["images"][2]["file_name"] = ""


MALFORMED = {  # how the file is broken → what the line says
    "annotation for an unlisted image": (_unlisted_image, "annotation 1 is for image 99, not in its images"),
    "category without a name": (_category_without_a_name, 'category {"id": 1} has no id (a number or text) or no name'),
    "box not finite": (_box_not_finite, "annotation 1 has bbox [4, 4, Infinity, 20], not 4 finite numbers"),
    "annotation of an unknown category": (_unknown_category, "annotation 2 has category 7, not in its categories"),
    "image without a file name": (_image_without_a_file, "image {"),
    # ids that cannot key a lookup, and a box number past the float range: one line, not a traceback
    "image id a list": (lambda doc: doc["images"][0].update(id=[1]), "has no id (a number or text)"),
    "box past the float range": (lambda doc: doc["annotations"][0].update(bbox=[4, 4, 10 ** 400, 20]),
                                 "not 4 finite numbers"),
}


@pytest.mark.parametrize("name", MALFORMED)
def test_malformed_coco_annotations_are_one_line_before_any_frame_is_read(name, tmp_path):
    paths = _coco(tmp_path)
    breaks, problem = MALFORMED[name]
    doc = json.loads((tmp_path / "instances.json").read_text())
    breaks(doc)
    (tmp_path / "instances.json").write_text(json.dumps(doc))
    with pytest.raises(UserError) as raised:
        load_dataset(compose(["dataset=coco", *paths]).dataset)
    assert problem in raised.value.problem and "\n" not in str(raised.value), str(raised.value)


def test_coco_annotations_not_utf8_are_one_line(tmp_path):
    paths = _coco(tmp_path)
    text = (tmp_path / "instances.json").read_text().replace('"car"', '"voiture \u00e9lectrique"')
    (tmp_path / "instances.json").write_bytes(text.encode("latin-1"))
    with pytest.raises(UserError, match="is not UTF-8 text .* Fix: save it as UTF-8"):
        load_dataset(compose(["dataset=coco", *paths]).dataset)


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
