"""The speech2text family: WER accuracy after the published normalisation (jiwer), the features its encoder takes
(4k + 1 frames, the subsampled mask), and its refusals (sample rate, clips shorter than a window)."""

from __future__ import annotations

import numpy as np
import pytest
from pydantic import ValidationError
from tiny_seq2seq import speech_items, waveform
from test_seq2seq import build

from sustainable_ipa.data.samples import TRANSCRIPT, Sample, Speech
from sustainable_ipa.errors import UserError
from sustainable_ipa.families.speech2text import Speech2Text, wer_accuracy


def test_wer_accuracy_compares_words_lower_cased_without_punctuation():
    assert wer_accuracy(["hello world"], ["Hello, World!"]) == 1.0
    assert wer_accuracy(["dont stop"], ["DON'T STOP"]) == 1.0  # LibriSpeech style references
    assert wer_accuracy(["a b x d"], ["a b c d"]) == pytest.approx(0.75)  # one substitution in four words
    assert wer_accuracy(["a b c d e f g h"], ["a b"]) == 0.0  # more errors than words: floored at 0
    assert wer_accuracy(["the cat", "sat on the mat"], ["the cat", "sat on a mat"]) == pytest.approx(1 - 1 / 6)


def test_features_keep_4k_plus_1_frames_and_the_mask_follows_the_subsampling():
    stage = build("speech2text")
    items = speech_items()
    inputs = stage.encoder_inputs(items)
    assert all((n - 1) % 4 == 0 for n in inputs.lengths)
    assert inputs.x.shape[:2] == inputs.mask.shape and inputs.x.shape[1] == max(inputs.lengths)
    assert inputs.mask.sum(dim=1).tolist() == inputs.lengths
    assert float(inputs.x[inputs.mask == 0].abs().sum()) == 0.0  # dropped frames hold the padding value
    full = stage.feature_extractor()([item.samples for item in items], sampling_rate=16_000,
                                     return_attention_mask=True, padding=True)["attention_mask"]
    assert all(0 <= int(sum(row)) - n <= 3 for row, n in zip(full, inputs.lengths))  # at most 30 ms dropped
    hidden_length = (max(inputs.lengths) - 1) // 4 + 1
    assert stage.encoder_mask(inputs.mask, hidden_length).sum(dim=1).tolist() == \
        [(n - 1) // 4 + 1 for n in inputs.lengths]


def test_clips_at_another_rate_or_shorter_than_a_window_are_refused():
    stage = build("speech2text")
    sample = Sample(0, "clip", {TRANSCRIPT: "hi"})
    with pytest.raises(UserError, match="8000 Hz"):
        stage([Speech(waveform(0.5, 0)[::2], 8_000, sample)])
    with pytest.raises(UserError, match="shorter than one 25 ms"):
        stage([Speech(np.zeros(200, np.float32), 16_000, sample)])


def test_family_declares_speech_in_text_out():
    assert (Speech2Text.consumes, Speech2Text.emits, Speech2Text.metric) == ("speech", "text", "wer_accuracy")
    assert Speech2Text.Params().max_new_tokens == 200  # the models' own max_length
    with pytest.raises(ValidationError):
        Speech2Text.Params(max_new_tokens=0)
