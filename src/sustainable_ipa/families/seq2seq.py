"""What the generative transformers families share (speech recognition, translation, summarisation): an encoder
runs once over a batch, then a decoder emits one token per step for every item of the batch until the longest is done.

**How long a model generates** decides most of its latency and energy, so it is fixed by rule, never by chance:
- random weights: a random decoder would stop at a random step or run to its cap. It runs exactly `L` new tokens,
  `L` = the longest reference output of the batch in stand-in pieces (`hf.stand_in_pieces`) + 1 for the end token:
  the end token is suppressed before step `L` and forced at step `L`. Batched generation runs until its longest
  sequence ends, so this is the cost the batch would have with a model that writes the references. Each item
  records `fixed_tokens` (the batch's `L`) and `reference_tokens` (its own).
- pretrained weights (a folder with the tokenizer or processor saved beside the weights): the real
  tokenizer/processor, free generation until every item has emitted its end token or `max_new_tokens` (a param),
  then decoding.

**Decoding is greedy** (one beam), the same loop on torch and on OpenVINO, so that fidelity compares like with
like: the end token is the model's `eos_token_id`, the padding token is never generated, a `forced_bos_token_id` of
the model's generation config is forced at the first step; n-gram blocking, length penalties and beam search of the
model cards' generation configs are not applied (they would differ between the two runtimes, and beams multiply the
decoder's cost by their number).

**OpenVINO** runs three IRs converted with `torch.export` + `ov.convert_model` from the same weights: the encoder,
the decoder's first step (no cache; it also scores a whole target sequence at once, for fidelity) and the decoder's
later steps (self-attention and cross-attention keys and values in and out as plain tensors). optimum-intel 2.2.0
cannot be used with transformers 5.5: it has removed `speech_to_text` export and caps Marian export at transformers
4.57.6 (only BART exports, and takes 12 s for a 2-layer model). int8 is NNCF's post-training quantisation of each IR
(`ModelType.TRANSFORMER`), calibrated on the inputs each IR receives while torch fp32 generates for the stage's own
items. Exports are cached by `openvino_runtime.export` under the weights' digest, the calibration inputs' digest and
the library versions; the IRs are compiled lazily in the process that runs them.

**Fidelity** against the torch fp32 twin: `token_agreement` (generated ids equal position by position, over the
longer of the two sequences per item) and `logit_cosine_mean` (the cosine of the decoder's logits, both models
teacher-forced on the twin's generated sequence, per item over its valid positions).
"""

from __future__ import annotations

import math
import random
from abc import abstractmethod
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch
from pydantic import Field

from sustainable_ipa.data.samples import Text
from sustainable_ipa.errors import UserError
from sustainable_ipa.families import hf
from sustainable_ipa.families.base import FamilySettings, Handoff, ModelFamily, StageModel, WeightsSource
from sustainable_ipa.models.openvino_runtime import INFERENCE_PRECISION, openvino_core
from sustainable_ipa.models.precision import forward_context
from sustainable_ipa.pipeline.stage import ItemResult

CALIBRATION_BATCH_ITEMS = 8  # items per calibration batch (int8)
CALIBRATION_STEP_SAMPLES = 16  # later-step decoder inputs kept for int8 calibration (their caches are large)
FIDELITY_BATCH_ITEMS = 8


class Seq2SeqParams(FamilySettings):
    """`pipeline.<stage>.params` of a generative family."""

    max_new_tokens: int = Field(ge=1)  # the cap of free generation (pretrained weights); each family sets a default
    calibration_items: int = Field(32, ge=1)  # int8: at most this many of the stage's items calibrate NNCF


class TextSeq2SeqParams(Seq2SeqParams):
    max_input_tokens: int = Field(ge=2)  # longer inputs are truncated (the model's position limit at most)


@dataclass(frozen=True)
class Generated:
    """What a generative stage made of one item, recorded on its request."""

    token_ids: tuple[int, ...]  # the generated ids up to and including the end token (padding excluded)
    new_tokens: int  # len(token_ids): the decoder steps this item needed
    input_tokens: int  # the encoder's input length: tokens, or feature frames for speech
    fixed_tokens: int | None  # random weights: the batch's fixed generation length L; None: free generation
    reference_tokens: int | None  # random weights: this item's reference in stand-in pieces + 1 (its own L)
    text: str | None  # decoded with the real tokenizer; None without one (random weights)


