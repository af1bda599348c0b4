"""Speech and text datasets read from a JSON manifest: each entry an input with its references.

A manifest is `{"entries": [{...}, ...]}` (other top-level keys, such as how the files were made, are for people).
An entry holds a `name` (unique), its input — `file`, a WAV beside the manifest, for speech; `text` for text — and
reference fields named by samples.py's keys (`transcript`, `question`, `answers`, …). Everything is checked when
the dataset loads, and each fault is one UserError naming the file and the entry (`entries[3] ('hotel')`): a
dataset that loads is one whose references can be scored, so a broken one never costs a measured run. In
particular every answer must occur verbatim in the texts a QA stage reads — a warning would let a run report an F1
against answers no model could give.

WAVs must already be 16 kHz mono (the rate the speech recognisers take): resampling at load would hide what the
model is fed, so a clip at another rate is refused with the fix.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import soundfile as sf

from sustainable_ipa.data.samples import (ANSWERS, LANGUAGE, QUESTION, SENTIMENT, SUMMARY, TRANSCRIPT, TRANSLATION,
                                          Sample, SampleDataset, Speech, Text)
from sustainable_ipa.errors import UserError

SPEECH_RATE_HZ = 16_000
REFERENCE_KEYS = (TRANSCRIPT, QUESTION, ANSWERS, SENTIMENT, LANGUAGE, TRANSLATION, SUMMARY)
SENTIMENTS = ("positive", "negative")
INPUT_TEXT = "text"  # a text entry's input, as `answers_in` names it beside the reference keys


def speech_dataset(name: str, manifest: str, references: Sequence[str] = (TRANSCRIPT,)) -> SampleDataset:
    """Clips (`file`, 16 kHz mono WAV) with their transcripts; `references` are the fields each entry must have
    (the pipeline's stages read them). Answers must occur in the transcript, the text a QA stage reads."""
    path = Path(manifest)
    check_field_names(references, REFERENCE_KEYS, "dataset.references")
    entries = read_entries(path, "file", [TRANSCRIPT, *references])
    items = []
    for index, entry in enumerate(entries):
        where = entry_label(path, index, entry)
        check_answers(entry, [TRANSCRIPT], where)
        samples = read_clip(path.parent / entry["file"], where)
        items.append(Speech(samples, SPEECH_RATE_HZ, make_sample(index, entry)))
    return SampleDataset(name, "speech", items, path)


def text_dataset(name: str, manifest: str, references: Sequence[str] = (),
                 answers_in: Sequence[str] = (INPUT_TEXT,)) -> SampleDataset:
    """Texts (`text`) with their references; `answers_in` names the fields every answer must occur in (`text`
    and/or reference keys): in sum-qa the QA stage reads the summary, so answers must be in it too."""
    path = Path(manifest)
    check_field_names(references, REFERENCE_KEYS, "dataset.references")
    check_field_names(answers_in, (INPUT_TEXT, *REFERENCE_KEYS), "dataset.answers_in")
    entries = read_entries(path, INPUT_TEXT, references)
    items = []
    for index, entry in enumerate(entries):
        check_answers(entry, answers_in, entry_label(path, index, entry))
        items.append(Text(entry[INPUT_TEXT], make_sample(index, entry)))
    return SampleDataset(name, "text", items, path)


def read_entries(path: Path, input_key: str, references: Sequence[str]) -> list[dict]:
    """The manifest's entries, each with a name, its input (`input_key`) and the `references`, no other field,
    all of the right types."""
    required = list(dict.fromkeys(["name", input_key, *references]))
    allowed = ["name", input_key, *REFERENCE_KEYS]
    entries = read_manifest(path).get("entries")
    if not isinstance(entries, list):
        raise UserError(f"manifest {path} has no list of entries", 'write it as {"entries": [{"name": …, …}, …]}')
    if not entries:
        raise UserError(f"manifest {path} has no entries", "add at least one entry")
    names: set[str] = set()
    for index, entry in enumerate(entries):
        where = entry_label(path, index, entry)
        check_entry(entry, required, allowed, where)
        if entry["name"] in names:
            raise UserError(f"{where} repeats an earlier entry's name", "give each entry its own name")
        names.add(entry["name"])
    return entries


def read_manifest(path: Path) -> dict:
    if not path.is_file():
        raise UserError(f"manifest {path} does not exist", "pass dataset.manifest=/path/to/manifest.json")
    try:
        doc = json.loads(path.read_bytes().decode("utf-8"))
    except UnicodeDecodeError as err:
        raise UserError(f"manifest {path} is not UTF-8 text (byte {err.start})", "save it as UTF-8") from None
    except json.JSONDecodeError as err:
        raise UserError(f"manifest {path} is not valid JSON (line {err.lineno}, column {err.colno}: {err.msg})",
                        "fix the JSON there") from None
    if not isinstance(doc, dict):
        raise UserError(f"manifest {path} is not a JSON object", 'write it as {"entries": [{"name": …, …}, …]}')
    return doc


def check_entry(entry: object, required: Sequence[str], allowed: Sequence[str], where: str) -> None:
    """Required fields present, none but the allowed ones (a misspelt reference would otherwise go unread), each
    of its type."""
    if not isinstance(entry, dict):
        raise UserError(f"{where} is not a JSON object", 'write each entry as {"name": …, …}')
    missing = [key for key in required if key not in entry]
    if missing:
        raise UserError(f"{where} has no '{missing[0]}'", f"add it: this dataset needs {', '.join(required)}")
    unknown = sorted(set(entry) - set(allowed))
    if unknown:
        raise UserError(f"{where} has an unknown field '{unknown[0]}'", f"use only {', '.join(allowed)}")
    for key, value in entry.items():
        problem = field_problem(key, value)
        if problem:
            raise UserError(f"{where}: '{key}' {problem}", f"give '{key}' {problem.removeprefix('is not ')}")


def field_problem(key: str, value: object) -> str | None:
    """What is wrong with one field's value, phrased 'is not <what it must be>', or None."""
    if key == ANSWERS:
        ok = isinstance(value, list) and value and all(isinstance(a, str) and a.strip() for a in value)
        return None if ok else "is not a non-empty list of non-empty strings"
    if key == SENTIMENT:
        return None if value in SENTIMENTS else f"is not one of {', '.join(SENTIMENTS)}"
    return None if isinstance(value, str) and value.strip() else "is not a non-empty string"


def check_answers(entry: dict, fields: Sequence[str], where: str) -> None:
    """Every answer is a verbatim span (case and punctuation included) of each field a QA stage may read."""
    for answer in entry.get(ANSWERS, []):
        for field in fields:
            if field not in entry:
                raise UserError(f"{where} has answers but no '{field}' to find them in", f"add its {field}")
            if answer not in entry[field]:
                raise UserError(f"{where}: answer '{answer}' does not occur in its {field}",
                                f"make each answer a verbatim span of the {field} (case and punctuation included)")


def check_field_names(names: Sequence[str], known: Sequence[str], setting: str) -> None:
    unknown = [n for n in names if n not in known]
    if unknown:
        raise UserError(f"{setting} names '{unknown[0]}', which is no field of an entry",
                        f"choose among {', '.join(known)}")


def read_clip(path: Path, where: str) -> np.ndarray:
    """A 16 kHz mono WAV as float32 samples in [-1, 1]; anything else is refused with the fix."""
    if not path.is_file():
        raise UserError(f"{where}: audio file {path} does not exist", "put the WAV beside the manifest or fix 'file'")
    try:
        samples, rate_hz = sf.read(path, dtype="float32", always_2d=True)
    except sf.LibsndfileError as err:
        raise UserError(f"{where}: audio file {path} is corrupt or not a sound file ({err.error_string})",
                        "replace that file") from None
    resample = f"convert it, e.g. `ffmpeg -i {path} -ar {SPEECH_RATE_HZ} -ac 1 out.wav`"
    if rate_hz != SPEECH_RATE_HZ:
        raise UserError(f"{where}: audio file {path} is sampled at {rate_hz} Hz, not {SPEECH_RATE_HZ} Hz", resample)
    if samples.shape[1] != 1:
        raise UserError(f"{where}: audio file {path} has {samples.shape[1]} channels, not 1 (mono)", resample)
    if not len(samples):
        raise UserError(f"{where}: audio file {path} holds no samples", "replace that file")
    return samples[:, 0]


def make_sample(index: int, entry: dict) -> Sample:
    """The entry's position in the manifest (from 0), its name, and its reference fields."""
    return Sample(index, entry["name"], {key: entry[key] for key in REFERENCE_KEYS if key in entry})


def entry_label(path: Path, index: int, entry: object) -> str:
    name = entry.get("name") if isinstance(entry, dict) else None
    return f"{path}, entries[{index}]" + (f" ('{name}')" if isinstance(name, str) else "")
