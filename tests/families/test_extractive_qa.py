"""The extractive-qa family on tiny configs: spans, stand-in pair lengths, bad input, the pretrained-folder path with
a tokenizer trained here (a head forced to a known answer), SQuAD F1 through torchmetrics, bf16, OpenVINO."""

from __future__ import annotations

import pickle

import pytest
import torch
from tiny_encoders import TINY, build, family, passage_items, save_folder

from sustainable_ipa.data.samples import Sample, Text
from sustainable_ipa.errors import UserError
from sustainable_ipa.families import hf
from sustainable_ipa.families.extractive_qa import best_spans, squad_scores


@pytest.mark.parametrize("handoff", ["model", "reference"])
def test_each_passage_gets_a_span_of_its_context_and_nothing_is_handed_on(handoff):
    items = passage_items()
    stage = build("extractive-qa", handoff=handoff)
    batch = stage.encode(items)
    results = stage(items)
    assert len(results) == len(items)
    for item, result, spans in zip(items, results, batch.spans):
        out = result.output
        assert result.handoffs == ()
        assert out["start"] <= out["end"] < out["start"] + TINY["extractive-qa"]["params"]["max_answer_tokens"]
        assert spans[out["start"]] is not None and spans[out["end"]] is not None  # context tokens only
        assert out["text"] and out["text"] in item.text
    assert family("extractive-qa").reference_handoffs(items[0]) == []


def test_stand_in_pairs_have_roberta_layout_and_truncate_the_longer_text():
    stage = build("extractive-qa")
    items = passage_items()
    batch = stage.encode(items)
    questions = [len(hf.stand_in_pieces(item.sample.references["question"])) for item in items]
    contexts = [len(hf.stand_in_pieces(item.text)) for item in items]
    assert batch.lengths == [q + c + 4 for q, c in zip(questions, contexts)]  # <s> q </s></s> c </s>
    assert batch.inputs["input_ids"].shape[1] == max(batch.lengths)
    assert [sum(span is not None for span in spans) for spans in batch.spans] == contexts
    stage.max_input_tokens = 12
    short = stage.encode(items[:1]).spans[0]
    # 12 tokens, 4 of them special: the question (8 pieces) and the context (13) keep 4 each, longest first.
    assert len(short) == 12 and sum(span is not None for span in short) == 4
    bert = build("extractive-qa", architecture="bert", config={**TINY["extractive-qa"]["model"]["config"],
                                                                "type_vocab_size": 2})
    types = bert.encode(items[:1]).inputs["token_type_ids"][0]
    assert types.tolist() == [0] * (questions[0] + 2) + [1] * (contexts[0] + 1)  # [CLS] q [SEP] | c [SEP]


def test_best_span_is_the_highest_scoring_allowed_span():
    start = torch.tensor([[9.0, 0.0, 1.0, 3.0, 0.0, 0.0]])
    end = torch.tensor([[9.0, 0.0, 0.0, 0.0, 2.0, 5.0]])
    allowed = torch.tensor([[False, False, True, True, True, True]])  # token 0 is not context
    assert best_spans(start, end, allowed, max_answer_tokens=3) == [(3, 5)]
    assert best_spans(start, end, allowed, max_answer_tokens=1) == [(5, 5)]  # one token: 0 + 5 beats 3 + 0
    assert best_spans(start, end, torch.zeros_like(allowed), max_answer_tokens=3) == [None]


def test_squad_scores_a_known_case():
    scores = squad_scores(["Paris", "the big cat", "dog"], [["Paris"], ["a big cat", "cat"], ["mouse"]])
    assert scores == {"f1": pytest.approx(2 / 3), "exact_match": pytest.approx(2 / 3)}  # articles do not count
    partial = squad_scores(["Marie Curie won"], [["Marie Curie"]])["f1"]
    assert 0.0 < partial < 1.0


def test_bad_input_is_one_user_error(tmp_path):
    with pytest.raises(UserError, match="hidden_sise"):
        build("extractive-qa", config={**TINY["extractive-qa"]["model"]["config"], "hidden_sise": 32})
    with pytest.raises(UserError, match="without a question"):
        build("extractive-qa")([Text("A passage with no question.", Sample(0, "lonely"))])
    other = save_folder("text-classification", tmp_path / "distilbert")  # DistilBERT weights for a RoBERTa variant
    with pytest.raises(UserError, match="another architecture.*model_type distilbert"):
        build("extractive-qa", weights=other)
    bigger = save_folder("extractive-qa", tmp_path / "wide", config={**TINY["extractive-qa"]["model"]["config"],
                                                                     "hidden_size": 64})
    with pytest.raises(UserError, match="hidden_size=64"):
        build("extractive-qa", weights=bigger)
    bare = save_folder("extractive-qa", tmp_path / "bare", tokenizer=False)
    with pytest.raises(UserError, match="no tokenizer"):
        build("extractive-qa", weights=bare)


def test_pretrained_folder_end_to_end_scores_a_known_f1(tmp_path):
    def first_word(model):  # start and end logits all equal: the first context token wins, a one-token span
        with torch.no_grad():
            model.qa_outputs.weight.zero_()
            model.qa_outputs.bias.zero_()

    stage = build("extractive-qa", weights=save_folder("extractive-qa", tmp_path / "squad2", edit=first_word))
    items = passage_items()
    assert [r.output["text"] for r in stage(items)] == ["Paris", "Marie", "Seven"]
    scores = family("extractive-qa").accuracy(stage, items, None)
    assert scores == {"f1": pytest.approx(1.0), "exact_match": pytest.approx(1.0), "f1_items": 3.0}
    assert family("extractive-qa").accuracy(build("extractive-qa"), items, None) == {}  # random weights: nothing
    pickle.loads(pickle.dumps(stage))(items)


def test_bf16_fidelity_keys_are_in_range():
    fidelity = build("extractive-qa", precision="bf16").fidelity(passage_items())
    assert set(fidelity) == {"span_agreement", "logit_cosine_mean", "items"}
    assert 0.0 <= fidelity["span_agreement"] <= 1.0
    assert 0.9 < fidelity["logit_cosine_mean"] <= 1.0 + 1e-9
    assert fidelity["items"] == 3.0


@pytest.mark.slow
def test_openvino_fp32_and_int8_follow_torch_fp32(tmp_path):
    items = passage_items()
    reference = build("extractive-qa")
    expected = [r.output for r in reference(items)]
    for precision, least_cosine in (("fp32", 0.99999), ("int8", 0.99)):
        stage = build("extractive-qa", precision=precision)
        stage.use_openvino(tmp_path, items)
        worker = pickle.loads(pickle.dumps(stage))
        fidelity = worker.fidelity(items)
        assert fidelity["logit_cosine_mean"] > least_cosine
        if precision == "fp32":
            assert [r.output for r in worker(items)] == expected