@dataclass(frozen=True)
class SpecialTokens:
    """The token ids the decoding loop needs, from the model's config and generation config."""

    start: int  # decoder_start_token_id
    eos: int
    pad: int | None
    forced_first: int | None  # forced_bos_token_id

    @classmethod
    def of(cls, model) -> "SpecialTokens":
        config, generation = model.config, model.generation_config
        start = _first_int(getattr(generation, "decoder_start_token_id", None), config.decoder_start_token_id)
        eos = _first_int(getattr(generation, "eos_token_id", None), config.eos_token_id)
        pad = _first_int(getattr(generation, "pad_token_id", None), config.pad_token_id)
        return cls(start, eos, None if pad == eos else pad,
                   _first_int(getattr(generation, "forced_bos_token_id", None)))


def _first_int(*values) -> int | None:
    for value in values:
        if isinstance(value, (list, tuple)):
            value = value[0] if value else None
        if value is not None:
            return int(value)
    return None


@dataclass
class EncoderInputs:
    """A batch as the encoder takes it: token ids (B, S) or features (B, T, F), the attention mask (B, S|T), and
    per item its input length."""

    x: torch.Tensor
    mask: torch.Tensor
    lengths: list[int]


# --- the model's parts, as torch modules (what torch runs and what OpenVINO converts) -----------------------------

class EncoderPart(torch.nn.Module):
    """(input ids or features, attention mask) -> the encoder's last hidden state."""

    def __init__(self, model, speech: bool):
        super().__init__()
        self.encoder = model.get_encoder()
        self.speech = speech

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        if self.speech:
            return self.encoder(input_features=x, attention_mask=mask).last_hidden_state
        return self.encoder(input_ids=x, attention_mask=mask).last_hidden_state


class DecoderStep(torch.nn.Module):
    """(decoder ids, encoder hidden state, its mask, *cache) -> (logits, *new cache). Without a cache it is the first
    step (any number of decoder ids: teacher forcing scores a whole sequence). The cache is, per decoder layer, the
    self-attention keys and values then the cross-attention keys and values, each (B, heads, length, head_dim):
    plain tensors, so that OpenVINO can take them as inputs and give them back as outputs."""

    def __init__(self, model):
        super().__init__()
        config = model.config
        self.decoder = model.get_decoder()
        self.head = model.get_output_embeddings()
        bias = getattr(model, "final_logits_bias", None)  # Marian and BART add one; Speech2Text has none
        self.register_buffer("bias", bias if bias is not None else torch.zeros(0), persistent=False)
        self.layers = config.decoder_layers
        self.heads = config.decoder_attention_heads
        self.head_dim = config.d_model // config.decoder_attention_heads

    def forward(self, ids: torch.Tensor, hidden: torch.Tensor, emask: torch.Tensor, *past: torch.Tensor):
        if not past:  # zero-length caches of the right rank: the first step fills them
            empty = hidden.new_zeros((hidden.shape[0], self.heads, 0, self.head_dim))
            past = (empty,) * (4 * self.layers)
        out = self.decoder(input_ids=ids, encoder_hidden_states=hidden, encoder_attention_mask=emask,
                           past_key_values=_cache(past, self.layers), use_cache=True)
        logits = self.head(out.last_hidden_state)
        if self.bias.numel():
            logits = logits + self.bias
        cache = out.past_key_values
        flat = []
        for i in range(self.layers):
            flat += [cache.self_attention_cache.layers[i].keys, cache.self_attention_cache.layers[i].values,
                     cache.cross_attention_cache.layers[i].keys, cache.cross_attention_cache.layers[i].values]
        return (logits, *flat)


def _cache(past, layers: int):
    """transformers' encoder-decoder cache holding `past`. Its layers are filled directly: a layer created by
    `update` starts from a 1-D empty tensor, which OpenVINO cannot concatenate with the 4-D keys."""
    from transformers.cache_utils import Cache, DynamicLayer, EncoderDecoderCache

    def layer(keys, values):
        made = DynamicLayer()
        made.lazy_initialization(keys, values)
        made.keys, made.values = keys, values
        return made

    return EncoderDecoderCache(Cache(layers=[layer(past[4 * i], past[4 * i + 1]) for i in range(layers)]),
                               Cache(layers=[layer(past[4 * i + 2], past[4 * i + 3]) for i in range(layers)]))


