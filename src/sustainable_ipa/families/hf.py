"""What the Hugging Face `transformers` families share: building a variant offline, finding pretrained folders,
and token ids when no tokenizer is at hand.

No hub here: `from_pretrained("<hub id>")` fails offline, so a variant's architecture is its config class built with
the published hyper-parameters the catalogue writes out (`pipeline.variants.<stage>.<variant>.model.config`), with
random weights. Pretrained weights (and the tokenizer or processor that belongs to them) load from a local folder
named like the hub id (`weights/deepset/roberta-base-squad2/`, as `save_pretrained` or `hf download --local-dir`
leave it) or from the Hugging Face cache, where `huggingface_hub` keeps what it downloaded.

Tokenizers are not installable offline either. With random weights a text becomes stand-in token ids
(`stand_in_token_ids`): words and punctuation split as subword tokenizers roughly do, so that sequence lengths,
and with them latency and energy, are realistic. They are recorded as such; they are no model's real tokens.

The encoder families (text classification, extractive QA) share the rest of this module: `EncoderModel` (the
catalogue entry naming the architecture), `load_encoder` (random or pretrained, refusing another architecture's or
task's weights and a folder without its tokenizer), `encode` (texts or question-context pairs → padded tensors,
real or stand-in tokens, with each token's character span), `EncoderStage` (a batch in torch fp32/bf16 or OpenVINO,
fidelity against torch fp32) and `export_encoder` (optimum-intel's OpenVINO export, int8 by its NNCF quantizer,
cached by `openvino_runtime.export`).
"""

from __future__ import annotations

import contextlib
import gc
import os
import re
import sys
import tempfile
import warnings
import zlib
from abc import abstractmethod
from dataclasses import dataclass
from importlib.metadata import version
from pathlib import Path
from typing import Any, ClassVar, Literal

import numpy as np
import torch
from pydantic import Field

from sustainable_ipa.errors import UserError
from sustainable_ipa.families.base import FamilySettings, Handoff, StageModel, WeightsSource
from sustainable_ipa.models.fidelity import cosines
from sustainable_ipa.models.openvino_runtime import (INFERENCE_PRECISION, ExportKey, export, inputs_digest,
                                                     library_versions, openvino_core, weights_digest)
from sustainable_ipa.models.precision import forward_context
from sustainable_ipa.pipeline.stage import ItemResult


class HubModel(FamilySettings):
    """A catalogue entry's `model` for a transformers family: the hub id the published weights go by (the folder
    name they are looked up under) and the published hyper-parameters of its config class."""

    id: str = Field(min_length=1)  # e.g. deepset/roberta-base-squad2
    config: dict[str, Any] = Field(default_factory=dict)  # keyword arguments of the family's config class


def build_config(config_class, model: HubModel, variant: str, stage: str):
    """The config class with the catalogue's hyper-parameters; a key the class does not know is refused (a typo
    would otherwise be ignored and the default architecture built)."""
    defaults = config_class()
    unknown = sorted(k for k in model.config if not hasattr(defaults, k))
    if unknown:
        raise UserError(f"pipeline.variants.{stage}.{variant}.model.config has {', '.join(unknown)}, which "
                        f"{config_class.__name__} does not know",
                        f"use {config_class.__name__}'s own names (see the transformers documentation)")
    return config_class(**model.config)


def weights_source(model: HubModel) -> WeightsSource:
    """The folder named like the hub id, in `weights=<folder>` / `weights_dir` or the Hugging Face cache."""
    cached = hub_cache_folder(model.id)
    return WeightsSource(model.id, f"https://huggingface.co/{model.id}", (cached,) if cached else (),
                         fetch=lambda destination: _download(model.id, destination))


def hub_cache_folder(hub_id: str) -> Path | None:
    """The snapshot of `hub_id` the Hugging Face cache holds, if any (never the network)."""
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import LocalEntryNotFoundError

    try:
        return Path(snapshot_download(hub_id, local_files_only=True))
    except (LocalEntryNotFoundError, OSError, ValueError):
        return None


def _download(hub_id: str, destination: Path) -> bool:
    from huggingface_hub import snapshot_download

    try:
        snapshot_download(hub_id, local_dir=destination)
    except Exception:  # offline, or the hub refused: the caller falls back or says what is missing
        return False
    return True


