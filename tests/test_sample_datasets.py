"""The embedded speech and text datasets of the audio-qa, audio-sent, sum-qa and nlp pipelines: each config loads
with the references its pipeline reads, the clips are what the recognisers take, every answer can be found, and
each kind of broken manifest or clip is refused in one line naming the file and the entry."""

import json

import numpy as np
import pytest
import soundfile as sf

from sustainable_ipa.config import PROJECT_ROOT, compose
from sustainable_ipa.data import load_dataset
from sustainable_ipa.data.manifests import speech_dataset, text_dataset
from sustainable_ipa.data.samples import Speech, Text
from sustainable_ipa.errors import UserError

# config -> (item type, references every item carries)
CONFIGS = {
    "audio-qa-sample": (Speech, {"transcript", "question", "answers"}),
    "audio-sent-sample": (Speech, {"transcript", "sentiment"}),
    "sum-qa-sample": (Text, {"summary", "question", "answers"}),
    "nlp-sample": (Text, {"language", "translation", "summary"}),
}


@pytest.fixture(scope="module")
def datasets():
    return {name: load_dataset(compose([f"dataset={name}"]).dataset) for name in CONFIGS}


def words(text: str) -> int:
    return len(text.split())


@pytest.mark.parametrize("name", CONFIGS)
def test_each_config_loads_eight_items_with_the_references_its_pipeline_reads(datasets, name):
    item_type, references = CONFIGS[name]
    dataset = datasets[name]
    assert dataset.name == name and dataset.kind == {Speech: "speech", Text: "text"}[item_type]
    assert len(dataset.items) == 8 == compose().trial.requests  # the default trial serves each item once
    assert all(isinstance(item, item_type) for item in dataset.items)
    assert all(references <= set(item.sample.references) for item in dataset.items)
    assert len({item.name for item in dataset.items}) == 8


def test_clips_are_16_khz_mono_16_bit_between_5_and_20_s(datasets):
    clips = datasets["audio-qa-sample"].items
    for clip in clips:
        info = sf.info(PROJECT_ROOT / "data" / "speech" / f"{clip.name}.wav")
        assert (info.samplerate, info.channels, info.subtype) == (16_000, 1, "PCM_16")
        assert clip.sample_rate_hz == 16_000 and clip.samples.dtype == np.float32 and clip.samples.ndim == 1
        assert 5 <= clip.duration_s <= 20, clip.name
        assert 0.1 < np.abs(clip.samples).max() <= 1.0  # speech, not silence
        assert 20 <= words(clip.sample.references["transcript"]) <= 35
    assert sum(p.stat().st_size for p in (PROJECT_ROOT / "data" / "speech").glob("*.wav")) < 3_000_000


def test_every_answer_occurs_where_a_qa_stage_reads_it(datasets):
    for clip in datasets["audio-qa-sample"].items:
        assert all(a in clip.sample.references["transcript"] for a in clip.sample.references["answers"])
    for passage in datasets["sum-qa-sample"].items:
        refs = passage.sample.references
        assert all(a in passage.text and a in refs["summary"] for a in refs["answers"])
    for paragraph in datasets["nlp-sample"].items:
        refs = paragraph.sample.references
        assert all(a in refs["translation"] for a in refs["answers"])


def test_texts_have_the_lengths_the_pipelines_were_sized_for(datasets):
    sentiments = [c.sample.references["sentiment"] for c in datasets["audio-sent-sample"].items]
    assert sorted(sentiments) == ["negative"] * 4 + ["positive"] * 4
    for passage in datasets["sum-qa-sample"].items:
        assert 80 <= words(passage.text) <= 150 and 15 <= words(passage.sample.references["summary"]) <= 30
    for paragraph in datasets["nlp-sample"].items:
        refs = paragraph.sample.references
        assert 40 <= words(paragraph.text) <= 80 and refs["language"] == "fr"
        assert words(refs["summary"]) <= 30 and refs["summary"].count(". ") == 0  # one sentence


# Bad input ------------------------------------------------------------------------------------------------------
def write_clip(path, rate_hz=16_000, channels=1, seconds=0.2):
    tone = 0.3 * np.sin(2 * np.pi * 440 * np.arange(int(rate_hz * seconds)) / rate_hz)
    sf.write(path, np.repeat(tone[:, None], channels, axis=1), rate_hz, subtype="PCM_16")


def speech_manifest(tmp_path, entries=None) -> str:
    """A valid two-clip manifest in tmp_path with its clips (or a manifest holding `entries`); returns its path."""
    if entries is None:
        entries = [{"name": f"c{i}", "file": f"c{i}.wav", "transcript": "The train was late by ten minutes.",
                    "question": "How late was the train?", "answers": ["ten minutes"], "sentiment": "negative"}
                   for i in range(2)]
        for entry in entries:
            write_clip(tmp_path / entry["file"])
    path = tmp_path / "manifest.json"
    path.write_text(json.dumps({"entries": entries}), encoding="utf-8")
    return str(path)