class TorchParts:
    """The parts run by torch in a precision (bf16: autocast)."""

    def __init__(self, model, speech: bool, precision: str, device: torch.device):
        self.encoder, self.step = EncoderPart(model, speech), DecoderStep(model)
        self.precision, self.device = precision, device

    def encode(self, x, mask):
        with torch.inference_mode(), forward_context(self.precision, self.device):
            return self.encoder(x, mask).float()

    def first(self, ids, hidden, emask):
        return self._step(ids, hidden, emask)

    def next(self, ids, hidden, emask, past):
        return self._step(ids, hidden, emask, *past)

    def _step(self, *args):
        with torch.inference_mode(), forward_context(self.precision, self.device):
            logits, *past = self.step(*args)
        return logits.float(), [p.float() for p in past]


class RecordingParts:
    """Torch fp32 parts that keep the inputs each part receives: int8 calibration data for each IR. The later decoder
    steps are many and carry their caches: a uniform sample of `CALIBRATION_STEP_SAMPLES` of them is kept (reservoir
    sampling with a fixed seed, so that the same items give the same calibration)."""

    def __init__(self, parts: TorchParts):
        self.parts = parts
        self.encoder: list[tuple] = []
        self.first_step: list[tuple] = []
        self.later_steps: list[tuple] = []
        self.steps_seen = 0
        self.random = random.Random(0)

    def encode(self, x, mask):
        self.encoder.append((x.numpy(), mask.numpy()))
        return self.parts.encode(x, mask)

    def first(self, ids, hidden, emask):
        self.first_step.append((ids.numpy(), hidden.numpy(), emask.numpy()))
        return self.parts.first(ids, hidden, emask)

    def next(self, ids, hidden, emask, past):
        sample = (ids.numpy(), hidden.numpy(), emask.numpy(), *(p.numpy() for p in past))
        if len(self.later_steps) < CALIBRATION_STEP_SAMPLES:
            self.later_steps.append(sample)
        else:
            slot = self.random.randrange(self.steps_seen + 1)
            if slot < CALIBRATION_STEP_SAMPLES:
                self.later_steps[slot] = sample
        self.steps_seen += 1
        return self.parts.next(ids, hidden, emask, past)


class OpenVINOParts:
    """The three IRs of an export, compiled on first use in the process that runs them (a compiled model does not
    pickle: each stage worker compiles its own, with its own thread count, on the cores it is pinned to)."""

    FILES = ("encoder.xml", "decoder.xml", "decoder_with_past.xml")

    def __init__(self, folder: Path, precision: str):
        self.folder, self.precision = Path(folder), precision
        self._compiled = None

    def _parts(self):
        if self._compiled is None:
            core, config = openvino_core(), {"INFERENCE_PRECISION_HINT": INFERENCE_PRECISION[self.precision],
                                       "INFERENCE_NUM_THREADS": torch.get_num_threads(),
                                       "ENABLE_CPU_PINNING": False}
            self._compiled = [core.compile_model(str(self.folder / name), "CPU", config) for name in self.FILES]
        return self._compiled

    @staticmethod
    def _run(compiled, *inputs):
        results = compiled([np.ascontiguousarray(t.numpy() if isinstance(t, torch.Tensor) else t) for t in inputs])
        return [torch.from_numpy(np.asarray(results[i])) for i in range(len(compiled.outputs))]

    def encode(self, x, mask):
        return self._run(self._parts()[0], x, mask)[0].float()

    def first(self, ids, hidden, emask):
        logits, *past = self._run(self._parts()[1], ids, hidden, emask)
        return logits.float(), past

    def next(self, ids, hidden, emask, past):
        logits, *new = self._run(self._parts()[2], ids, hidden, emask, *past)
        return logits.float(), new

    def __getstate__(self) -> dict:
        return {"folder": self.folder, "precision": self.precision, "_compiled": None}


# --- decoding --------------------------------------------------------------------------------------------------