def check_architecture(folder: Path, expected, stage: str, variant: str, keys: tuple[str, ...]) -> None:
    """Refuse, in one line, a pretrained folder whose config is another architecture than the catalogue's:
    another `model_type`, or another value of one of `keys` (the hyper-parameters that shape the weights)."""
    from transformers import AutoConfig

    try:
        found = AutoConfig.from_pretrained(folder, local_files_only=True)
    except (OSError, ValueError, KeyError) as err:
        raise UserError(f"{folder} holds no readable transformers config ({type(err).__name__}: "
                        f"{str(err).splitlines()[0] if str(err) else ''})",
                        "point weights= at a folder saved by save_pretrained, or pass weights=random") from None
    wrong = [f"model_type {found.model_type} (expected {expected.model_type})"] \
        if found.model_type != expected.model_type else []
    wrong += [f"{k}={getattr(found, k, None)} (expected {getattr(expected, k)})" for k in keys
              if getattr(found, k, None) != getattr(expected, k)]
    if wrong:
        raise UserError(f"the weights in {folder} are another architecture than {stage} variant {variant}: "
                        f"{', '.join(wrong)}", f"put {variant}'s own weights there, or pass weights=random")


_PIECES = re.compile(r"\w+|[^\w\s]", re.UNICODE)
STAND_IN_PIECE_CHARS = 6  # longer words split into pieces of at most this many characters


def stand_in_pieces(text: str) -> list[str]:
    """Words and punctuation marks, words longer than `STAND_IN_PIECE_CHARS` cut into pieces of that length: about
    as many pieces as a subword tokenizer makes of English or French text (no real tokenizer is at hand offline)."""
    return [text[start:end] for start, end in stand_in_piece_spans(text)]


def stand_in_piece_spans(text: str) -> list[tuple[int, int]]:
    """Where `stand_in_pieces` cut `text`: each piece's (start, end) character offsets, as a fast tokenizer's
    offset mapping gives them (an answer span is read back from them)."""
    spans = []
    for word in _PIECES.finditer(text):
        spans.extend((i, min(i + STAND_IN_PIECE_CHARS, word.end()))
                     for i in range(word.start(), word.end(), STAND_IN_PIECE_CHARS))
    return spans


def stand_in_token_ids(text: str, vocab_size: int, reserved: int = 4) -> list[int]:
    """Stand-in token ids of `text`: one per piece, a stable hash of it in [reserved, vocab_size) (the first ids
    are the special tokens of most vocabularies). Not the model's tokens: lengths, not meanings."""
    span = vocab_size - reserved
    return [reserved + zlib.crc32(piece.encode()) % span for piece in stand_in_pieces(text)]


# --- Encoder families (text classification, extractive QA): what they share --------------------------------------
#
# A batch of texts (or of question-context pairs) becomes one padded tensor batch (`encode`), with a real tokenizer
# when pretrained weights came with one, else with stand-in ids laid out as the architecture's tokenizer lays out its
# special tokens. An `EncoderStage` runs it in torch (fp32, bf16 by autocast) or on OpenVINO (an optimum-intel
# export of the model's `save_pretrained` folder, int8 by NNCF through optimum-intel's quantizer, calibrated on the
# stage's own items), and measures its fidelity against its torch fp32 twin.

# Per architecture: its config class in transformers and the hyper-parameters that shape its weights (a pretrained
# folder must match them). DistilBERT names them its own way.
_BERT_SHAPE = ("hidden_size", "num_hidden_layers", "num_attention_heads", "intermediate_size", "vocab_size",
               "max_position_embeddings", "type_vocab_size")
ENCODER_ARCHITECTURES: dict[str, tuple[str, tuple[str, ...]]] = {
    "bert": ("BertConfig", _BERT_SHAPE),
    "distilbert": ("DistilBertConfig", ("dim", "n_layers", "n_heads", "hidden_dim", "vocab_size",
                                        "max_position_embeddings")),
    "roberta": ("RobertaConfig", _BERT_SHAPE),
    "xlm-roberta": ("XLMRobertaConfig", _BERT_SHAPE),
}
Architecture = Literal["bert", "distilbert", "roberta", "xlm-roberta"]
# What a stage worker imports to unpickle an encoder (`ModelFamily.preload`): the architectures' modelling modules.
ENCODER_MODULES = ("transformers.models.bert.modeling_bert", "transformers.models.distilbert.modeling_distilbert",
                   "transformers.models.roberta.modeling_roberta",
                   "transformers.models.xlm_roberta.modeling_xlm_roberta")
