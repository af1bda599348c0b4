"""Machine translation with Marian (Helsinki-NLP/opus-mt-fr-en, opus-mt-tc-big-fr-en): a French text in, its
English translation out (handed on as a `Text`).

Accuracy `bleu` = sacrebleu's corpus BLEU / 100 (its default 13a tokenisation, as the OPUS-MT model cards report it),
against the samples' reference translations.
"""

from __future__ import annotations

import sacrebleu
from pydantic import Field

from sustainable_ipa.data.samples import TRANSLATION
from sustainable_ipa.families.seq2seq import TextSeq2SeqFamily, TextSeq2SeqModel, TextSeq2SeqParams


def bleu(hypotheses: list[str], references: list[str]) -> float:
    """Corpus BLEU (sacrebleu, one reference per sentence) as a fraction."""
    return sacrebleu.corpus_bleu(hypotheses, [references]).score / 100.0


class TranslationParams(TextSeq2SeqParams):
    max_new_tokens: int = Field(256, ge=1)  # a sentence or a short paragraph (the models allow 512)
    max_input_tokens: int = Field(512, ge=2)  # opus-mt-fr-en's max_position_embeddings


class MarianModel(TextSeq2SeqModel):
    prepend_bos = False  # Marian's tokenizer ends a text with </s> and starts it with nothing


class Translation(TextSeq2SeqFamily):
    """French → English. Variants: Helsinki-NLP/opus-mt-fr-en, Helsinki-NLP/opus-mt-tc-big-fr-en."""

    metric = "bleu"
    metric_description = "corpus BLEU of the translations (sacrebleu) / 100; published figures: BLEU"
    Params = TranslationParams
    config_class = "MarianConfig"
    model_class = "MarianMTModel"
    stage_model = MarianModel
    preload = ("transformers.models.marian.modeling_marian",)  # what a stage worker unpickles
    reference_key = TRANSLATION

    def score(self, hypotheses: list[str], references: list[str]) -> float:
        return bleu(hypotheses, references)
