"""The summarization family (BART): ROUGE-L through torchmetrics, stand-in inputs shaped as BART's tokenizer makes
them (<s> ... </s>), and what it declares."""

from __future__ import annotations

import pytest
from tiny_seq2seq import article_items
from test_seq2seq import build

from sustainable_ipa.families import hf
from sustainable_ipa.families.summarization import Summarization, rouge_l


def test_rouge_l_is_the_mean_stemmed_f_measure():
    assert rouge_l(["council agrees to build a bridge."], ["Council agrees to build a bridge."]) == 1.0
    assert rouge_l(["nothing alike"], ["council agrees to build a bridge."]) == 0.0
    # "the team win" vs "the team wins the final": LCS 3 (stemmed: win = wins), precision 3/3, recall 3/5, F 0.75
    assert rouge_l(["the team win", "x"], ["the team wins the final", "x"]) == pytest.approx((0.75 + 1.0) / 2)


def test_stand_in_inputs_are_wrapped_in_start_and_end_tokens():
    stage = build("summarization")
    items = article_items()
    inputs = stage.encoder_inputs(items)
    config = stage.model.config
    assert inputs.lengths == [len(hf.stand_in_pieces(item.text)) + 2 for item in items]
    for row, n in zip(inputs.x.tolist(), inputs.lengths):
        assert row[0] == config.bos_token_id and row[n - 1] == config.eos_token_id
        assert all(token == config.pad_token_id for token in row[n:])


def test_family_declares_text_in_text_out():
    assert (Summarization.consumes, Summarization.emits, Summarization.metric) == ("text", "text", "rouge_l")
    assert Summarization.Params().max_new_tokens == 62