ROBERTA_LIKE = ("roberta", "xlm-roberta")  # <s> a </s></s> b </s>; positions start after the padding index
TOKENIZER_FILES = ("tokenizer.json", "vocab.txt", "vocab.json", "sentencepiece.bpe.model", "spiece.model")
# Stand-in ids of [CLS] and [SEP] where the config names no bos/eos token (BERT, DistilBERT); RoBERTa's are its own.
STAND_IN_CLS, STAND_IN_SEP = 2, 3
STAND_IN_RESERVED = 4  # stand-in ids of words start here: below are the special tokens


class EncoderModel(HubModel):
    """A catalogue entry's `model` for an encoder family: which transformers architecture the hub model is (its
    config class), besides its hub id and published hyper-parameters."""

    architecture: Architecture


def encoder_config(model: EncoderModel, variant: str, stage: str, fixed: dict[str, Any] | None = None):
    """The architecture's config with the catalogue's hyper-parameters and the family's `fixed` ones (labels), which
    the catalogue's `config` must not give a second time."""
    import transformers

    fixed = fixed or {}
    twice = sorted(set(fixed) & set(model.config))
    if twice:
        raise UserError(f"pipeline.variants.{stage}.{variant}.model.config gives {', '.join(twice)}, which the "
                        "family sets from the catalogue's other fields", f"remove {', '.join(twice)} from it")
    config_class = getattr(transformers, ENCODER_ARCHITECTURES[model.architecture][0])
    return build_config(config_class, model.model_copy(update={"config": {**model.config, **fixed}}), variant, stage)


def usable_positions(config, architecture: str) -> int:
    """How many tokens the position table holds: RoBERTa's positions start after its padding index (514 → 512)."""
    if architecture in ROBERTA_LIKE:
        return config.max_position_embeddings - config.pad_token_id - 1
    return config.max_position_embeddings


@contextlib.contextmanager
def _quiet_transformers():
    """transformers' progress bars and load reports off while a folder loads (the caller reports in one line)."""
    from transformers.utils import logging as hf_logging

    verbosity, bars = hf_logging.get_verbosity(), hf_logging.is_progress_bar_enabled()
    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        hf_logging.set_verbosity(verbosity)
        if bars:
            hf_logging.enable_progress_bar()


def load_encoder(auto_class, config, model: EncoderModel, weights: Path | None, stage: str, variant: str,
                 extra_keys: tuple[str, ...] = ()):
    """(torch model, tokenizer or None): random weights from `config` when `weights` is None, else the folder's
    weights and tokenizer, refused in one line when they are another architecture's, another task's (a head the
    folder lacks), or come without a tokenizer."""
    if weights is None:
        return _frozen(auto_class.from_config(config)), None
    folder = Path(weights)
    check_architecture(folder, config, stage, variant, ENCODER_ARCHITECTURES[model.architecture][1] + extra_keys)
    tokenizer = load_tokenizer(folder, config, stage, variant)
    with _quiet_transformers():
        try:
            loaded, info = auto_class.from_pretrained(folder, local_files_only=True, output_loading_info=True)
        except (OSError, ValueError, RuntimeError) as err:
            raise UserError(f"the weights in {folder} cannot be read ({type(err).__name__}: "
                            f"{str(err).splitlines()[0] if str(err) else ''})",
                            f"put {model.id}'s own weights there (save_pretrained), or pass weights=random") from None
    missing = sorted(info.get("missing_keys", ()))
    if missing:
        raise UserError(f"the weights in {folder} lack {len(missing)} tensors {auto_class.__name__} needs "
                        f"({', '.join(missing[:3])}{', …' if len(missing) > 3 else ''}): another task's checkpoint",
                        f"put {model.id}'s own weights there, or pass weights=random")
    return _frozen(loaded), tokenizer


def _frozen(model):
    model.eval()
    for p in model.parameters():
        p.requires_grad_(False)
    return model