def load_speech(tmp_path, change=None, references=("question", "answers")):
    """Load the valid manifest after `change(entries, tmp_path)` edited its entries or files."""
    manifest = speech_manifest(tmp_path)
    if change:
        doc = json.loads(open(manifest, encoding="utf-8").read())
        change(doc["entries"], tmp_path)
        speech_manifest(tmp_path, doc["entries"])
    return speech_dataset("t", manifest, references)


def test_the_valid_bad_input_fixture_loads(tmp_path):
    assert len(load_speech(tmp_path).items) == 2


# fault -> (change(entries, folder), the message expected)
SPEECH_FAULTS = {
    "entry without a required field": (lambda e, d: e[1].pop("question"),
                                       r"entries\[1\] \('c1'\) has no 'question'"),
    "missing clip": (lambda e, d: e[0].update(file="none.wav"),
                     r"entries\[0\] \('c0'\): audio file .*none.wav does not exist"),
    "corrupt clip": (lambda e, d: (d / "c0.wav").write_bytes(b"RIFF\x00\x00junk"),
                     r"c0.wav is corrupt or not a sound file"),
    "wrong sample rate": (lambda e, d: write_clip(d / "c1.wav", rate_hz=22_050),
                          r"entries\[1\] \('c1'\): audio file .*c1.wav is sampled at 22050 Hz, not 16000 Hz\. "
                          r"Fix: .*-ar 16000"),
    "stereo": (lambda e, d: write_clip(d / "c0.wav", channels=2),
               r"c0.wav has 2 channels, not 1 \(mono\)\. Fix: .*-ac 1"),
    "answer not in the transcript": (lambda e, d: e[1].update(answers=["ten minutes", "an hour"]),
                                     r"entries\[1\] \('c1'\): answer 'an hour' does not occur in its transcript"),
    "sentiment not a label": (lambda e, d: e[0].update(sentiment="meh"),
                              r"'sentiment' is not one of positive, negative"),
    "answers not a list": (lambda e, d: e[0].update(answers="ten minutes"), r"'answers' is not a non-empty list"),
    "misspelt field": (lambda e, d: e[0].update(anwsers=["x"]), r"has an unknown field 'anwsers'"),
    "two entries of one name": (lambda e, d: e[1].update(name="c0"),
                                r"entries\[1\] \('c0'\) repeats an earlier entry's name"),
}


@pytest.mark.parametrize("fault", SPEECH_FAULTS)
def test_a_broken_speech_entry_is_one_line_naming_the_manifest_and_entry(tmp_path, fault):
    change, message = SPEECH_FAULTS[fault]
    with pytest.raises(UserError, match=message) as raised:
        load_speech(tmp_path, change)
    assert str(tmp_path) in str(raised.value) and "\n" not in str(raised.value)


MANIFEST_FAULTS = {
    "missing manifest": (None, r"manifest .*manifest.json does not exist\. Fix: pass dataset.manifest="),
    "not UTF-8": ('{"entries": [{"name": "caf\xe9"}]}'.encode("latin-1"), r"is not UTF-8 text \(byte 26\)"),
    "malformed JSON": (b'{"entries": [\n  {"name": "a",}\n]}', r"is not valid JSON \(line 2, column"),
    "no entries list": (b'{"items": []}', r"has no list of entries"),
    "empty dataset": (b'{"entries": []}', r"manifest .*manifest.json has no entries\. Fix: add at least one entry"),
}


@pytest.mark.parametrize("fault", MANIFEST_FAULTS)
def test_a_broken_manifest_is_one_line_naming_it(tmp_path, fault):
    content, message = MANIFEST_FAULTS[fault]
    path = tmp_path / "manifest.json"
    if content is not None:
        path.write_bytes(content)
    for load in (lambda: speech_dataset("t", str(path)), lambda: text_dataset("t", str(path))):
        with pytest.raises(UserError, match=message):
            load()


def test_a_passage_answer_missing_from_its_summary_is_refused(tmp_path):
    entry = {"name": "p", "text": "The bridge reopened on Friday.", "summary": "A bridge reopened.",
             "question": "When did the bridge reopen?", "answers": ["on Friday"]}
    path = tmp_path / "passages.json"
    path.write_text(json.dumps({"entries": [entry]}), encoding="utf-8")
    assert text_dataset("t", str(path), ["summary"], ["text"]).items[0].text == entry["text"]
    with pytest.raises(UserError, match=r"entries\[0\] \('p'\): answer 'on Friday' does not occur in its summary"):
        text_dataset("t", str(path), ["summary"], ["text", "summary"])


def test_a_dataset_config_naming_an_unknown_reference_is_refused():
    with pytest.raises(UserError, match="dataset.references names 'sentiments', which is no field of an entry"):
        load_dataset(compose(["dataset=audio-sent-sample", "dataset.references=[transcript,sentiments]"]).dataset)


def test_load_dataset_passes_the_loader_error_on_unwrapped(tmp_path):
    overrides = ["dataset=sum-qa-sample", f"dataset.manifest={tmp_path}/none.json"]
    with pytest.raises(UserError, match="none.json does not exist"):
        load_dataset(compose(overrides).dataset)
