"""What the generative families share, on tiny configs of all three (speech2text, translation, summarization): one
result per item with the right handoffs, fixed generation lengths with random weights, the decoding rules, bad input
in one line, the pretrained-folder path without the hub, bf16 fidelity, pickling, and OpenVINO fp32/int8 (slow)."""

from __future__ import annotations

import math
import pickle

import pytest
import torch
from tiny_seq2seq import TINY, pretrained_folder, pretrained_model_spec

from sustainable_ipa.data.samples import Sample, Speech, Text
from sustainable_ipa.errors import UserError
from sustainable_ipa.families import family_class
from sustainable_ipa.families.seq2seq import Generated, SpecialTokens, greedy_decode, stand_in_length

FAMILIES = list(TINY)


def family(name: str, **params):
    cls = family_class(name)
    return cls(name, cls.Params(**{**TINY[name]["params"], **params}))


def build(name: str, precision: str = "fp32", handoff: str = "model", weights=None, model: dict | None = None,
          seed: int = 0):
    made = family(name)
    torch.manual_seed(seed)
    return made.build(TINY[name]["variant"], made.Model(**(model or TINY[name]["model"])), weights, precision, "cpu",
                      handoff)


@pytest.mark.parametrize("name", FAMILIES)
def test_random_weights_generate_exactly_the_longest_reference_length_and_record_it(name):
    items = TINY[name]["items"]()
    stage = build(name)
    key = stage.reference_key
    references = [stand_in_length(item.sample.references[key]) for item in items]
    results = stage(items)
    assert len(results) == len(items)
    for result, reference in zip(results, references):
        out = result.output
        assert isinstance(out, Generated)
        assert out.new_tokens == out.fixed_tokens == max(references)  # the batch runs as long as its longest
        assert out.reference_tokens == reference
        assert out.token_ids[-1] == stage.special.eos and stage.special.eos not in out.token_ids[:-1]
        assert out.text is None and out.input_tokens > 0
    shorter = stage(items[-1:])  # alone, the shortest item generates its own length
    assert shorter[0].output.new_tokens == references[-1]


@pytest.mark.parametrize("name", FAMILIES)
def test_handoffs_are_references_or_what_the_model_made(name):
    items = TINY[name]["items"]()
    key = build(name).reference_key
    by_reference = build(name, handoff="reference")(items)
    by_model = build(name, handoff="model")(items)
    for item, ref, own in zip(items, by_reference, by_model):
        assert [type(h) for h in ref.handoffs] == [Text] and ref.handoffs[0].text == item.sample.references[key]
        assert ref.handoffs[0].sample is item.sample
        # no tokenizer: one stand-in piece per generated token, the end token aside
        assert len(own.handoffs[0].text.split()) == own.output.new_tokens - 1
        assert own.handoffs[0].sample is item.sample
    assert family(name).reference_handoffs(items[0])[0].text == items[0].sample.references[key]
    assert family(name).reference_handoffs(type(items[0])(*_without_references(items[0]))) is None


def _without_references(item):
    sample = Sample(item.sample.sample_id, item.name, {})
    return (item.samples, item.sample_rate_hz, sample) if isinstance(item, Speech) else (item.text, sample)


class StubParts:
    """A decoder whose favourite token at step t is `script[t]` (per item), to test the decoding rules alone."""

    def __init__(self, script: list[list[int]], vocab: int = 8):
        self.script, self.vocab, self.step = script, vocab, 0

    def _logits(self):
        logits = torch.zeros((len(self.script), 1, self.vocab))
        for i, row in enumerate(self.script):
            logits[i, 0, row[min(self.step, len(row) - 1)]] = 5.0
            logits[i, 0, 7] = 4.0  # the runner-up, when the favourite is suppressed
        self.step += 1
        return logits, []

    def first(self, ids, hidden, emask):
        return self._logits()

    def next(self, ids, hidden, emask, past):
        return self._logits()


def test_free_generation_stops_each_item_at_its_end_token_and_the_batch_at_the_last_or_the_cap():
    special = SpecialTokens(start=2, eos=2, pad=1, forced_first=None)
    hidden = torch.zeros((2, 3, 4))
    ids, lengths = greedy_decode(StubParts([[5, 2, 6, 6], [5, 6, 6, 2]]), hidden, None, special, 10, fixed=False)
    assert lengths == [2, 4] and ids.tolist() == [[5, 2, 1, 1], [5, 6, 6, 2]]  # padding after an item's end
    _, capped = greedy_decode(StubParts([[5, 6, 6, 6, 6, 2]]), hidden[:1], None, special, 3, fixed=False)
    assert capped == [3]
    never_pad = greedy_decode(StubParts([[1, 1, 2]]), hidden[:1], None, special, 5, fixed=False)[0]
    assert never_pad.tolist() == [[7, 7, 2]]  # the padding token is never generated
    forced = SpecialTokens(start=2, eos=2, pad=1, forced_first=0)
    assert greedy_decode(StubParts([[5, 2]]), hidden[:1], None, forced, 5, fixed=False)[0].tolist() == [[0, 2]]


def test_fixed_generation_suppresses_the_end_token_until_the_last_step_and_forces_it_there():
    special = SpecialTokens(start=2, eos=2, pad=1, forced_first=None)
    ids, lengths = greedy_decode(StubParts([[2, 2, 2, 2], [5, 5, 5, 5]]), torch.zeros((2, 3, 4)), None, special, 4,
                                 fixed=True)
    assert ids.tolist() == [[7, 7, 7, 2], [5, 5, 5, 2]] and lengths == [4, 4]