def load_tokenizer(folder: Path, config, stage: str, variant: str):
    """The tokenizer saved beside pretrained weights. transformers builds an empty one from a folder without
    tokenizer files (every word unknown), so their absence is refused here, as a vocabulary larger than the
    model's."""
    from transformers import AutoTokenizer

    if not any((folder / name).is_file() for name in TOKENIZER_FILES):
        raise UserError(f"{folder} holds weights but no tokenizer (none of {', '.join(TOKENIZER_FILES)})",
                        "save the tokenizer beside the weights (tokenizer.save_pretrained(folder), or download the "
                        "whole hub folder), or pass weights=random")
    try:
        with _quiet_transformers():
            tokenizer = AutoTokenizer.from_pretrained(folder, local_files_only=True)
    except (OSError, ValueError, KeyError, TypeError) as err:
        raise UserError(f"the tokenizer in {folder} cannot be read ({type(err).__name__}: "
                        f"{str(err).splitlines()[0] if str(err) else ''})",
                        "save it again with tokenizer.save_pretrained(folder), or pass weights=random") from None
    if len(tokenizer) <= len(tokenizer.all_special_ids) or len(tokenizer) > config.vocab_size:
        raise UserError(f"the tokenizer in {folder} has {len(tokenizer)} tokens for {stage} variant {variant}, whose "
                        f"vocabulary has {config.vocab_size}", "save the model's own tokenizer beside its weights")
    return tokenizer


def item_texts(items: list, stage: str) -> list[str]:
    """The texts of a batch of `Text` items; anything else is refused in one line."""
    from sustainable_ipa.data.samples import Text

    wrong = next((item for item in items if not isinstance(item, Text)), None)
    if wrong is not None:
        raise UserError(f"stage {stage} takes text items and got a {type(wrong).__name__}",
                        f"put a stage that hands text on (speech recognition, translation, …) before {stage}, or "
                        "use a text dataset")
    return [item.text for item in items]


@dataclass
class EncodedBatch:
    """A batch ready for an encoder: `inputs` its keyword tensors (padded to the longest item), per item its token
    count (special tokens included) and, per token, the character span it covers in the item's last text (the
    context of a question-context pair), None for special tokens and a pair's first text."""

    inputs: dict[str, torch.Tensor]
    lengths: list[int]
    spans: list[list[tuple[int, int] | None]]

    def numpy(self) -> dict[str, np.ndarray]:
        return {name: t.cpu().numpy() for name, t in self.inputs.items()}