def greedy_decode(parts, hidden: torch.Tensor, emask: torch.Tensor, special: SpecialTokens, steps: int,
                  fixed: bool) -> tuple[torch.Tensor, list[int]]:
    """Greedy decoding of a batch: `steps` new tokens exactly when `fixed` (end token suppressed before the last step
    and forced at it), else until every item has emitted its end token or `steps` tokens. Returns the ids (B, n)
    (padding after an item's end) and per item its length, end token included."""
    batch = hidden.shape[0]
    logits, past = parts.first(torch.full((batch, 1), special.start, dtype=torch.long), hidden, emask)
    done = torch.zeros(batch, dtype=torch.bool)
    tokens = []
    for step in range(steps):
        scores = logits[:, -1].clone()
        if special.pad is not None:
            scores[:, special.pad] = -math.inf
        forced = special.eos if fixed and step == steps - 1 else \
            special.forced_first if step == 0 and special.forced_first is not None else None
        if forced is not None:
            scores[:] = -math.inf
            scores[:, forced] = 0.0
        elif fixed:
            scores[:, special.eos] = -math.inf
        token = scores.argmax(-1)
        if not fixed and special.pad is not None:
            token = torch.where(done, torch.full_like(token, special.pad), token)
        tokens.append(token)
        done |= token == special.eos
        if step == steps - 1 or (not fixed and bool(done.all())):
            break
        logits, past = parts.next(token[:, None], hidden, emask, past)
    ids = torch.stack(tokens, dim=1)
    return ids, [_length(row, special.eos) for row in ids.tolist()]


def _length(row: list[int], eos: int) -> int:
    return row.index(eos) + 1 if eos in row else len(row)


def teacher_forced_logits(parts, hidden, emask, special: SpecialTokens, ids: torch.Tensor) -> torch.Tensor:
    """The decoder's logits (B, n, vocab) at each position of `ids` (B, n), given the ids before it."""
    start = torch.full((ids.shape[0], 1), special.start, dtype=torch.long)
    logits, _ = parts.first(torch.cat([start, ids[:, :-1]], dim=1), hidden, emask)
    return logits


def stand_in_length(text: str) -> int:
    """A reference output's length as a tokenizer would roughly count it, + 1 for the end token."""
    return len(hf.stand_in_pieces(text)) + 1


# --- the stage model -------------------------------------------------------------------------------------------