@pytest.mark.parametrize("name", FAMILIES)
def test_bad_input_gives_one_user_error(name, tmp_path):
    spec = TINY[name]["model"]
    with pytest.raises(UserError, match="does not know"):
        build(name, model={**spec, "config": {**spec["config"], "d_modle": 16}})
    with pytest.raises(UserError, match="outside its vocab_size"):
        build(name, model={**spec, "config": {**spec["config"], "pad_token_id": 10_000}})
    stage = build(name)
    wrong = Text("x", Sample(0, "x", {})) if stage.speech else Speech(torch.zeros(800).numpy(), 16_000,
                                                                       Sample(0, "x", {}))
    with pytest.raises(UserError, match="takes"):
        stage([wrong])
    item = TINY[name]["items"]()[0]
    with pytest.raises(UserError, match="no reference"):
        stage([type(item)(*_without_references(item))])
    with pytest.raises(UserError, match="OpenVINO only"):
        build(name, precision="int8")([item])


@pytest.mark.parametrize("name", FAMILIES)
def test_weights_of_another_architecture_or_without_a_tokenizer_are_refused_in_one_line(name, tmp_path):
    spec = TINY[name]["model"]
    other = build(name, model={**spec, "config": {**spec["config"], "d_model": 32}})
    other.model.save_pretrained(tmp_path / "other")  # another width, and no tokenizer either
    with pytest.raises(UserError, match="another architecture.*d_model=32"):
        build(name, weights=tmp_path / "other")
    foreign = "translation" if name == "summarization" else "summarization"
    build(foreign).model.save_pretrained(tmp_path / "foreign")
    with pytest.raises(UserError, match="another architecture.*model_type"):
        build(name, weights=tmp_path / "foreign")
    build(name).model.save_pretrained(tmp_path / "bare")  # the right weights, but no tokenizer or processor
    with pytest.raises(UserError, match="no (tokenizer|processor) files"):
        build(name, weights=tmp_path / "bare")


@pytest.mark.parametrize("name", FAMILIES)
def test_pretrained_folder_runs_end_to_end_without_the_hub(name, tmp_path):
    folder = pretrained_folder(name, tmp_path / "weights")
    stage = build(name, weights=folder, model=pretrained_model_spec(name, folder))
    assert stage.processor is not None
    items = TINY[name]["items"]()
    results = stage(items)
    cap = TINY[name]["params"]["max_new_tokens"]
    for result in results:
        out = result.output
        assert isinstance(out.text, str) and out.fixed_tokens is None and out.reference_tokens is None
        assert 1 <= out.new_tokens <= cap  # free generation: its end token or the cap
        assert result.handoffs[0].text == out.text
    accuracy = family(name).accuracy(stage, items, None)
    metric = family_class(name).metric
    assert set(accuracy) == {metric} and 0.0 <= accuracy[metric] <= 1.0
    assert family(name).accuracy(build(name), items, None) == {}  # random weights: nothing to score


@pytest.mark.parametrize("name", FAMILIES)
def test_bf16_fidelity_against_the_fp32_twin(name):
    items = TINY[name]["items"]()
    stage = build(name, precision="bf16")
    fidelity = stage.fidelity(items)
    assert set(fidelity) == {"token_agreement", "logit_cosine_mean", "items"}
    assert 0.0 <= fidelity["token_agreement"] <= 1.0 and fidelity["logit_cosine_mean"] > 0.99
    assert fidelity["items"] == len(items)
    twin = stage.fp32_twin().fidelity(items)
    assert twin["token_agreement"] == 1.0 and math.isclose(twin["logit_cosine_mean"], 1.0, abs_tol=1e-9)


@pytest.mark.parametrize("name", FAMILIES)
def test_a_stage_model_pickles_and_runs_the_same_after(name):
    items = TINY[name]["items"]()
    stage = build(name)
    again = pickle.loads(pickle.dumps(stage))
    assert [r.output for r in again(items)] == [r.output for r in stage(items)]
    described = stage.describe()
    assert described["params"] == sum(p.numel() for p in stage.model.parameters()) and described["d_model"] == 16


@pytest.mark.slow
@pytest.mark.parametrize("name", FAMILIES)
def test_openvino_fp32_and_int8_generate_what_torch_fp32_does(name, tmp_path):
    """Three IRs per precision, converted and quantised on 2 cores: about 30-40 s per family and precision."""
    items = TINY[name]["items"]()
    fp32 = build(name)
    reference = [r.output for r in fp32(items)]
    made = fp32.use_openvino(tmp_path, items)
    assert not made.cached and made.wall_s > 0 and (made.xml.parent / "export.log").is_file()
    assert [r.output for r in fp32(items)] == reference  # the same ids, lengths and handoffs
    assert fp32.fidelity(items)["logit_cosine_mean"] > 0.9999
    again = pickle.loads(pickle.dumps(fp32))  # compiled IRs stay behind; the copy compiles its own
    assert [r.output for r in again(items)] == reference
    int8 = build(name, precision="int8")
    made8 = int8.use_openvino(tmp_path, items)  # quantises the cached fp32 IRs
    assert made8.key.precision == "int8" and made8.key.calibration_items == len(items)
    fidelity = int8.fidelity(items)
    assert fidelity["token_agreement"] >= 0.8 and fidelity["logit_cosine_mean"] > 0.95
    assert build(name).use_openvino(tmp_path, items).cached  # the same weights: read from the cache
