"""The `extractive-qa` family: a transformers encoder with a span-extraction head (RoBERTa or XLM-RoBERTa fine-tuned
on SQuAD 2.0, as IPA's `nlp-qa`; BERT and DistilBERT as well), the last stage of `audio-qa` and `sum-qa`.

Each text item is the context (the transcript or summary the stage before handed on, or the dataset's own text);
the question is the item's reference `question`. IPA did it the other way round: its node asked the incoming
transcript *as the question* against a fixed context, the string "default", so its answers meant nothing. Here the
question is asked of the text, so that F1 is measurable with pretrained weights; the cost is alike (one encoder pass
over question + context, up to `max_input_tokens`).

Output per item: the answer span, start and end token indices in the encoded sequence, the context's characters they
cover (read back through the tokenizer's offsets, or the stand-in pieces' offsets with random weights) and the
input's token count. The best span maximises start + end logits over context tokens with end ≥ start and at most
`max_answer_tokens` tokens; SQuAD 2.0's "no answer" is not predicted (every reference question has an answer), and a
context longer than the input is truncated, not strided. Accuracy: SQuAD F1 (torchmetrics) against the reference
`answers`.
"""

from __future__ import annotations

from pathlib import Path

import torch
from pydantic import Field
from transformers import AutoModelForQuestionAnswering

from sustainable_ipa.data.samples import ANSWERS, QUESTION
from sustainable_ipa.errors import UserError
from sustainable_ipa.families import hf
from sustainable_ipa.families.base import FamilySettings, Handoff, ModelFamily, WeightsSource
from sustainable_ipa.pipeline.stage import ItemResult

ACCURACY_BATCH = 8  # items per forward pass when accuracy is scored


class ExtractiveQAParams(FamilySettings):
    max_input_tokens: int = Field(384, ge=16, description="question + context, truncated longest first (deepset "
                                                          "trained with 384)")
    max_answer_tokens: int = Field(30, ge=1, description="the longest span considered (SQuAD's usual 30)")


class Answer(hf.EncoderStage):
    """Texts (contexts) with their questions → per text its answer span; the last stage, it hands nothing on."""

    task = "question-answering"
    output_names = ("start_logits", "end_logits")
    agreement_key = "span_agreement"

    def __init__(self, *args, max_answer_tokens: int, **kwargs):
        super().__init__(*args, **kwargs)
        self.max_answer_tokens = max_answer_tokens

    def encode(self, items: list) -> hf.EncodedBatch:
        contexts = hf.item_texts(items, self.stage)
        return hf.encode([question_of(item, self.stage) for item in items], contexts, self.tokenizer,
                         self.model.config, self.architecture, self.max_input_tokens)

    def predict(self, batch: hf.EncodedBatch, outputs) -> list[tuple[int, int] | None]:
        allowed = torch.tensor([[span is not None for span in spans] for spans in batch.spans])
        return best_spans(outputs["start_logits"], outputs["end_logits"], allowed, self.max_answer_tokens)

    def results(self, items: list, batch: hf.EncodedBatch, predictions: list) -> list[ItemResult]:
        results = []
        for item, spans, span, tokens in zip(items, batch.spans, predictions, batch.lengths):
            start, end = span if span is not None else (None, None)
            text = item.text[spans[start][0]:spans[end][1]] if span is not None else ""
            results.append(ItemResult({"start": start, "end": end, "text": text, "input_tokens": tokens}))
        return results


def question_of(item, stage: str) -> str:
    """The question asked of a text item: its sample's reference; an item without one is refused in one line."""
    question = item.sample.references.get(QUESTION)
    if not question:
        raise UserError(f"stage {stage} got item {getattr(item, 'name', item)!r} without a question (its sample's "
                        f"reference '{QUESTION}')", "use a dataset whose samples carry a question for each text")
    return str(question)


def best_spans(start_logits: torch.Tensor, end_logits: torch.Tensor, allowed: torch.Tensor,
               max_answer_tokens: int) -> list[tuple[int, int] | None]:
    """Per item, the (start, end) token indices maximising start + end logits among `allowed` tokens (the
    context's), end ≥ start, at most `max_answer_tokens` long; None where no token is allowed."""
    length = start_logits.shape[1]
    allowed = allowed[:, :length]
    positions = torch.arange(length)
    offset = positions[None, :] - positions[:, None]  # [start, end] → end - start
    valid = (offset >= 0) & (offset < max_answer_tokens)
    valid = valid[None] & allowed[:, :, None] & allowed[:, None, :]
    scores = (start_logits[:, :, None] + end_logits[:, None, :]).masked_fill(~valid, float("-inf"))
    best = scores.flatten(1).argmax(dim=1).tolist()
    return [(b // length, b % length) if allowed[i].any() else None for i, b in enumerate(best)]


def squad_scores(predicted: list[str], answers: list[list[str]]) -> dict[str, float]:
    """SQuAD F1 and exact match (torchmetrics, as fractions) of each predicted text against its accepted answers."""
    from torchmetrics.text import SQuAD  # imported here: torchmetrics takes seconds to import (all its domains)

    preds = [{"prediction_text": text, "id": str(i)} for i, text in enumerate(predicted)]
    target = [{"answers": {"answer_start": [0] * len(accepted), "text": list(accepted)}, "id": str(i)}
              for i, accepted in enumerate(answers)]
    scores = SQuAD()(preds, target)
    return {"f1": float(scores["f1"]) / 100, "exact_match": float(scores["exact_match"]) / 100}


class ExtractiveQA(ModelFamily):
    """SQuAD-style extractive question answering over the text items it gets."""

    consumes, emits = "text", None
    metric = "f1"
    metric_description = "SQuAD F1 of the answer span against the reference answers (%)"
    runtimes = ("torch", "openvino")
    preload = hf.ENCODER_MODULES
    Params = ExtractiveQAParams
    Model = hf.EncoderModel

    def weights_source(self, variant: str, model: hf.EncoderModel) -> WeightsSource:
        return hf.weights_source(model)

    def check(self, variant: str, model: hf.EncoderModel) -> None:
        hf.encoder_config(model, variant, self.stage)

    def build(self, variant: str, model: hf.EncoderModel, weights: Path | None, precision: str, device: str,
              handoff: Handoff) -> Answer:
        config = hf.encoder_config(model, variant, self.stage)
        torch_model, tokenizer = hf.load_encoder(AutoModelForQuestionAnswering, config, model, weights, self.stage,
                                                 variant)
        if tokenizer is not None and not tokenizer.is_fast:
            raise UserError(f"the tokenizer in {weights} is a slow (Python) one, which gives no character offsets",
                            "save the model's fast tokenizer (tokenizer.json) beside its weights")
        return Answer(self.stage, variant, torch_model, tokenizer, model.architecture, self.params.max_input_tokens,
                      precision, handoff, device, max_answer_tokens=self.params.max_answer_tokens)

    def reference_handoffs(self, item) -> list:
        return []

    def accuracy(self, model: Answer, items: list, dataset) -> dict[str, float]:
        """SQuAD F1 (and exact match) over the items with a question and answers; nothing without a real tokenizer
        (random weights' spans mean nothing)."""
        scored = [item for item in items
                  if item.sample.references.get(QUESTION) and item.sample.references.get(ANSWERS)]
        if model.tokenizer is None or not scored:
            return {}
        predicted = [result.output["text"] for i in range(0, len(scored), ACCURACY_BATCH)
                     for result in model(scored[i:i + ACCURACY_BATCH])]
        scores = squad_scores(predicted, [list(item.sample.references[ANSWERS]) for item in scored])
        return {**scores, f"{self.metric}_items": float(len(scored))}
