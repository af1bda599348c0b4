"""One contract for every model family (as Optuna runs one suite over every storage): what the runner, the worker
processes, profiling and the records rely on, checked on each family's tiny configuration with random weights."""

from __future__ import annotations

import io

import numpy as np
import pytest
import torch
from tiny_encoders import FAMILY_CLASSES as ENCODER_CLASSES
from tiny_encoders import TINY as ENCODERS
from tiny_seq2seq import TINY as SEQ2SEQ

from sustainable_ipa.data import Frame
from sustainable_ipa.data.samples import Speech, Text
from sustainable_ipa.errors import UserError
from sustainable_ipa.families import checked, family_class
from sustainable_ipa.families.base import ModelFamily, StageModel
from sustainable_ipa.fingerprint import this_machine
from sustainable_ipa.metrics.record import jsonable
from sustainable_ipa.models.precision import missing_feature
from sustainable_ipa.pipeline.stage import ItemResult

KINDS = {"frame": Frame, "crop": np.ndarray, "speech": Speech, "text": Text}


def video_frames() -> list:
    from sustainable_ipa.config import compose
    from sustainable_ipa.data import load_dataset

    return load_dataset(compose([]).dataset).frames


def crops() -> list:
    from sustainable_ipa.families.resnet import crop

    return [c for f in video_frames() for gt in f.ground_truth if (c := crop(f.image_bgr, gt.box_xyxy)) is not None][:6]


VIDEO = {
    "yolov5": {"params": {"image_size": 64, "conf_threshold": 0.25, "iou_threshold": 0.45, "max_detections": 10},
               "variant": "yolov5n", "model": {}, "items": video_frames},
    "resnet": {"params": {"crop_size": 32}, "variant": "resnet18", "model": {}, "items": crops},
}
TINY = {**VIDEO, **ENCODERS, **SEQ2SEQ}
CLASS_NAMES = {name: ENCODER_CLASSES.get(name, name) for name in TINY}


def family(name: str) -> ModelFamily:
    cls = family_class(CLASS_NAMES[name])
    return cls(name, checked(cls.Params, TINY[name]["params"], f"pipeline.{name}.params"))


def build(name: str, precision: str = "fp32", handoff: str = "reference") -> StageModel:
    fam = family(name)
    torch.manual_seed(0)
    return fam.build(TINY[name]["variant"], checked(fam.Model, TINY[name]["model"], "model"), None, precision, "cpu",
                     handoff)


@pytest.fixture(scope="module", params=sorted(TINY))
def built(request):
    name = request.param
    return name, family(name), build(name), TINY[name]["items"]()


def outputs(model: StageModel, items: list) -> list:
    return [jsonable(r.output) for r in model(items)]


def test_a_family_declares_what_it_takes_and_gives(built):
    name, fam, _, items = built
    assert fam.consumes in KINDS and (fam.emits is None or fam.emits in KINDS)
    assert all(isinstance(item, KINDS[fam.consumes]) for item in items)
    assert 0 < len(fam.metric) and fam.metric_description and "torch" in fam.runtimes
    assert fam.worker_modules()[0] == type(fam).__module__


def test_a_batch_gives_one_result_per_item_and_hands_on_the_references(built):
    name, fam, model, items = built
    results = model(items)
    assert len(results) == len(items) and all(isinstance(r, ItemResult) for r in results)
    for item, result in zip(items, results):
        if fam.emits is None:
            assert not result.handoffs
            continue
        expected = fam.reference_handoffs(item)
        assert expected is not None and len(result.handoffs) == len(expected)
        assert all(isinstance(h, KINDS[fam.emits]) for h in result.handoffs)
    assert jsonable([r.output for r in results])  # every output can be recorded


def test_a_model_survives_the_trip_to_a_worker_process(built):
    """Stage workers get the model through torch.save / torch.load: the same outputs on the other side."""
    name, _, model, items = built
    buffer = io.BytesIO()
    torch.save(model, buffer)
    buffer.seek(0)
    again = torch.load(buffer, weights_only=False)
    assert outputs(again, items) == outputs(model, items)


def test_the_fp32_twin_is_the_same_model_on_torch(built):
    name, _, model, items = built
    twin = model.fp32_twin()
    assert (twin.precision, twin.runtime, twin.variant) == ("fp32", "torch", model.variant)
    assert outputs(twin, items) == outputs(model, items)


def test_describe_names_static_facts(built):
    _, _, model, _ = built
    facts = model.describe()
    assert facts["params"] > 0 and all(np.isfinite(float(v)) for v in facts.values())


def test_bf16_fidelity_is_a_set_of_measures_in_range(built):
    name, _, _, items = built
    if missing_feature("bf16", this_machine()):
        pytest.skip("this CPU has no native bf16")
    fidelity = build(name, "bf16").fidelity(items)
    assert fidelity and all(np.isfinite(v) for v in fidelity.values())
    assert all(-1 - 1e-9 <= v <= 1 + 1e-9 for k, v in fidelity.items() if "cosine" in k or "agreement" in k)


def test_a_weights_source_names_what_to_look_for(built):
    name, fam, _, _ = built
    source = fam.weights_source(TINY[name]["variant"], checked(fam.Model, TINY[name]["model"], "model"))
    assert source.name


def test_bad_params_are_one_line_naming_the_setting(built):
    name, fam, _, _ = built
    with pytest.raises(UserError, match=rf"pipeline.{name}.params.nonsense is not a setting") as err:
        checked(type(fam).Params, {**TINY[name]["params"], "nonsense": 1}, f"pipeline.{name}.params")
    assert "\n" not in str(err.value)