class Seq2SeqModel(StageModel):
    """A generative variant built in a precision: a batch of items in, per item a `Generated` and its handoff."""

    item_type: ClassVar[type]  # the item class its batches hold (Speech or Text)
    speech: ClassVar[bool] = False

    def __init__(self, stage: str, variant: str, model, processor, params: Seq2SeqParams, reference_key: str,
                 precision: str, device: str, handoff: Handoff):
        self.stage, self.variant = stage, variant
        self.model = model.eval()
        for parameter in self.model.parameters():
            parameter.requires_grad_(False)
        self.processor = processor  # tokenizer or processor of a pretrained folder; None with random weights
        self.params = params
        self.reference_key = reference_key
        self.special = SpecialTokens.of(model)
        self.precision, self.runtime, self.handoff = precision, "torch", handoff
        self.device = torch.device(device)
        self._openvino: OpenVINOParts | None = None

    # what each family says
    @abstractmethod
    def encoder_inputs(self, items: list) -> EncoderInputs:
        """The batch as the encoder takes it."""

    def encoder_mask(self, mask: torch.Tensor, hidden_length: int) -> torch.Tensor:
        """The mask of the encoder's hidden states (speech encoders subsample their input)."""
        return mask

    @abstractmethod
    def decode(self, ids: list[list[int]]) -> list[str]:
        """Generated ids (end token included) -> texts, with the real tokenizer."""

    # running
    def parts(self):
        if self.runtime == "openvino":
            return self._openvino
        if self.precision == "int8":
            raise UserError(f"{self.stage} variant {self.variant} in int8 runs on OpenVINO only",
                            f"pass adaptation.{self.stage}.runtime=openvino or adaptation.{self.stage}.precision=fp32")
        return TorchParts(self.model, self.speech, self.precision, self.device)

    def check_items(self, items: list) -> None:
        for item in items:
            if not isinstance(item, self.item_type):
                raise UserError(f"stage {self.stage} takes {self.item_type.__name__} items and was given a "
                                f"{type(item).__name__}", "put a stage that emits them before it in pipeline.stages")

    def fixed_lengths(self, items: list) -> list[int] | None:
        """Random weights: per item its reference length (+ end token, within `longest_output`); None: free
        generation."""
        if self.processor is not None:
            return None
        lengths = []
        for item in items:
            reference = item.sample.references.get(self.reference_key)
            if not isinstance(reference, str):
                raise UserError(f"{item.name} has no reference '{self.reference_key}', which random weights need to "
                                f"fix how many tokens stage {self.stage} generates",
                                f"give every sample of the dataset a '{self.reference_key}' reference, or use "
                                "pretrained weights (weights=<folder>)")
            lengths.append(min(stand_in_length(reference), self.longest_output()))
        return lengths

    def longest_output(self) -> int:
        """The most tokens a generation may make: the generation cap, within the decoder's positions (its start token
        takes one)."""
        config = self.model.config
        positions = getattr(config, "max_target_positions", None) or config.max_position_embeddings
        return min(self.params.max_new_tokens, positions - 1)

    def generate(self, items: list, parts=None) -> tuple[EncoderInputs, torch.Tensor, list[int], list[int] | None]:
        """Encode and decode a batch: its inputs, the generated ids (B, n), per item the generated length, and the
        per-item reference lengths that fixed the batch's length (random weights)."""
        self.check_items(items)
        parts = parts or self.parts()
        inputs = self.encoder_inputs(items)
        hidden = parts.encode(inputs.x, inputs.mask)
        emask = self.encoder_mask(inputs.mask, hidden.shape[1])
        references = self.fixed_lengths(items)
        steps = max(references) if references else self.longest_output()
        ids, lengths = greedy_decode(parts, hidden, emask, self.special, steps, fixed=references is not None)
        return inputs, ids, lengths, references

    def __call__(self, items: list) -> list[ItemResult]:
        if not items:
            return []
        inputs, ids, lengths, references = self.generate(items)
        rows = [row[:n] for row, n in zip(ids.tolist(), lengths)]
        texts = self.decode(rows) if self.processor is not None else [None] * len(items)
        results = []
        for i, item in enumerate(items):
            output = Generated(tuple(rows[i]), len(rows[i]), inputs.lengths[i],
                               max(references) if references else None, references[i] if references else None,
                               texts[i])
            results.append(ItemResult(output, self.handoffs(item, output)))
        return results

    def handoffs(self, item, output: Generated) -> list:
        if self.handoff == "reference":
            reference = item.sample.references.get(self.reference_key)
            if isinstance(reference, str):
                return [Text(reference, item.sample)]
        if output.text is not None:
            return [Text(output.text, item.sample)]
        # No tokenizer: a text of as many stand-in pieces as generated tokens (the end token aside), so that the
        # next stage's input is as long as what this one made. Its words are no language.
        return [Text(" ".join(f"t{token}" for token in output.token_ids[:-1]), item.sample)]

    def fidelity(self, items: list) -> dict[str, float]:
        twin = self.fp32_twin()
        agreements, cosines = [], []
        for start in range(0, len(items), FIDELITY_BATCH_ITEMS):
            batch = items[start:start + FIDELITY_BATCH_ITEMS]
            _, low_ids, low_lengths, _ = self.generate(batch)
            inputs, ref_ids, ref_lengths, _ = twin.generate(batch)
            for i in range(len(batch)):
                low, ref = low_ids[i, :low_lengths[i]], ref_ids[i, :ref_lengths[i]]
                shared = min(len(low), len(ref))
                agreements.append(float((low[:shared] == ref[:shared]).sum()) / max(len(low), len(ref)))
            low_logits = self._teacher_forced(self.parts(), inputs, ref_ids)
            ref_logits = self._teacher_forced(twin.parts(), inputs, ref_ids)
            for i, n in enumerate(ref_lengths):
                cosines.append(float(torch.nn.functional.cosine_similarity(
                    low_logits[i, :n].flatten().double(), ref_logits[i, :n].flatten().double(), dim=0)))
        return {"token_agreement": float(np.mean(agreements)), "logit_cosine_mean": float(np.mean(cosines)),
                "items": float(len(items))}

    def _teacher_forced(self, parts, inputs: EncoderInputs, ids: torch.Tensor) -> torch.Tensor:
        hidden = parts.encode(inputs.x, inputs.mask)
        return teacher_forced_logits(parts, hidden, self.encoder_mask(inputs.mask, hidden.shape[1]), self.special,
                                     ids)

    def describe(self) -> dict[str, float]:
        config = self.model.config
        return {"params": float(sum(p.numel() for p in self.model.parameters())),
                "encoder_layers": float(config.encoder_layers), "decoder_layers": float(config.decoder_layers),
                "d_model": float(config.d_model), "vocab_size": float(config.vocab_size)}

    # OpenVINO
    def use_openvino(self, cache_dir: Path, items: list):
        """Run on OpenVINO from now on. The fp32 IRs are exported once per weights (bf16 is a compile-time hint on
        them); int8 quantises them (calibrated on `items`) into an entry of its own. The returned `Export` counts
        the fp32 conversion too when it was made for this int8 export."""
        import dataclasses

        from sustainable_ipa.models.openvino_runtime import (ExportKey, export, inputs_digest, library_versions,
                                                             weights_digest)

        versions, weights = tuple(sorted(library_versions().items())), weights_digest(self.model)
        made = export(ExportKey(self.variant, "fp32", weights, "", 0, versions), cache_dir, self.export_ir,
                      main_file=OpenVINOParts.FILES[-1])
        if self.precision == "int8":
            calibration = self.calibration(items)
            digest = inputs_digest([array for sample in calibration.encoder for array in sample])
            fp32 = made
            made = export(ExportKey(self.variant, "int8", weights, digest, calibration.items, versions), cache_dir,
                          lambda folder: quantize_ir(fp32.xml.parent, folder, calibration),
                          main_file=OpenVINOParts.FILES[-1])
            if not made.cached:
                made = dataclasses.replace(made, wall_s=made.wall_s + fp32.wall_s, cpu_s=made.cpu_s + fp32.cpu_s)
        self.runtime, self._openvino = "openvino", OpenVINOParts(made.xml.parent, self.precision)
        return made

    def calibration(self, items: list) -> "Calibration":
        """The inputs each IR receives while torch fp32 generates for (at most `calibration_items` of) `items`."""
        chosen = items[:self.params.calibration_items]
        recorder = RecordingParts(TorchParts(self.model, self.speech, "fp32", self.device))
        for start in range(0, len(chosen), CALIBRATION_BATCH_ITEMS):
            self.generate(chosen[start:start + CALIBRATION_BATCH_ITEMS], parts=recorder)
        return Calibration(recorder.encoder, recorder.first_step, recorder.later_steps, len(chosen))

    def export_ir(self, folder: Path) -> None:
        """Writes the three fp32 IRs into `folder` (`openvino_runtime.export` sends the libraries' output to its log)."""
        import openvino as ov

        converted = convert_parts(self.model, self.speech, self.example_inputs(), self.encoder_mask)
        for model, name in zip(converted, OpenVINOParts.FILES):
            ov.save_model(model, folder / name, compress_to_fp16=False)

    def example_inputs(self) -> EncoderInputs:
        """A batch of two of a realistic shape to trace the parts with (the second item padded): no dimension of 1
        or 0, which torch.export would take for a constant."""
        config = self.model.config
        lengths = [33, 21]  # 4k + 1: the speech encoder's two stride-2 convolutions divide them exactly
        mask = torch.zeros((2, lengths[0]), dtype=torch.long)
        for i, n in enumerate(lengths):
            mask[i, :n] = 1
        if self.speech:
            x = torch.randn((2, lengths[0], config.input_feat_per_channel * config.input_channels))
        else:
            x = torch.randint(4, config.vocab_size, (2, lengths[0]))
        return EncoderInputs(x, mask, lengths)

    def fp32_twin(self) -> "Seq2SeqModel":
        twin = super().fp32_twin()
        twin._openvino = None
        return twin


