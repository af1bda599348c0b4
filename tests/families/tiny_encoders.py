"""Tiny configurations of the encoder families (text classification, language identification, extractive QA) for
the tests, and what their pretrained-folder tests need offline: a tokenizer trained here on a few sentences.

`TINY[family]` holds `params` (the family's Params), `variant`, `model` (the family's Model: a config of 2 layers
of width 32 and a vocabulary of 128, random weights in well under a second) and `items` (a function giving a few
items with the references the family reads)."""

from __future__ import annotations

from pathlib import Path

import torch
from tokenizers import Tokenizer, models, pre_tokenizers, processors, trainers
from transformers import PreTrainedTokenizerFast

from sustainable_ipa.data.samples import Sample, Text
from sustainable_ipa.families import family_class

VOCAB_SIZE = 128
BERT_LIKE = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64,
                 vocab_size=VOCAB_SIZE, max_position_embeddings=66)
ROBERTA_LIKE = {**BERT_LIKE, "type_vocab_size": 1, "pad_token_id": 1, "bos_token_id": 0, "eos_token_id": 2}
DISTILBERT = dict(dim=32, n_layers=2, n_heads=2, hidden_dim=64, vocab_size=VOCAB_SIZE, max_position_embeddings=64)

# (text, references): English reviews, texts in other languages, and passages whose answer is their first word (a QA
# head with zero weights picks the first context token, so its F1 on them is known: 1.0).
SENTIMENT_TEXTS = [
    ("I love this film, it is wonderful!", "positive"),
    ("Terrible. The plot was boring and far too long; I left before the end of the screening.", "negative"),
    ("A warm, funny and beautifully acted story.", "positive"),
]
LANGUAGE_TEXTS = [("Le chat dort sur le canapé du salon.", "fr"), ("The cat sleeps on the sofa.", "en"),
                  ("Die Katze schläft auf dem Sofa im Wohnzimmer.", "de")]
PASSAGES = [
    ("Paris is the capital of France and its largest city.", "What is the capital of France?", ["Paris"]),
    ("Marie Curie won two Nobel prizes, in physics and in chemistry.", "Who won two Nobel prizes?",
     ["Marie Curie", "Marie"]),
    ("Seven bridges cross the river in the old town.", "How many bridges cross the river?", ["Seven"]),
]


def sentiment_items() -> list[Text]:
    return [Text(text, Sample(i, f"review-{i}", {"sentiment": label})) for i, (text, label) in
            enumerate(SENTIMENT_TEXTS)]


def language_items() -> list[Text]:
    return [Text(text, Sample(i, f"sentence-{i}", {"language": code})) for i, (text, code) in
            enumerate(LANGUAGE_TEXTS)]


def passage_items() -> list[Text]:
    return [Text(text, Sample(i, f"passage-{i}", {"question": question, "answers": answers}))
            for i, (text, question, answers) in enumerate(PASSAGES)]


TINY = {
    "text-classification": {
        "params": {"label_key": "sentiment", "max_input_tokens": 48},
        "variant": "tiny-distilbert-sst2",
        "model": {"id": "tiny/distilbert-sst2", "architecture": "distilbert", "labels": ["negative", "positive"],
                  "config": DISTILBERT},
        "items": sentiment_items,
    },
    "language-identification": {
        "params": {"label_key": "language", "max_input_tokens": 48},
        "variant": "tiny-xlm-roberta-li",
        "model": {"id": "tiny/xlm-roberta-li", "architecture": "xlm-roberta", "labels": ["de", "en", "fr"],
                  "config": ROBERTA_LIKE},
        "items": language_items,
    },
    "extractive-qa": {
        "params": {"max_input_tokens": 48, "max_answer_tokens": 8},
        "variant": "tiny-roberta-squad2",
        "model": {"id": "tiny/roberta-squad2", "architecture": "roberta", "config": ROBERTA_LIKE},
        "items": passage_items,
    },
}

FAMILY_CLASSES = {"text-classification": "text-classification",
                  "language-identification": "sustainable_ipa.families.text_classification:LanguageIdentification",
                  "extractive-qa": "extractive-qa"}


def family(name: str, **params):
    """The family `name` of TINY for a stage named like it, with TINY's params (overridden by `params`)."""
    cls = family_class(FAMILY_CLASSES[name])
    return cls(name, cls.Params(**{**TINY[name]["params"], **params}))


def build(name: str, precision: str = "fp32", handoff: str = "model", weights: Path | None = None, seed: int = 0,
          params: dict | None = None, **model_changes):
    """TINY's variant of family `name` built with random weights of `seed` (or `weights`); `params` and
    `model_changes` replace fields of its params and of its catalogue entry (a config, say)."""
    fam = family(name, **(params or {}))
    model = fam.Model(**{**TINY[name]["model"], **model_changes})
    torch.manual_seed(seed)
    return fam.build(TINY[name]["variant"], model, weights, precision, "cpu", handoff)


def tiny_tokenizer(texts: list[str]) -> PreTrainedTokenizerFast:
    """A word-level tokenizer trained on `texts`, with BERT's special tokens and layout ([CLS] a [SEP] b [SEP]):
    a real fast tokenizer (offsets, pairs, padding) that needs no download."""
    tokenizer = Tokenizer(models.WordLevel(unk_token="[UNK]"))
    tokenizer.pre_tokenizer = pre_tokenizers.Whitespace()
    specials = ["[PAD]", "[UNK]", "[CLS]", "[SEP]"]
    tokenizer.train_from_iterator(texts, trainers.WordLevelTrainer(special_tokens=specials))
    cls, sep = tokenizer.token_to_id("[CLS]"), tokenizer.token_to_id("[SEP]")
    tokenizer.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", pair="[CLS] $A [SEP] $B:1 [SEP]:1", special_tokens=[("[CLS]", cls), ("[SEP]", sep)])
    return PreTrainedTokenizerFast(tokenizer_object=tokenizer, unk_token="[UNK]", pad_token="[PAD]",
                                   cls_token="[CLS]", sep_token="[SEP]")


def all_texts() -> list[str]:
    return [t for t, _ in SENTIMENT_TEXTS + LANGUAGE_TEXTS] + [t for p in PASSAGES for t in p[:2]]


def save_folder(name: str, folder: Path, tokenizer: bool = True, seed: int = 0, edit=None, **model_changes) -> Path:
    """TINY's variant of family `name` (its catalogue entry changed by `model_changes`) saved as a pretrained folder
    (save_pretrained), with a tokenizer trained on the tests' texts unless `tokenizer` is False; `edit(torch_model)`
    changes its weights first."""
    stage = build(name, seed=seed, **model_changes)
    if edit is not None:
        edit(stage.model)
    stage.model.save_pretrained(folder)
    if tokenizer:
        tiny_tokenizer(all_texts()).save_pretrained(folder)
    return folder
