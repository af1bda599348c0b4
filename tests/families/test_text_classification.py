"""The text-classification family (sentiment) and its language-identification twin, on tiny configs: batches,
handoffs, bad input, the pretrained-folder path with a tokenizer trained here, bf16 and OpenVINO fp32/int8."""

from __future__ import annotations

import pickle

import numpy as np
import pytest
import torch
from tiny_encoders import TINY, build, family, language_items, save_folder, sentiment_items

from sustainable_ipa.data.samples import Sample, Speech, Text
from sustainable_ipa.errors import UserError
from sustainable_ipa.families import hf
from sustainable_ipa.families.text_classification import label_accuracy


@pytest.mark.parametrize("handoff", ["model", "reference"])
def test_sentiment_labels_each_text_and_hands_nothing_on(handoff):
    items = sentiment_items()
    results = build("text-classification", handoff=handoff)(items)
    assert len(results) == len(items)
    for result in results:
        assert result.handoffs == ()
        assert result.output["label"] in (0, 1)
        assert result.output["name"] == TINY["text-classification"]["model"]["labels"][result.output["label"]]
        assert result.output["input_tokens"] > 2
    assert family("text-classification").reference_handoffs(items[0]) == []
    assert family("text-classification").emits is None


@pytest.mark.parametrize("handoff", ["model", "reference"])
def test_language_identification_hands_its_text_on_unchanged(handoff):
    items = language_items()
    results = build("language-identification", handoff=handoff)(items)
    assert [r.handoffs for r in results] == [(item,) for item in items]
    assert all(r.output["name"] in ("de", "en", "fr") for r in results)
    fam = family("language-identification")
    assert fam.emits == "text" and fam.reference_handoffs(items[1]) == [items[1]]


def test_stand_in_token_counts_set_the_sequence_length():
    stage = build("text-classification")
    items = sentiment_items()
    batch = stage.encode(items)
    pieces = [len(hf.stand_in_pieces(item.text)) for item in items]
    assert batch.lengths == [n + 2 for n in pieces]  # [CLS] … [SEP]
    assert batch.inputs["input_ids"].shape == (len(items), max(pieces) + 2)
    assert batch.inputs["attention_mask"].sum(dim=1).tolist() == batch.lengths
    short = build("text-classification")
    short.max_input_tokens = 8
    assert short.encode(items).inputs["input_ids"].shape[1] == 8  # truncated to max_input_tokens
    # RoBERTa's positions start after its padding index: 66 positions hold 64 tokens, whatever the params ask.
    roberta = build("language-identification", params={"max_input_tokens": 512})
    assert roberta.max_input_tokens == 64
    assert roberta.encode([Text("word " * 100, Sample(0, "long"))]).inputs["input_ids"].shape == (1, 64)


def test_bad_input_is_one_user_error(tmp_path):
    with pytest.raises(UserError, match="n_layerz"):
        build("text-classification", config={**TINY["text-classification"]["model"]["config"], "n_layerz": 2})
    with pytest.raises(UserError, match="num_labels"):
        build("text-classification", config={**TINY["text-classification"]["model"]["config"], "num_labels": 2})
    with pytest.raises(UserError, match="takes text items"):
        build("text-classification")([Speech(np.zeros(160, np.float32), 16_000, Sample(0, "clip"))])


def test_weights_of_another_architecture_or_task_or_without_tokenizer_are_refused(tmp_path):
    other = save_folder("language-identification", tmp_path / "xlmr")  # XLM-R weights for a DistilBERT variant
    with pytest.raises(UserError, match="another architecture.*model_type xlm-roberta"):
        build("text-classification", weights=other)
    bare = save_folder("text-classification", tmp_path / "bare", tokenizer=False)
    with pytest.raises(UserError, match="no tokenizer"):
        build("text-classification", weights=bare)
    qa = save_folder("extractive-qa", tmp_path / "qa")  # a QA checkpoint of the same shapes: no classification head
    with pytest.raises(UserError, match="lack .* tensors"):
        build("language-identification", weights=qa, architecture="roberta", labels=["a", "b"])
    relabelled = save_folder("text-classification", tmp_path / "relabelled", labels=["positive", "negative"])
    with pytest.raises(UserError, match="name their labels"):  # the catalogue says negative, positive
        build("text-classification", weights=relabelled)


def test_pretrained_folder_end_to_end_scores_a_known_accuracy(tmp_path):
    def always_positive(model):  # the head's weights zero, its bias for "positive": every text is positive
        with torch.no_grad():
            model.classifier.weight.zero_()
            model.classifier.bias.copy_(torch.tensor([0.0, 5.0]))

    folder = save_folder("text-classification", tmp_path / "sst2", edit=always_positive)
    stage = build("text-classification", weights=folder)
    assert stage.tokenizer is not None
    items = sentiment_items()
    assert [r.output["name"] for r in stage(items)] == ["positive"] * 3
    scores = family("text-classification").accuracy(stage, items, None)
    assert scores == {"accuracy": pytest.approx(2 / 3), "accuracy_items": 3.0}  # two of three reviews are positive
    assert family("text-classification").accuracy(build("text-classification"), items, None) == {}  # random: none
    pickle.loads(pickle.dumps(stage))(items)  # the tokenizer travels to the worker processes


def test_label_accuracy_ignores_case():
    assert label_accuracy(["POSITIVE", "negative", "fr"], ["positive", "positive", "FR"]) == pytest.approx(2 / 3)


def test_bf16_fidelity_keys_are_in_range():
    stage = build("text-classification", precision="bf16")
    fidelity = stage.fidelity(sentiment_items())
    assert set(fidelity) == {"label_agreement", "logit_cosine_mean", "items"}
    assert 0.0 <= fidelity["label_agreement"] <= 1.0
    assert 0.9 < fidelity["logit_cosine_mean"] <= 1.0 + 1e-9
    assert fidelity["items"] == 3.0
    assert stage.describe()["params"] > 0


def test_openvino_fp32_and_int8_follow_torch_fp32(tmp_path, capfd):
    items = sentiment_items()
    reference = build("text-classification")
    expected = reference.forward(reference.encode(items))["logits"]
    cosines = {}
    for precision in ("fp32", "int8"):
        stage = build("text-classification", precision=precision)
        made = stage.use_openvino(tmp_path, items)
        assert not made.cached and stage.runtime == "openvino"
        worker = pickle.loads(pickle.dumps(stage))  # as a replica gets it: compiled there, on first use
        got = worker.forward(worker.encode(items))["logits"]
        cosines[precision] = float(torch.nn.functional.cosine_similarity(got.flatten(), expected.flatten(), dim=0))
        assert [r.output["label"] for r in worker(items)] == expected.argmax(dim=1).tolist()
        assert worker.fidelity(items)["label_agreement"] == 1.0
    assert cosines["fp32"] > 0.99999 and cosines["int8"] > 0.99
    assert build("text-classification", precision="int8").use_openvino(tmp_path, items).cached
    assert capfd.readouterr() == ("", "")  # the libraries' output went to the log
    assert (tmp_path / hf.EXPORT_LOG).stat().st_size > 0