def encode(texts: list[str], pairs: list[str] | None, tokenizer, config, architecture: str,
           max_tokens: int) -> EncodedBatch:
    """Texts (or (text, pair) couples: a question and its context) → one batch of at most `max_tokens` tokens per
    item, the longer text of a couple truncated first. With `tokenizer` None, stand-in ids (`stand_in_token_ids`)
    with the architecture's special tokens, so that sequence lengths are realistic."""
    max_tokens = min(max_tokens, usable_positions(config, architecture))
    if tokenizer is not None:
        return _tokenized(texts, pairs, tokenizer, architecture, max_tokens)
    rows = [_stand_in_row(text, pairs[i] if pairs is not None else None, config, architecture, max_tokens)
            for i, text in enumerate(texts)]
    width = max(len(ids) for ids, _, _ in rows)
    pad = config.pad_token_id if config.pad_token_id is not None else 0
    ids = torch.full((len(rows), width), pad, dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    types = torch.zeros((len(rows), width), dtype=torch.long)
    for i, (row, row_types, _) in enumerate(rows):
        ids[i, :len(row)] = torch.tensor(row)
        mask[i, :len(row)] = 1
        types[i, :len(row)] = torch.tensor(row_types)
    inputs = {"input_ids": ids, "attention_mask": mask}
    if architecture == "bert":
        inputs["token_type_ids"] = types
    return EncodedBatch(inputs, [len(row) for row, _, _ in rows],
                        [spans + [None] * (width - len(spans)) for _, _, spans in rows])


def _stand_in_row(text: str, pair: str | None, config, architecture: str, max_tokens: int):
    """One item's stand-in ids, token types and spans, laid out as the architecture's tokenizer lays out its special
    tokens: [CLS] a [SEP] b [SEP] (BERT, DistilBERT) or <s> a </s></s> b </s> (RoBERTa, XLM-R)."""
    cls = config.bos_token_id if getattr(config, "bos_token_id", None) is not None else STAND_IN_CLS
    sep = config.eos_token_id if getattr(config, "eos_token_id", None) is not None else STAND_IN_SEP
    middle = [sep, sep] if architecture in ROBERTA_LIKE else [sep]
    first = list(zip(stand_in_token_ids(text, config.vocab_size, STAND_IN_RESERVED), stand_in_piece_spans(text)))
    if pair is None:
        first = first[:max_tokens - 2]
        return ([cls] + [i for i, _ in first] + [sep], [0] * (len(first) + 2),
                [None] + [span for _, span in first] + [None])
    second = list(zip(stand_in_token_ids(pair, config.vocab_size, STAND_IN_RESERVED), stand_in_piece_spans(pair)))
    keep_first, keep_second = _longest_first(len(first), len(second), max_tokens - 2 - len(middle))
    first, second = first[:keep_first], second[:keep_second]
    ids = [cls] + [i for i, _ in first] + middle + [i for i, _ in second] + [sep]
    types = [0] * (len(first) + 2) + [1] * (len(ids) - len(first) - 2)  # BERT's segments; the others take none
    spans = [None] * (len(first) + 1 + len(middle)) + [span for _, span in second] + [None]
    return ids, types, spans


def _longest_first(first: int, second: int, budget: int) -> tuple[int, int]:
    """How many tokens of each text a longest-first truncation to `budget` keeps (tokenizers' default strategy:
    the longer text loses a token at a time, the second on a tie)."""
    if first + second <= budget:
        return first, second
    if 2 * min(first, second) <= budget:  # the shorter one fits whole
        return (first, budget - first) if first <= second else (budget - second, second)
    return budget - budget // 2, budget // 2


def _tokenized(texts, pairs, tokenizer, architecture: str, max_tokens: int) -> EncodedBatch:
    """The real tokenizer's batch; spans from its offsets where it has them (fast tokenizers)."""
    encoded = tokenizer(texts, pairs, truncation="longest_first", max_length=max_tokens, padding=True,
                        return_tensors="pt", return_offsets_mapping=tokenizer.is_fast)
    width = encoded["input_ids"].shape[1]
    spans, last = [], 0 if pairs is None else 1
    for i in range(len(texts)):
        if not tokenizer.is_fast:
            spans.append([None] * width)
            continue
        offsets, sequence = encoded["offset_mapping"][i].tolist(), encoded.sequence_ids(i)
        spans.append([tuple(offsets[t]) if sequence[t] == last else None for t in range(width)])
    names = ("input_ids", "attention_mask", "token_type_ids") if architecture == "bert" else \
        ("input_ids", "attention_mask")
    inputs = {name: encoded[name] for name in names if name in encoded}
    return EncodedBatch(inputs, encoded["attention_mask"].sum(dim=1).tolist(), spans)


class EncoderStage(StageModel):
    """An encoder variant as a replica runs it: a batch of items → `encode` → the model's named outputs (`forward`,
    torch or OpenVINO) → per item a prediction (`predict`) → `ItemResult`s (the family's `results`)."""

    task: ClassVar[str]  # optimum's task name for the export: "text-classification", "question-answering"
    output_names: ClassVar[tuple[str, ...]]  # the outputs compared for fidelity
    agreement_key: ClassVar[str]  # the fidelity key of predictions equal to fp32's

    def __init__(self, stage: str, variant: str, model, tokenizer, architecture: str, max_input_tokens: int,
                 precision: str, handoff: Handoff, device: str = "cpu"):
        self.stage, self.variant, self.precision, self.handoff = stage, variant, precision, handoff
        self.runtime = "torch"
        self.device = torch.device(device)
        self.model = model.to(self.device)
        self.tokenizer = tokenizer
        self.architecture = architecture
        self.max_input_tokens = min(max_input_tokens, usable_positions(model.config, architecture))
        self.openvino: OpenVinoEncoder | None = None

    @abstractmethod
    def encode(self, items: list) -> EncodedBatch:
        """The batch's model inputs."""

    @abstractmethod
    def predict(self, batch: EncodedBatch, outputs: dict[str, torch.Tensor]) -> list:
        """Per item, what the model chose (a label index, an answer span): what fidelity compares with fp32's."""

    @abstractmethod
    def results(self, items: list, batch: EncodedBatch, predictions: list) -> list[ItemResult]:
        """Per item, its recorded output and its handoffs."""

    def __call__(self, items: list) -> list[ItemResult]:
        if not items:
            return []
        batch = self.encode(items)
        return self.results(items, batch, self.predict(batch, self.forward(batch)))

    @torch.inference_mode()
    def forward(self, batch: EncodedBatch) -> dict[str, torch.Tensor]:
        """The model's outputs named in `output_names`, as fp32 tensors, in this stage's precision and runtime."""
        if self.runtime == "openvino":
            return self.openvino(batch.inputs)
        inputs = {name: t.to(self.device) for name, t in batch.inputs.items()}
        with forward_context(self.precision, self.device):
            outputs = self.model(**inputs)
        return {name: outputs[name].float().cpu() for name in self.output_names}

    def fidelity(self, items: list) -> dict[str, float]:
        """Agreement of the predictions and mean cosine of the outputs (each output apart, averaged) against torch
        fp32 with the same weights, over `items`."""
        if not items:
            return {}
        batch = self.encode(items)
        low, reference = self.forward(batch), self.fp32_twin().forward(batch)
        agree = [a == b for a, b in zip(self.predict(batch, low), self.predict(batch, reference))]
        cosine = torch.stack([cosines(low[n], reference[n]) for n in self.output_names]).mean(dim=0)
        return {self.agreement_key: float(np.mean(agree)), "logit_cosine_mean": float(cosine.mean()),
                "items": float(len(items))}

    def use_openvino(self, cache_dir: Path, items: list):
        """Run on OpenVINO from now on (see `export_encoder`); int8 calibrated on `items` in batches of 8."""
        calibration = [self.encode(items[i:i + 8]).numpy() for i in range(0, len(items), 8)] \
            if self.precision == "int8" else []
        made = export_encoder(self.model, self.task, self.variant, self.precision, Path(cache_dir), calibration)
        self.runtime, self.openvino = "openvino", OpenVinoEncoder(made.xml, self.precision, self.output_names)
        return made

    def describe(self) -> dict[str, float]:
        return {"params": float(sum(p.numel() for p in self.model.parameters())),
                "max_input_tokens": float(self.max_input_tokens)}


OV_MAIN_FILE = "openvino_model.xml"  # what optimum-intel's export and quantizer write
EXPORT_LOG = "export.log"  # in the cache folder: the libraries' own output during exports


def export_encoder(model, task: str, variant: str, precision: str, cache_dir: Path,
                   calibration: list[dict[str, np.ndarray]]):
    """The model's OpenVINO IR, cached by `openvino_runtime.export` under its weights, precision, calibration inputs
    and library versions. fp32 (also run in bf16, a compile-time hint): optimum-intel's `main_export` of the model's
    `save_pretrained` folder. int8: that fp32 IR (exported first, cached too) quantised by optimum-intel's
    `OVQuantizer` (NNCF post-training static quantisation, transformer preset) on `calibration`. The libraries'
    output goes to `cache_dir/export.log`."""
    import transformers

    versions = {**library_versions(), "transformers": transformers.__version__,
                "optimum-intel": version("optimum-intel")}
    weights = weights_digest(model)
    variant = variant.replace("/", "--")  # the cache entry's folder is named after it: a hub id makes no subfolder
    fp32_key = ExportKey(variant, "fp32", weights, "", 0, tuple(sorted(versions.items())))
    log = cache_dir / EXPORT_LOG

    def fp32_build(folder: Path) -> None:
        with output_to_log(log), _heap_set_aside():
            _optimum_export(model, task, folder)

    if precision != "int8":
        return export(fp32_key, cache_dir, fp32_build, main_file=OV_MAIN_FILE)
    arrays = [batch[name] for batch in calibration for name in sorted(batch)]
    int8_key = ExportKey(variant, "int8", weights, inputs_digest(arrays), len(calibration),
                         tuple(sorted(versions.items())))

    def int8_build(folder: Path) -> None:
        fp32 = export(fp32_key, cache_dir, fp32_build, main_file=OV_MAIN_FILE)
        with output_to_log(log), _heap_set_aside():
            _optimum_quantize(fp32.xml.parent, task, folder, calibration)

    return export(int8_key, cache_dir, int8_build, main_file=OV_MAIN_FILE)


def _optimum_export(model, task: str, folder: Path) -> None:
    from optimum.exporters.openvino import main_export
    from optimum.intel import OVConfig

    with tempfile.TemporaryDirectory(prefix="save-pretrained-") as saved:
        model.save_pretrained(saved)
        # dtype fp32: no size-based weight compression, weights stored as fp32.
        main_export(saved, output=folder, task=task, ov_config=OVConfig(dtype="fp32"), local_files_only=True,
                    library_name="transformers")


def _optimum_quantize(fp32_folder: Path, task: str, folder: Path, calibration: list[dict[str, np.ndarray]]) -> None:
    import nncf
    from optimum.intel import (OVConfig, OVModelForQuestionAnswering, OVModelForSequenceClassification,
                               OVQuantizationConfig, OVQuantizer)

    model_class = {"text-classification": OVModelForSequenceClassification,
                   "question-answering": OVModelForQuestionAnswering}[task]
    ov_model = model_class.from_pretrained(fp32_folder, compile=False)
    config = OVConfig(quantization_config=OVQuantizationConfig(num_samples=len(calibration)))
    OVQuantizer.from_pretrained(ov_model).quantize(calibration_dataset=nncf.Dataset(calibration), ov_config=config,
                                                   save_directory=folder)


@contextlib.contextmanager
def _heap_set_aside():
    """optimum's export runs `gc.collect()` several times, each through the caller's whole heap (a runner with its
    datasets, a test session): a second or more apiece. What was alive before the export is set aside meanwhile
    (`gc.freeze`), so they walk only what the export makes."""
    gc.freeze()
    try:
        yield
    finally:
        gc.unfreeze()


@contextlib.contextmanager
def output_to_log(log_file: Path):
    """Everything written to stdout and stderr meanwhile, by Python or by the libraries' C++ (progress bars, tracer
    warnings, NNCF's statistics), appended to `log_file` instead of the console."""
    log_file.parent.mkdir(parents=True, exist_ok=True)
    sys.stdout.flush()
    sys.stderr.flush()
    saved = os.dup(1), os.dup(2)
    with open(log_file, "a") as log, contextlib.redirect_stdout(log), contextlib.redirect_stderr(log), \
            warnings.catch_warnings():
        warnings.showwarning = lambda message, category, filename, lineno, file=None, line=None: log.write(
            warnings.formatwarning(message, category, filename, lineno, line))  # tracer warnings, …
        os.dup2(log.fileno(), 1)
        os.dup2(log.fileno(), 2)
        try:
            yield
        finally:
            log.flush()
            os.dup2(saved[0], 1)
            os.dup2(saved[1], 2)
            for fd in saved:
                os.close(fd)


class OpenVinoEncoder:
    """An exported encoder compiled on first use in the process that calls it, with that process's thread count
    (a compiled model does not pickle: each stage worker compiles its own)."""

    def __init__(self, xml: Path, precision: str, output_names: tuple[str, ...]):
        self.xml, self.precision, self.output_names = Path(xml), precision, output_names
        self._compiled = None

    def __call__(self, inputs: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        if self._compiled is None:
            self._compiled = openvino_core().compile_model(str(self.xml), "CPU", {
                "INFERENCE_PRECISION_HINT": INFERENCE_PRECISION[self.precision],
                "INFERENCE_NUM_THREADS": torch.get_num_threads(),
                "ENABLE_CPU_PINNING": False})  # the worker is pinned by its affinity; OpenVINO must stay inside it
        feed = {}
        for port in self._compiled.inputs:
            name = port.get_any_name()
            # BERT's export takes token types; a tokenizer that gives none means all zeros, as torch assumes.
            tensor = inputs[name] if name in inputs else torch.zeros_like(inputs["input_ids"])
            feed[name] = tensor.cpu().numpy()
        results = self._compiled(feed)
        return {name: torch.from_numpy(np.array(results[name])).float() for name in self.output_names}

    def __getstate__(self) -> dict:
        return {**self.__dict__, "_compiled": None}
