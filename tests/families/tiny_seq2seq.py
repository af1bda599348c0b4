"""Tiny configurations of the generative families (speech2text, translation, summarization) for tests, with items
that carry references, and local tokenizers/processors so that the pretrained-folder path runs without the hub.

`TINY[family]` has `params` (the family's Params), `variant`, `model` (its `Model`: hub id and a tiny config) and
`items()` (a few items with references): what one contract suite over every family needs.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from sustainable_ipa.data.samples import SUMMARY, TRANSCRIPT, TRANSLATION, Sample, Speech, Text

SAMPLE_RATE_HZ = 16_000

TRANSCRIPTS = ["the cat sat on the mat", "a quick brown fox jumps over the lazy dog today",
               "speech to text", "hello world"]
FRENCH = ["le chat est sur la table.", "il fait très beau aujourd'hui à paris, dit-elle.", "bonjour", "merci"]
ENGLISH = ["the cat is on the table.", "it is very sunny in paris today, she said.", "hello", "thank you"]
ARTICLES = ["the council met on monday and agreed to build a new bridge over the river before next winter.",
            "a small dog found its way home after three days lost in the forest near the village.",
            "prices rose again.", "the team won the final."]
SUMMARIES = ["council agrees to build a bridge.", "lost dog finds its way home.", "prices rise.", "team wins."]


def waveform(seconds: float, seed: int) -> np.ndarray:
    """A made-up clip: a few harmonics sweeping in pitch, with a little noise (no files needed)."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * SAMPLE_RATE_HZ)) / SAMPLE_RATE_HZ
    pitch = 120 + 60 * np.sin(2 * np.pi * 0.7 * t + seed)
    phase = 2 * np.pi * np.cumsum(pitch) / SAMPLE_RATE_HZ
    voice = sum(np.sin(k * phase) / k for k in range(1, 5)) * (0.5 + 0.5 * np.sin(2 * np.pi * 3 * t))
    return (0.2 * voice + 0.01 * rng.standard_normal(len(t))).astype(np.float32)


def speech_items() -> list:
    return [Speech(waveform(0.4 + 0.25 * i, i), SAMPLE_RATE_HZ, Sample(i, f"clip-{i}", {TRANSCRIPT: text}))
            for i, text in enumerate(TRANSCRIPTS)]


def french_items() -> list:
    return [Text(fr, Sample(i, f"fr-{i}", {TRANSLATION: en})) for i, (fr, en) in enumerate(zip(FRENCH, ENGLISH))]


def article_items() -> list:
    return [Text(text, Sample(i, f"article-{i}", {SUMMARY: summary}))
            for i, (text, summary) in enumerate(zip(ARTICLES, SUMMARIES))]


COMMON = {"d_model": 16, "encoder_layers": 1, "decoder_layers": 1, "encoder_attention_heads": 2,
          "decoder_attention_heads": 2, "encoder_ffn_dim": 32, "decoder_ffn_dim": 32}

TINY = {
    "speech2text": {
        "params": {"max_new_tokens": 12},
        "variant": "s2t-tiny",
        "model": {"id": "test/s2t-tiny", "config": {
            **COMMON, "vocab_size": 64, "conv_channels": 16, "max_source_positions": 300,
            "max_target_positions": 64, "pad_token_id": 1, "bos_token_id": 0, "eos_token_id": 2,
            "decoder_start_token_id": 2}},
        "items": speech_items,
    },
    "translation": {
        "params": {"max_new_tokens": 12, "max_input_tokens": 48},
        "variant": "opus-mt-tiny",
        "model": {"id": "test/opus-mt-tiny", "config": {
            **COMMON, "vocab_size": 96, "max_position_embeddings": 64, "pad_token_id": 95,
            "decoder_start_token_id": 95, "eos_token_id": 0, "forced_eos_token_id": 0}},
        "items": french_items,
    },
    "summarization": {
        "params": {"max_new_tokens": 12, "max_input_tokens": 48},
        "variant": "distilbart-tiny",
        "model": {"id": "test/distilbart-tiny", "config": {
            **COMMON, "vocab_size": 96, "max_position_embeddings": 64}},
        "items": article_items,
    },
}