@dataclass(frozen=True)
class Calibration:
    encoder: list[tuple]
    first_step: list[tuple]
    later_steps: list[tuple]
    items: int

    def per_part(self) -> list[list[tuple]]:
        return [self.encoder, self.first_step, self.later_steps or self.first_step]


def quantize_ir(fp32_folder: Path, folder: Path, calibration: Calibration) -> None:
    """NNCF's int8 post-training quantisation of each fp32 IR in `fp32_folder`, calibrated on the inputs that IR
    received (`calibration`), written into `folder`."""
    import nncf
    import openvino as ov

    core = openvino_core()
    for name, samples in zip(OpenVINOParts.FILES, calibration.per_part()):
        quantized = nncf.quantize(core.read_model(fp32_folder / name), nncf.Dataset(samples),
                                  subset_size=len(samples), model_type=nncf.ModelType.TRANSFORMER)
        ov.save_model(quantized, folder / name, compress_to_fp16=False)


def convert_parts(model, speech: bool, example: EncoderInputs, encoder_mask) -> list:
    """The encoder, the decoder's first step and its later steps as OpenVINO models, with dynamic batch, input,
    target and cache lengths. `encoder_mask(mask, hidden_length)` is the stage model's."""
    import openvino as ov
    from torch.export import Dim, export

    dynamic = Dim.DYNAMIC
    encoder, step = EncoderPart(model, speech).eval(), DecoderStep(model).eval()
    with torch.no_grad():
        hidden = encoder(example.x, example.mask)
        emask = encoder_mask(example.mask, hidden.shape[1])
        ids = torch.full((hidden.shape[0], 2), model.config.decoder_start_token_id, dtype=torch.long)
        _, *past = step(ids, hidden, emask)
        programs = [
            export(encoder, (example.x, example.mask), dynamic_shapes=(
                {0: dynamic, 1: dynamic}, {0: dynamic, 1: dynamic})),
            export(step, (ids, hidden, emask), dynamic_shapes=(
                {0: dynamic, 1: dynamic}, {0: dynamic, 1: dynamic}, {0: dynamic, 1: dynamic})),
            export(step, (ids[:, :1], hidden, emask, *past), dynamic_shapes=(
                {0: dynamic}, {0: dynamic, 1: dynamic}, {0: dynamic, 1: dynamic},
                tuple({0: dynamic, 2: dynamic} for _ in past))),
        ]
    return [ov.convert_model(program) for program in programs]


