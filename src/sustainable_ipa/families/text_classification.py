"""The `text-classification` family: a transformers encoder with a sequence-classification head (BERT, DistilBERT,
RoBERTa or XLM-RoBERTa, as the catalogue's `model.architecture` says), one label per text. IPA uses it twice:
sentiment (`nlp-sent`: DistilBERT SST-2 and three AutoTrain models), the last stage of `audio-sent`, which hands
nothing on; and language identification (`nlp-li`: XLM-RoBERTa on 20 languages), the first stage of `nlp`, which
hands its input text on unchanged, as IPA's node does (`language-identification`, the same family emitting text).

The label names are the catalogue's (`model.labels`, in the order of the model's outputs, from the model card); a
pretrained folder whose config names its labels otherwise is refused. Accuracy: the share of texts whose predicted
label name equals the reference (`references[params.label_key]`), case aside.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import numpy as np
from pydantic import Field
from transformers import AutoModelForSequenceClassification

from sustainable_ipa.errors import UserError
from sustainable_ipa.families import hf
from sustainable_ipa.families.base import FamilySettings, Handoff, ModelFamily, WeightsSource
from sustainable_ipa.pipeline.stage import ItemResult

ACCURACY_BATCH = 8  # items per forward pass when accuracy is scored


class TextClassificationParams(FamilySettings):
    label_key: Literal["sentiment", "language"] = Field(
        "sentiment", description="the reference key (data/samples.py) the predicted label is scored against")
    max_input_tokens: int = Field(512, ge=8, description="longer texts are truncated (and to the model's positions)")


class LanguageIdentificationParams(TextClassificationParams):
    label_key: Literal["sentiment", "language"] = "language"


class ClassifierModel(hf.EncoderModel):
    """A catalogue entry's `model`: the hub id, the architecture, its published hyper-parameters (`config`) and the
    label names in the order of the model's outputs (its id2label)."""

    labels: list[str] = Field(min_length=2)


class Classify(hf.EncoderStage):
    """Texts → per text its label (index, name, input tokens); hands the text itself on when `hands_on`."""

    task = "text-classification"
    output_names = ("logits",)
    agreement_key = "label_agreement"

    def __init__(self, *args, labels: list[str], hands_on: bool, **kwargs):
        super().__init__(*args, **kwargs)
        self.labels, self.hands_on = list(labels), hands_on

    def encode(self, items: list) -> hf.EncodedBatch:
        return hf.encode(hf.item_texts(items, self.stage), None, self.tokenizer, self.model.config,
                         self.architecture, self.max_input_tokens)

    def predict(self, batch: hf.EncodedBatch, outputs) -> list[int]:
        return outputs["logits"].argmax(dim=-1).tolist()

    def results(self, items: list, batch: hf.EncodedBatch, predictions: list[int]) -> list[ItemResult]:
        return [ItemResult({"label": label, "name": self.labels[label], "input_tokens": tokens},
                           (item,) if self.hands_on else ())
                for item, label, tokens in zip(items, predictions, batch.lengths)]


def label_accuracy(predicted: list[str], references: list[str]) -> float:
    """The share of predicted label names equal to their reference, case aside (model cards write POSITIVE, the
    dataset positive)."""
    return float(np.mean([p.lower() == r.lower() for p, r in zip(predicted, references, strict=True)]))


class TextClassification(ModelFamily):
    """Sequence classification; the last stage of its pipeline (sentiment)."""

    consumes, emits = "text", None
    metric = "accuracy"
    metric_description = "share of texts given their reference label (%)"
    runtimes = ("torch", "openvino")
    preload = hf.ENCODER_MODULES
    Params = TextClassificationParams
    Model = ClassifierModel

    def weights_source(self, variant: str, model: ClassifierModel) -> WeightsSource:
        return hf.weights_source(model)

    def check(self, variant: str, model: ClassifierModel) -> None:
        self._config(variant, model)

    def _config(self, variant: str, model: ClassifierModel):
        fixed = {"num_labels": len(model.labels), "id2label": dict(enumerate(model.labels)),
                 "label2id": {name: i for i, name in enumerate(model.labels)}}
        return hf.encoder_config(model, variant, self.stage, fixed)

    def build(self, variant: str, model: ClassifierModel, weights: Path | None, precision: str, device: str,
              handoff: Handoff) -> Classify:
        config = self._config(variant, model)
        torch_model, tokenizer = hf.load_encoder(AutoModelForSequenceClassification, config, model, weights,
                                                 self.stage, variant, extra_keys=("num_labels",))
        if weights is not None:
            self._check_labels(torch_model.config, model, weights, variant)
        return Classify(self.stage, variant, torch_model, tokenizer, model.architecture, self.params.max_input_tokens,
                        precision, handoff, device, labels=model.labels, hands_on=self.emits is not None)

    def _check_labels(self, found, model: ClassifierModel, folder: Path, variant: str) -> None:
        """A folder whose config names its labels (not transformers' LABEL_0, LABEL_1, …) must name the
        catalogue's, in its order: otherwise every prediction would be scored under another label's name."""
        names = [found.id2label[i] for i in range(found.num_labels)]
        if all(name == f"LABEL_{i}" for i, name in enumerate(names)):
            return
        if [n.lower() for n in names] != [n.lower() for n in model.labels]:
            raise UserError(f"the weights in {folder} name their labels {names}, and "
                            f"pipeline.variants.{self.stage}.{variant}.model.labels says {model.labels}",
                            "write the model's own label order (its config.json id2label) into the catalogue")

    def reference_handoffs(self, item) -> list:
        return [item] if self.emits is not None else []

    def accuracy(self, model: Classify, items: list, dataset) -> dict[str, float]:
        """Label accuracy over the items with a reference under `label_key`; nothing without a real tokenizer
        (random weights' labels mean nothing)."""
        key = self.params.label_key
        scored = [item for item in items if key in item.sample.references]
        if model.tokenizer is None or not scored:
            return {}
        predicted = [result.output["name"] for i in range(0, len(scored), ACCURACY_BATCH)
                     for result in model(scored[i:i + ACCURACY_BATCH])]
        references = [str(item.sample.references[key]) for item in scored]
        return {self.metric: label_accuracy(predicted, references), f"{self.metric}_items": float(len(scored))}


class LanguageIdentification(TextClassification):
    """Sequence classification over languages that hands its input text on unchanged (IPA's `nlp-li`): the next stage
    (translation) gets the text whatever language was found."""

    emits = "text"
    metric_description = "share of texts given their reference language (%)"
    Params = LanguageIdentificationParams