SPECIALS = ["<s>", "<pad>", "</s>", "<unk>"]  # ids 0..3, as BART's and Speech2Text's vocabularies have them


def word_tokenizer(texts: list[str]):
    """A word-level fast tokenizer trained on `texts` (ids 0..3: <s> <pad> </s> <unk>), adding </s> at the end of
    a text, as Marian's does."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    tokenizer = Tokenizer(models.WordLevel(unk_token="<unk>"))
    tokenizer.pre_tokenizer = pre_tokenizers.Whitespace()
    tokenizer.train_from_iterator(texts, trainers.WordLevelTrainer(special_tokens=SPECIALS))
    tokenizer.post_processor = processors.TemplateProcessing(single="$A </s>", special_tokens=[("</s>", 2)])
    tokenizer.decoder = decoders.WordPiece(prefix="##")  # joins words with spaces
    return PreTrainedTokenizerFast(tokenizer_object=tokenizer, bos_token="<s>", pad_token="<pad>",
                                   eos_token="</s>", unk_token="<unk>")


def sentencepiece_processor(texts: list[str], folder: Path):
    """A Speech2TextProcessor: the default feature extractor and a sentencepiece tokenizer trained on `texts`."""
    import sentencepiece
    from transformers import Speech2TextFeatureExtractor, Speech2TextProcessor, Speech2TextTokenizer

    folder.mkdir(parents=True, exist_ok=True)
    corpus = folder / "corpus.txt"
    corpus.write_text("\n".join(texts * 4))
    sentencepiece.SentencePieceTrainer.train(input=str(corpus), model_prefix=str(folder / "spm"), vocab_size=48,
                                             bos_id=0, pad_id=1, eos_id=2, unk_id=3, model_type="unigram",
                                             hard_vocab_limit=False, minloglevel=2)
    pieces = sentencepiece.SentencePieceProcessor(model_file=str(folder / "spm.model"))
    (folder / "vocab.json").write_text(json.dumps({pieces.id_to_piece(i): i for i in range(pieces.get_piece_size())}))
    tokenizer = Speech2TextTokenizer(vocab_file=str(folder / "vocab.json"), spm_file=str(folder / "spm.model"))
    return Speech2TextProcessor(feature_extractor=Speech2TextFeatureExtractor(), tokenizer=tokenizer)


def pretrained_folder(family_name: str, folder: Path, seed: int = 0) -> Path:
    """A folder as `save_pretrained` leaves it: a tiny model of `TINY[family_name]` with random weights and a tokenizer
    (or processor) built here, its vocabulary the model's."""
    import torch
    import transformers

    from sustainable_ipa.families import family_class

    family = family_class(family_name)
    spec = TINY[family_name]
    config = dict(spec["model"]["config"])
    texts = {"speech2text": TRANSCRIPTS, "translation": FRENCH + ENGLISH, "summarization": ARTICLES + SUMMARIES}
    if family_name == "speech2text":
        processor = sentencepiece_processor(texts[family_name], folder / "spm")
        vocab = len(processor.tokenizer)
        config.update(vocab_size=vocab)
    else:
        processor = word_tokenizer(texts[family_name])
        vocab = len(processor)
        config.update(vocab_size=vocab, pad_token_id=1, eos_token_id=2, bos_token_id=0,
                      decoder_start_token_id=1 if family_name == "translation" else 2)
        if family_name == "translation":
            config.update(forced_eos_token_id=2)
    torch.manual_seed(seed)
    model = getattr(transformers, family.model_class)(getattr(transformers, family.config_class)(**config))
    model.save_pretrained(folder)
    processor.save_pretrained(folder)
    return folder


def pretrained_model_spec(family_name: str, folder: Path) -> dict:
    """The catalogue `model` matching a `pretrained_folder`: its vocabulary and special tokens."""
    from transformers import AutoConfig

    found = AutoConfig.from_pretrained(folder, local_files_only=True)
    config = dict(TINY[family_name]["model"]["config"])
    for key in ("vocab_size", "pad_token_id", "eos_token_id", "bos_token_id", "decoder_start_token_id"):
        config[key] = getattr(found, key)
    return {"id": TINY[family_name]["model"]["id"], "config": config}
