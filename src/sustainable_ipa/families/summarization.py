"""Abstractive summarisation with BART (sshleifer/distilbart-xsum-{1-1,12-1,6-6,12-3,9-6,12-6}: bart-large's width,
with the encoder and decoder layer counts of their names): an English text in, a one-sentence summary out (handed
on as a `Text`).

IPA's pipelines capped summaries at `max_length=4` tokens, which made the summariser's cost almost independent of
its decoder (four steps) and its output useless to the next stage. Here a summary is as long as a real one: with
random weights each batch generates the length of its longest reference summary (recorded per item), with pretrained
weights the model stops at its end token or at `max_new_tokens` (62 by default, the models' own `max_length`). The
published ROUGE-L figures were measured on full-length summaries too.

Accuracy `rouge_l` = the mean ROUGE-L F-measure (torchmetrics' ROUGEScore, Porter stemming as the distilbart
evaluation used; the same figures as Google's rouge-score, whose absl logging import breaks a later logging setup in
the same process) against the samples' reference summaries.
"""

from __future__ import annotations

from pydantic import Field
from torchmetrics.text.rouge import ROUGEScore

from sustainable_ipa.data.samples import SUMMARY
from sustainable_ipa.families.seq2seq import TextSeq2SeqFamily, TextSeq2SeqModel, TextSeq2SeqParams


def rouge_l(hypotheses: list[str], references: list[str]) -> float:
    """Mean ROUGE-L F-measure (torchmetrics, stemmed) over the pairs, as a fraction."""
    if not hypotheses:
        return 0.0
    scores = ROUGEScore(use_stemmer=True, rouge_keys="rougeL")(hypotheses, references)
    return float(scores["rougeL_fmeasure"])


class SummarizationParams(TextSeq2SeqParams):
    max_new_tokens: int = Field(62, ge=1)  # distilbart-xsum's max_length
    max_input_tokens: int = Field(1024, ge=2)  # BART's max_position_embeddings


class BartModel(TextSeq2SeqModel):
    prepend_bos = True  # BART's tokenizer wraps a text in <s> ... </s>


class Summarization(TextSeq2SeqFamily):
    """Text → one-sentence summary. Variants: sshleifer/distilbart-xsum-1-1, -12-1, -6-6, -12-3, -9-6, -12-6."""

    metric = "rouge_l"
    metric_description = "mean ROUGE-L F-measure of the summaries (torchmetrics, stemmed); published figures: ROUGE-L"
    Params = SummarizationParams
    config_class = "BartConfig"
    model_class = "BartForConditionalGeneration"
    stage_model = BartModel
    preload = ("transformers.models.bart.modeling_bart",)  # what a stage worker unpickles
    reference_key = SUMMARY

    def score(self, hypotheses: list[str], references: list[str]) -> float:
        return rouge_l(hypotheses, references)