def subsampled_lengths(lengths: torch.Tensor, convolutions: int) -> torch.Tensor:
    """Frames left after `convolutions` stride-2 convolutions of kernel k and padding k // 2 (Speech2Text's
    subsampler): each maps n frames to (n - 1) // 2 + 1."""
    for _ in range(convolutions):
        lengths = torch.div(lengths - 1, 2, rounding_mode="floor") + 1
    return lengths


# --- the family ------------------------------------------------------------------------------------------------

class Seq2SeqFamily(ModelFamily):
    """A transformers encoder-decoder family: built offline from its config class with the catalogue's
    hyper-parameters (random weights), or from a pretrained folder with its tokenizer or processor."""

    runtimes = ("torch", "openvino")
    Model = hf.HubModel
    config_class: ClassVar[str]  # a transformers config class name, e.g. "MarianConfig"
    model_class: ClassVar[str]  # e.g. "MarianMTModel"
    stage_model: ClassVar[type[Seq2SeqModel]]
    reference_key: ClassVar[str]  # the reference output in `Sample.references`
    architecture_keys: ClassVar[tuple[str, ...]] = ("d_model", "encoder_layers", "decoder_layers", "vocab_size")

    def weights_source(self, variant: str, model: hf.HubModel) -> WeightsSource:
        return hf.weights_source(model)

    def check(self, variant: str, model: hf.HubModel) -> None:
        self._config(variant, model)

    def _config(self, variant: str, model: hf.HubModel):
        import transformers

        config = hf.build_config(getattr(transformers, self.config_class), model, variant, self.stage)
        check_special_tokens(config, self.stage, variant)
        return config

    def build(self, variant: str, model: hf.HubModel, weights: Path | None, precision: str, device: str,
              handoff: Handoff) -> Seq2SeqModel:
        import transformers

        config = self._config(variant, model)
        model_class = getattr(transformers, self.model_class)
        if weights is None:
            network, processor = model_class(config), None
        else:
            folder = Path(weights)
            hf.check_architecture(folder, config, self.stage, variant, self.architecture_keys)
            network = load_pretrained(model_class, folder, self.stage, variant)
            processor = self.load_processor(folder, variant)
        return self.stage_model(self.stage, variant, network, processor, self.params, self.reference_key, precision,
                                device, handoff)

    @abstractmethod
    def load_processor(self, folder: Path, variant: str) -> Any:
        """The tokenizer or processor saved beside the weights; one UserError when the folder has none."""

    def reference_handoffs(self, item) -> list | None:
        reference = item.sample.references.get(self.reference_key)
        return [Text(reference, item.sample)] if isinstance(reference, str) else None

    @abstractmethod
    def score(self, hypotheses: list[str], references: list[str]) -> float:
        """The family's metric over a corpus, a fraction in [0, 1]."""

    def accuracy(self, model: Seq2SeqModel, items: list, dataset) -> dict[str, float]:
        if model.processor is None:  # random weights: nothing meaningful to score
            return {}
        scored = [item for item in items if isinstance(item.sample.references.get(self.reference_key), str)]
        if not scored:
            return {}
        hypotheses = []
        for start in range(0, len(scored), FIDELITY_BATCH_ITEMS):
            hypotheses += [result.output.text for result in model(scored[start:start + FIDELITY_BATCH_ITEMS])]
        return {self.metric: self.score(hypotheses, [item.sample.references[self.reference_key] for item in scored])}


