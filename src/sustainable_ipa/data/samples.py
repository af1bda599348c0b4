"""Speech and text datasets: each request's input with its references, what a right pipeline makes of it.

A speech or text pipeline's items carry their `Sample`, so that any stage can read the references it needs (a
question for extractive QA, the reference transcript a random-weight recogniser hands on) and its accuracy can be
scored. The manifests and the files they name live under `data/` (see its README for where they come from).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping

import numpy as np

# Reference keys a sample may carry; each family reads the ones it needs.
TRANSCRIPT = "transcript"  # the words spoken in a clip
QUESTION = "question"  # a question the sample's text answers
ANSWERS = "answers"  # accepted answers to it (spans of the text), a list of strings
SENTIMENT = "sentiment"  # "positive" | "negative"
LANGUAGE = "language"  # ISO 639-1 code of the input text
TRANSLATION = "translation"  # the input text in English
SUMMARY = "summary"  # a one-sentence summary of the (English) text


@dataclass(frozen=True, eq=False)
class Sample:
    """One request's input in a speech or text dataset, named, with its references."""

    sample_id: int
    name: str
    references: Mapping[str, object] = field(default_factory=dict)


@dataclass(frozen=True, eq=False)
class Speech:
    """A clip: mono float32 samples in [-1, 1] at `sample_rate_hz`."""

    samples: np.ndarray = field(repr=False)
    sample_rate_hz: int
    sample: Sample

    @property
    def name(self) -> str:
        return self.sample.name

    @property
    def duration_s(self) -> float:
        return len(self.samples) / self.sample_rate_hz


@dataclass(frozen=True, eq=False)
class Text:
    """A text on its way through a pipeline: the dataset's input, or what a stage made of it (a transcript, a
    translation, a summary), with the sample it comes from."""

    text: str
    sample: Sample

    @property
    def name(self) -> str:
        return self.sample.name


@dataclass(frozen=True)
class SampleDataset:
    """A speech or text dataset: `items` are the first stage's inputs (`Speech` or `Text`), one per request."""

    name: str
    kind: str  # "speech" | "text": the item kind a pipeline's first stage must consume
    items: list
    source: Path | None = None  # the manifest the items were read from
