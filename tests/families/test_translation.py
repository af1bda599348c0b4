"""The translation family (Marian): BLEU through sacrebleu, stand-in inputs shaped as Marian's tokenizer makes them
(no <s>, a closing </s>, truncation), and what it declares."""

from __future__ import annotations

import pytest
from tiny_seq2seq import french_items
from test_seq2seq import build

from sustainable_ipa.families import hf
from sustainable_ipa.families.translation import Translation, bleu


def test_bleu_is_sacrebleu_corpus_bleu_as_a_fraction():
    assert bleu(["the cat is on the table ."], ["the cat is on the table ."]) == pytest.approx(1.0)
    assert bleu(["a completely different sentence here"], ["the cat is on the table ."]) == 0.0
    partial = bleu(["the cat sat on the table ."], ["the cat is on the table ."])
    assert 0.0 < partial < 1.0


def test_stand_in_inputs_end_with_the_end_token_and_are_truncated():
    stage = build("translation")
    items = french_items()
    inputs = stage.encoder_inputs(items)
    eos = stage.special.eos
    assert inputs.lengths == [len(hf.stand_in_pieces(item.text)) + 1 for item in items]
    for row, n in zip(inputs.x.tolist(), inputs.lengths):
        assert row[n - 1] == eos and row[0] != stage.model.config.bos_token_id
    stage.params = stage.params.model_copy(update={"max_input_tokens": 4})
    assert max(stage.encoder_inputs(items).lengths) == 4


def test_family_declares_text_in_text_out():
    assert (Translation.consumes, Translation.emits, Translation.metric) == ("text", "text", "bleu")
    assert Translation.Params().max_input_tokens == 512
