"""The model families a pipeline's stages are made of, by the name a pipeline YAML gives them.

A family of the project is named by its key below (`family: yolov5`); a family of your own by its import path,
`family: my_package.my_module:MyFamily` (a `ModelFamily` subclass; see `base.py`). Modules are imported only when a
pipeline uses them.
"""

from __future__ import annotations

import importlib

from pydantic import ValidationError

from sustainable_ipa.errors import UserError
from sustainable_ipa.families.base import FamilySettings, ModelFamily

BUILT_IN = {
    "yolov5": "sustainable_ipa.families.yolov5:YoloV5",  # object detection; hands each box's crop on
    "resnet": "sustainable_ipa.families.resnet:ResNet",  # image classification of crops
    "speech2text": "sustainable_ipa.families.speech2text:Speech2Text",  # speech recognition (S2T)
    "extractive-qa": "sustainable_ipa.families.extractive_qa:ExtractiveQA",  # SQuAD-style QA
    "text-classification": "sustainable_ipa.families.text_classification:TextClassification",  # sentiment
    # language identification: text classification that hands its input text on (IPA's nlp-li)
    "language-identification": "sustainable_ipa.families.text_classification:LanguageIdentification",
    "translation": "sustainable_ipa.families.translation:Translation",  # Marian MT
    "summarization": "sustainable_ipa.families.summarization:Summarization",  # BART (distilbart)
}


def family_class(name: str) -> type[ModelFamily]:
    """The family a pipeline YAML names: a key of `BUILT_IN`, or `package.module:Class`."""
    path = BUILT_IN.get(name, name)
    module_name, _, class_name = path.partition(":")
    if not class_name:
        raise UserError(f"unknown model family '{name}'",
                        f"choose one of {', '.join(BUILT_IN)}, or name your own as package.module:Class")
    try:
        found = getattr(importlib.import_module(module_name), class_name)
    except (ImportError, AttributeError) as err:
        raise UserError(f"model family '{name}' cannot be imported ({type(err).__name__}: {err})",
                        f"check the module path and class name, or choose one of {', '.join(BUILT_IN)}") from None
    if not (isinstance(found, type) and issubclass(found, ModelFamily)):
        raise UserError(f"model family '{name}' is not a ModelFamily subclass",
                        "derive it from sustainable_ipa.families.base.ModelFamily")
    return found


def stage_families(pipeline) -> dict[str, ModelFamily]:
    """Each stage's family in pipeline order, made with its checked `pipeline.<stage>.params`; every stage takes
    the items the one before it hands on (checked first: a pipeline in the wrong order is the first thing to fix)."""
    classes: dict[str, type[ModelFamily]] = {}
    for stage in pipeline.stages:
        spec = pipeline.get(stage)
        if spec is None or "family" not in spec:
            raise UserError(f"pipeline '{pipeline.name}' lists stage '{stage}' but says nothing of it",
                            f"add pipeline.{stage}.family (one of {', '.join(BUILT_IN)}) and pipeline.{stage}.params")
        classes[stage] = family_class(str(spec.family))
    _check_chain(pipeline.name, classes)
    return {stage: family(stage, checked(family.Params, _plain(pipeline[stage].get("params") or {}),
                                         f"pipeline.{stage}.params"))
            for stage, family in classes.items()}


def _check_chain(pipeline: str, classes: dict[str, type[ModelFamily]]) -> None:
    stages = list(classes)
    for before, after in zip(stages, stages[1:]):
        gives, takes = classes[before].emits, classes[after].consumes
        if gives != takes:
            made = f"hands on {gives} items" if gives else "hands nothing on"
            raise UserError(f"pipeline '{pipeline}': stage '{after}' ({classes[after].__name__}) takes "
                            f"{takes} items but stage '{before}' ({classes[before].__name__}) {made}",
                            f"put a stage that takes {gives} items after '{before}', or reorder pipeline.stages"
                            if gives else f"make '{before}' the last stage")


def worker_modules(families: dict[str, ModelFamily]) -> list[str]:
    """What the stage workers' forkserver imports for these stages (`pipeline.replicas.prestart`)."""
    return list(dict.fromkeys(m for family in families.values() for m in family.worker_modules()))


def variant_model(family: ModelFamily, pipeline, variant: str) -> FamilySettings:
    """The catalogue entry's `model` (what the family builds for `variant`), checked by the family."""
    entry = pipeline.variants[family.stage][variant]
    return checked(family.Model, _plain(entry.get("model") or {}), f"pipeline.variants.{family.stage}.{variant}.model")


def checked(model: type[FamilySettings], values: dict, where: str) -> FamilySettings:
    """`values` as the family's declaration `model`; the first bad setting as one line naming it."""
    try:
        return model.model_validate(values)
    except ValidationError as err:
        first = err.errors()[0]
        key = ".".join([where, *(str(part) for part in first["loc"])])
        if first["type"] == "extra_forbidden":
            return _raise(f"{key} is not a setting of this family",
                          f"use one of {', '.join(model.model_fields) or 'no settings'}")
        if first["type"] == "missing":
            return _raise(f"{key} is not set", f"pass {key}=…")
        return _raise(f"{key}={first.get('input')!r} is not allowed: {first['msg']}", f"pass a valid {key}")


def _raise(problem: str, fix: str):
    raise UserError(problem, fix)


def _plain(node) -> dict:
    from omegaconf import DictConfig, OmegaConf

    return OmegaConf.to_container(node, resolve=True) if isinstance(node, DictConfig) else dict(node)


__all__ = ["BUILT_IN", "FamilySettings", "ModelFamily", "checked", "family_class", "stage_families", "variant_model",
           "worker_modules"]
