"""Speech recognition with Speech2Text (S2T, facebook/s2t-{small,medium,large}-librispeech-asr): a clip in, its
transcript out (handed on as a `Text`).

The input features are transformers' `Speech2TextFeatureExtractor`: 80 log-mel filter banks of 25 ms windows every
10 ms, normalised per utterance. With random weights it is built with the published defaults (it needs no files);
with a pretrained folder the folder's `Speech2TextProcessor` (its feature extractor and sentencepiece tokenizer).

Each clip keeps a whole number of the encoder's subsampling steps: its frame count is cut to 4k + 1 (at most 3 frames,
30 ms, dropped at its end), so that the two stride-2 convolutions divide it exactly. OpenVINO 2026.4 converts the
integer division of the encoder's padding mask wrongly for other counts (it rounds 39 // 2 up), which would make the
OpenVINO encoder attend past a clip's end; torch gets the same frames, so that both runtimes run one input.

Accuracy `wer_accuracy` = max(0, 1 - WER), jiwer's word error rate over the corpus, after the normalisation the
published figures imply: LibriSpeech's references are upper case without punctuation and the models' vocabulary is
lower case (their tokenizer has `do_lower_case`), so both sides are lower-cased, stripped of punctuation (apostrophes
too: "don't" and "dont" are one word) and of repeated spaces before the words are compared.
"""

from __future__ import annotations

from pathlib import Path

import jiwer
import torch
from pydantic import Field

from sustainable_ipa.data.samples import TRANSCRIPT, Speech
from sustainable_ipa.errors import UserError
from sustainable_ipa.families.seq2seq import (EncoderInputs, Seq2SeqFamily, Seq2SeqModel, Seq2SeqParams,
                                              missing_tokenizer, subsampled_lengths)

SAMPLE_RATE_HZ = 16_000
MIN_SAMPLES = 400  # one 25 ms analysis window
SUBSAMPLING_FRAMES = 4  # two stride-2 convolutions

# The comparison the published WERs imply (see the module docstring).
WER_NORMALISATION = jiwer.Compose([jiwer.ToLowerCase(), jiwer.RemovePunctuation(), jiwer.RemoveMultipleSpaces(),
                                   jiwer.Strip(), jiwer.ReduceToListOfListOfWords()])


_BLAS = None  # threadpoolctl's controller, made once per process


def blas_threads(count: int):
    """numpy's BLAS limited to `count` threads. The feature extractor's filter bank is one small float64 matrix
    product per clip; OpenBLAS's own threads, competing on a worker's few cores with torch's and OpenVINO's spinning
    ones, made it take minutes instead of milliseconds (seen on 2 cores after an OpenVINO export)."""
    global _BLAS
    if _BLAS is None:
        from threadpoolctl import ThreadpoolController

        _BLAS = ThreadpoolController()
    return _BLAS.limit(limits=count, user_api="blas")


def wer_accuracy(hypotheses: list[str], references: list[str]) -> float:
    """max(0, 1 - WER) over the corpus, both sides normalised as the published figures were."""
    wer = jiwer.wer(references, hypotheses, reference_transform=WER_NORMALISATION,
                    hypothesis_transform=WER_NORMALISATION)
    return max(0.0, 1.0 - wer)


class SpeechParams(Seq2SeqParams):
    max_new_tokens: int = Field(200, ge=1)  # the models' generation config: max_length 200


class Speech2TextModel(Seq2SeqModel):
    item_type = Speech
    speech = True

    def feature_extractor(self):
        if self.processor is not None:
            return self.processor.feature_extractor
        from transformers import Speech2TextFeatureExtractor

        return Speech2TextFeatureExtractor()  # the published defaults: 80 mel bins at 16 kHz, utterance CMVN

    def check_items(self, items: list) -> None:
        super().check_items(items)
        for item in items:
            if item.sample_rate_hz != SAMPLE_RATE_HZ:
                raise UserError(f"{item.name} is sampled at {item.sample_rate_hz} Hz; Speech2Text takes "
                                f"{SAMPLE_RATE_HZ} Hz", "resample the dataset's clips to 16 kHz mono")
            if len(item.samples) < MIN_SAMPLES:
                raise UserError(f"{item.name} is shorter than one 25 ms analysis window",
                                "drop clips shorter than 25 ms from the dataset")

    def encoder_inputs(self, items: list) -> EncoderInputs:
        with blas_threads(1):
            features = self.feature_extractor()([item.samples for item in items], sampling_rate=SAMPLE_RATE_HZ,
                                                padding=True, return_attention_mask=True, return_tensors="pt")
        x, mask = features["input_features"].float(), features["attention_mask"].long()
        lengths = mask.sum(dim=1)
        lengths = lengths - (lengths - 1) % SUBSAMPLING_FRAMES  # 4k + 1 frames (see the module docstring)
        width = int(lengths.max())
        keep = (torch.arange(width)[None, :] < lengths[:, None]).long()
        return EncoderInputs(x[:, :width] * keep[..., None], keep, lengths.tolist())

    def encoder_mask(self, mask: torch.Tensor, hidden_length: int) -> torch.Tensor:
        lengths = subsampled_lengths(mask.sum(dim=1), self.model.config.num_conv_layers)
        return (torch.arange(hidden_length)[None, :] < lengths[:, None]).long()

    def decode(self, ids: list[list[int]]) -> list[str]:
        return [text.strip() for text in self.processor.batch_decode(ids, skip_special_tokens=True)]


class Speech2Text(Seq2SeqFamily):
    """Speech → transcript. Variants: facebook/s2t-{small,medium,large}-librispeech-asr."""

    consumes = "speech"
    emits = "text"
    metric = "wer_accuracy"
    metric_description = ("max(0, 1 - word error rate) of the transcripts, lower-cased and without punctuation "
                          "(jiwer); published figures: 100 - WER in %")
    Params = SpeechParams
    config_class = "Speech2TextConfig"
    model_class = "Speech2TextForConditionalGeneration"
    stage_model = Speech2TextModel
    preload = ("transformers.models.speech_to_text.modeling_speech_to_text",  # what a stage worker unpickles
               "transformers.models.speech_to_text.feature_extraction_speech_to_text")
    reference_key = TRANSCRIPT
    architecture_keys = ("d_model", "encoder_layers", "decoder_layers", "vocab_size", "input_feat_per_channel")

    def load_processor(self, folder: Path, variant: str):
        from transformers import Speech2TextProcessor

        try:
            return Speech2TextProcessor.from_pretrained(folder, local_files_only=True)
        except Exception as err:  # OSError without preprocessor_config.json, TypeError without the tokenizer files
            raise missing_tokenizer(folder, self.stage, variant, "processor files (feature extractor and "
                                    "sentencepiece tokenizer)", err) from None

    def score(self, hypotheses: list[str], references: list[str]) -> float:
        return wer_accuracy(hypotheses, references)