def check_special_tokens(config, stage: str, variant: str) -> None:
    """Refuse special token ids outside the vocabulary (a config class's defaults belong to its default vocabulary:
    MarianConfig's pad_token_id is 58100)."""
    outside = [f"{name}={getattr(config, name)}" for name in ("decoder_start_token_id", "eos_token_id", "pad_token_id")
               if isinstance(getattr(config, name, None), int) and not 0 <= getattr(config, name) < config.vocab_size]
    if outside:
        raise UserError(f"pipeline.variants.{stage}.{variant}.model.config sets {', '.join(outside)}, outside its "
                        f"vocab_size {config.vocab_size}", "set the special token ids of the published config")


def load_pretrained(model_class, folder: Path, stage: str, variant: str):
    try:
        return model_class.from_pretrained(folder, local_files_only=True)
    except (OSError, ValueError, RuntimeError) as err:
        raise UserError(f"the weights in {folder} cannot be loaded as {model_class.__name__} ({type(err).__name__}: "
                        f"{str(err).splitlines()[0] if str(err) else ''})",
                        f"put {variant}'s own weights there (save_pretrained), or pass weights=random") from None


def missing_tokenizer(folder: Path, stage: str, variant: str, what: str, err: Exception) -> UserError:
    return UserError(f"{folder} has the weights of {stage} variant {variant} but no {what} "
                     f"({type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''})",
                     f"save the {what} beside the weights (its save_pretrained into the same folder, or "
                     "`hf download <id> --local-dir <folder>`), or pass weights=random")


# --- text families (translation, summarisation) -------------------------------------------------------------------

# A tokenizer's own files: a fast tokenizer's, a byte-level BPE's (BART) or sentencepiece models (Marian).
TOKENIZER_FILES = ("tokenizer.json", "vocab.json", "source.spm", "spiece.model", "sentencepiece.bpe.model")


class TextSeq2SeqModel(Seq2SeqModel):
    """Text in: the real tokenizer, or stand-in ids with the special tokens its tokenizer adds."""

    item_type = Text
    prepend_bos: ClassVar[bool] = False  # BART's tokenizer starts a text with <s>; Marian's does not

    def encoder_inputs(self, items: list) -> EncoderInputs:
        texts = [item.text for item in items]
        limit = self.params.max_input_tokens
        if self.processor is not None:
            encoded = self.processor(texts, padding=True, truncation=True, max_length=limit, return_tensors="pt")
            mask = encoded["attention_mask"].long()
            return EncoderInputs(encoded["input_ids"].long(), mask, mask.sum(dim=1).tolist())
        config = self.model.config
        head = [config.bos_token_id] if self.prepend_bos and config.bos_token_id is not None else []
        rows = [head + hf.stand_in_token_ids(text, config.vocab_size)[:limit - len(head) - 1] + [self.special.eos]
                for text in texts]
        return _padded(rows, config.pad_token_id)

    def decode(self, ids: list[list[int]]) -> list[str]:
        return [text.strip() for text in self.processor.batch_decode(ids, skip_special_tokens=True)]


def _padded(rows: list[list[int]], pad: int) -> EncoderInputs:
    width = max(len(row) for row in rows)
    x = torch.full((len(rows), width), pad, dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    for i, row in enumerate(rows):
        x[i, :len(row)] = torch.tensor(row)
        mask[i, :len(row)] = 1
    return EncoderInputs(x, mask, [len(row) for row in rows])


class TextSeq2SeqFamily(Seq2SeqFamily):
    consumes = "text"
    emits = "text"

    def load_processor(self, folder: Path, variant: str):
        from transformers import AutoTokenizer

        try:
            if not any((folder / name).is_file() for name in TOKENIZER_FILES):
                # transformers 5 builds an empty tokenizer of the model's type from a folder without its files
                raise FileNotFoundError(f"none of {', '.join(TOKENIZER_FILES)}")
            return AutoTokenizer.from_pretrained(folder, local_files_only=True)
        except Exception as err:  # transformers raises OSError, ValueError or TypeError for a folder without them
            raise missing_tokenizer(folder, self.stage, variant, "tokenizer files", err) from None
