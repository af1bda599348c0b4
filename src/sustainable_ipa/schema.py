"""Every setting of every config group, declared once: its type, its range, its choices.

The YAML files under `conf/` hold the values; this module holds what a value may be. `check_settings(cfg)` runs
once after Hydra composes, for every entry point, before anything is loaded, measured or recorded, and turns the
first violation into one line naming the setting, the value, what is allowed and the fix. A setting added here is
checked without a line of validation code; a setting missing here is refused (`extra="forbid"`), so nothing is
read unchecked.

The types below carry their own description, which is the "allowed" part of the message. Models are strict: YAML
and Hydra's override grammar already give ints, floats and bools as such, so `true` is no count and `"abc"` no
price; a float field takes an int (`pue=1`). Numbers and counts are finite and at most 1e9 unless a type says
otherwise; paths that must be files or folders refuse the other.
"""

from __future__ import annotations

import math
import os
import re
from pathlib import Path
from types import UnionType
from typing import Annotated, Any, Literal, Optional, Union, get_args, get_origin, get_type_hints

from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException
from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field, ValidationError
from pydantic.fields import FieldInfo

from sustainable_ipa.errors import UserError

MISSING = "???"  # OmegaConf's mark of a mandatory value nobody gave


def _writable(path: str) -> str:
    """A file or folder this process can create or overwrite: it exists and is writable, or the nearest existing
    folder above it is."""
    target = Path(path).expanduser()
    probe = target
    while not probe.exists():
        if probe.parent == probe:
            break
        probe = probe.parent
    if probe != target and not probe.is_dir():
        raise ValueError(f"{probe} is a file, so nothing can be created under it")
    if not os.access(probe, os.W_OK | (os.X_OK if probe.is_dir() else 0)):
        raise ValueError(f"{probe} is not writable by this user")
    return path


def _not_a_folder(path: str) -> str:
    if Path(path).expanduser().is_dir():
        raise ValueError(f"{path} is a folder, and a file goes here")
    return path


def _not_a_file(path: str) -> str:
    """A folder to write in: an existing file there would only fail at the first write, after the work."""
    if Path(path).expanduser().exists() and not Path(path).expanduser().is_dir():
        raise ValueError(f"{path} is a file, and a folder goes here")
    return path


def _local_writable(uri: str) -> str:
    """Local artifact folders are checked; `s3://…`, `gs://…`, `mlflow-artifacts:…` are the store's business."""
    if "://" not in uri or uri.startswith("file://"):
        _not_a_file(_writable(uri.removeprefix("file://")))
    return uri


def _name(value):
    """A name typed as a number on the command line (`tracking.experiment=2026`) is still a name."""
    return str(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else value


def _described(kind, description: str, **constraints):
    return Annotated[kind, Field(description=description, **constraints)]


# Counts stay far below what a slice, a numpy array or a C int takes (sys.maxsize, 2**63): beyond, a run fails late.
Count = _described(int, "an integer in [1, 1e9]", ge=1, le=10**9)
NonNegativeInt = _described(int, "an integer in [0, 1e9]", ge=0, le=10**9)
Seed = _described(int, "an integer in [0, 2**32) (numpy's seed range)", ge=0, lt=2**32)
# Finite settings stay far below float's limit (1.8e308), so that no product of them (energy × PUE × intensity,
# price × core-hours, rate × span) overflows to inf.
LARGEST = 1e9
Positive = _described(float, "a number > 0 and ≤ 1e9", gt=0, le=LARGEST)
NonNegative = _described(float, "a number in [0, 1e9]", ge=0, le=LARGEST)
Share = _described(float, "a share in (0, 1]", gt=0, le=1)
Probability = _described(float, "a number in [0, 1]", ge=0, le=1)
AtLeastOne = _described(float, "a number in [1, 1e9]", ge=1, le=LARGEST)
Pue = _described(float, "a PUE in [1, 10] (data centres report 1.1 to 2)", ge=1, le=10)
Name = Annotated[str, BeforeValidator(_name), Field(description="a non-empty name", min_length=1)]
WritablePath = Annotated[str, AfterValidator(_writable), Field(description="a path this user can write")]
WritableFile = Annotated[str, AfterValidator(_writable), AfterValidator(_not_a_folder),
                         Field(description="a file path this user can write")]
WritableFolder = Annotated[str, AfterValidator(_writable), AfterValidator(_not_a_file),
                           Field(description="a folder this user can write")]
# Inputs: the dataset checks that they exist as it loads; here a file given for a folder, or the reverse, is refused.
FilePath = Annotated[str, AfterValidator(_not_a_folder), Field(description="a file path")]
FolderPath = Annotated[str, AfterValidator(_not_a_file), Field(description="a folder path")]
WritableLocation = Annotated[str, AfterValidator(_local_writable),
                             Field(description="a writable folder or an artifact store URI")]
Switch = _described(bool, "true or false")


class Settings(BaseModel):
    model_config = ConfigDict(strict=True, extra="forbid", allow_inf_nan=False, populate_by_name=True)


# pipeline/ -------------------------------------------------------------------------------------------------------
class PrecisionChange(Settings):
    """A published change of a variant's accuracy in a precision against fp32, with where it was published."""

    points: _described(float, "a finite change in percentage points (negative: a loss)", ge=-100, le=100)
    # published: measured for this model in this precision; nearest_published: none exists, so the figure of the
    # nearest model that has one (named in `source`)
    basis: Literal["published", "nearest_published"]
    source: Name


class Variant(Settings):
    # the published accuracy in %, higher is better (a WER is written as 100 - WER), and where it was published
    reference_accuracy: _described(float, "a percentage in [0, 100]", ge=0, le=100)
    source: _described(str, "where the reference accuracy was published (a paper, a model card, IPA's table)",
                       min_length=1)
    # accuracy in a precision = reference_accuracy + points (metrics/accuracy.py); fp32 is the reference itself
    precision_change: dict[Literal["bf16", "int8"], PrecisionChange] = Field(default_factory=dict)
    # what the stage's family builds for this variant (a hub id and its architecture's hyper-parameters); declared
    # and checked by the family (`ModelFamily.Model`, families/)
    model: dict[str, Any] = Field(default_factory=dict)


class StageDefinition(Settings):
    family: Name  # a key of families.BUILT_IN, or package.module:Class
    params: dict[str, Any] = Field(default_factory=dict)  # declared and checked by the family (`ModelFamily.Params`)


class Pipeline(Settings):
    """`name`, the `stages` in order, each stage's definition under its own name, the variant catalogue per stage."""

    model_config = ConfigDict(extra="allow")
    __pydantic_extra__: dict[str, StageDefinition]
    name: Name
    stages: Annotated[list[Name], Field(min_length=1, description="a non-empty list of stage names")]
    sla_s: Positive  # the end-to-end latency SLA IPA gives this pipeline (trial.sla_s follows it)
    variants: dict[str, Annotated[dict[str, Variant], Field(min_length=1)]]


# adaptation/ -----------------------------------------------------------------------------------------------------
PRECISIONS = ("fp32", "bf16", "int8")
RUNTIMES = ("torch", "openvino")


class StageChoice(Settings):
    variant: Name
    batch_size: Count
    threads: Count
    replicas: Count
    precision: Literal[PRECISIONS]
    runtime: Literal[RUNTIMES]


class Adaptation(Settings):
    """`name`, then one StageChoice per stage of the pipeline (which stages: checked against pipeline.stages)."""

    model_config = ConfigDict(extra="allow")
    __pydantic_extra__: dict[str, StageChoice]
    name: Name


# hardware/ -------------------------------------------------------------------------------------------------------
class EstimateConstants(Settings):
    active_w_per_core: NonNegative
    idle_w: NonNegative


class CarbonRegion(Settings):
    country_iso_code: Annotated[str, Field(pattern=r"^[A-Za-z]{3}$", description="a 3-letter ISO country code")]
    region: Optional[Name]


class Hardware(Settings):
    name: Name
    device: Literal["cpu", "cuda"]
    cores: Optional[Count]
    price_usd_per_core_hour: NonNegative
    estimate: EstimateConstants
    pue: Pue
    carbon: CarbonRegion
    allow_emulated: Switch  # run a precision this CPU lacks natively (emulated, slower); tagged emulated=true
    gpu_index: Optional[NonNegativeInt] = None
    price_usd_per_gpu_hour: Optional[NonNegative] = None


# trial/ ----------------------------------------------------------------------------------------------------------
class Trial(Settings):
    seed: Seed
    repetitions: Count
    warmup: NonNegativeInt
    requests: Count
    load: Literal["offline", "poisson"]
    rate_rps: Positive
    sla_s: Positive


# dataset/ --------------------------------------------------------------------------------------------------------
class DatasetBase(Settings):
    target: Name = Field(alias="_target_")


class SampleDataset(DatasetBase):
    name: Literal["sample"]
    root: Optional[FolderPath]
    annotations: FilePath


class CocoDataset(DatasetBase):
    name: Literal["coco"]
    root: FolderPath
    annotations: FilePath
    category: Name
    n_images: Count
    seed: Seed


class VideoDataset(DatasetBase):
    name: Literal["video"]
    path: FilePath
    max_frames: Count
    stride: Count


REFERENCE_KEYS = ("transcript", "question", "answers", "sentiment", "language", "translation", "summary")
References = _described(list[Literal[REFERENCE_KEYS]], f"a list of reference keys ({', '.join(REFERENCE_KEYS)})")


class SpeechManifestDataset(DatasetBase):
    """Clips (16 kHz mono WAV) listed in a JSON manifest with their references (data/manifests.py)."""

    manifest: FilePath
    references: References  # fields every entry must have


class TextManifestDataset(DatasetBase):
    """Texts listed in a JSON manifest with their references (data/manifests.py)."""

    manifest: FilePath
    references: References  # fields every entry must have
    answers_in: Annotated[list[Literal[("text", *REFERENCE_KEYS)]],
                          Field(min_length=1, description="a non-empty list of 'text' and reference keys")]


class AudioQaSampleDataset(SpeechManifestDataset):
    name: Literal["audio-qa-sample"]


class AudioSentSampleDataset(SpeechManifestDataset):
    name: Literal["audio-sent-sample"]


class SumQaSampleDataset(TextManifestDataset):
    name: Literal["sum-qa-sample"]


class NlpSampleDataset(TextManifestDataset):
    name: Literal["nlp-sample"]


Dataset = Annotated[Union[SampleDataset, CocoDataset, VideoDataset, AudioQaSampleDataset, AudioSentSampleDataset,
                          SumQaSampleDataset, NlpSampleDataset], Field(discriminator="name")]
DATASET_NAMES = tuple(get_args(m.model_fields["name"].annotation)[0] for m in get_args(get_args(Dataset)[0]))


# tracking/ -------------------------------------------------------------------------------------------------------
class Tracking(Settings):
    uri: Name  # its form is checked by the store, which can say what is wrong with a URL
    artifact_root: WritableLocation
    experiment: Name
    # a tracking server that stops answering: MLflow's REST client retries (its own limit is 10), each call waits
    # server_timeout_s, then the run ends with a local copy of its figures in local_copy_dir (tracking/local_copy.py)
    server_retries: _described(int, "an integer in [0, 10] (MLflow's limit)", ge=0, le=10)
    server_timeout_s: Count
    local_copy_dir: WritableFolder


# energy/ ---------------------------------------------------------------------------------------------------------
METERS = ("auto", "rapl", "pyrapl", "nvml", "codecarbon", "estimate")
POWER_MODELS = ("boavizta", "ccf", "constants")  # energy/power_reference.py


class Energy(Settings):
    meter: Literal[METERS]
    fallback: Literal["estimate", "error"]
    rapl_root: Name
    gpu_indices: list[NonNegativeInt]
    poll_interval_s: Positive
    idle_s: NonNegative
    idle_cache_s: NonNegative
    idle_cache: WritableFile
    carbon_intensity_g_per_kwh: Optional[NonNegative]
    lock_path: WritableFile
    lock_wait_s: NonNegative
    compare: Literal["none", "codecarbon"]
    power_model: Literal[POWER_MODELS]
    calibration: WritableFile
    calibration_dwell_s: Positive


# search/ and profiling/ ------------------------------------------------------------------------------------------
SAMPLERS = ("tpe", "nsga2", "gp", "random", "bruteforce")
OBJECTIVES = ("accuracy", "energy_per_request", "cost", "cost_usd", "latency_p99", "emissions", "throughput")


def _unique(values: list) -> list:
    if len(set(values)) != len(values):
        raise ValueError("each value may be listed once")
    return values


class StageSpace(Settings):
    variants: Annotated[list[Name], Field(min_length=1)]
    batch_size: Annotated[list[Count], Field(min_length=1)]
    threads: Annotated[list[Count], Field(min_length=1)]
    replicas: Annotated[list[Count], Field(min_length=1)]
    # searched as pairs: those a run refuses, and precisions the CPU lacks, are left out (search/space.py)
    precision: Annotated[list[Literal[PRECISIONS]], Field(min_length=1, description="a non-empty list of distinct "
                                                          f"precisions among {', '.join(PRECISIONS)}"),
                         AfterValidator(_unique)]
    runtime: Annotated[list[Literal[RUNTIMES]], Field(min_length=1, description="a non-empty list of distinct "
                                                      f"runtimes among {', '.join(RUNTIMES)}"),
                       AfterValidator(_unique)]


class StorageProxy(Settings):
    host: Name  # the address the proxy listens on: 127.0.0.1, or 0.0.0.0 for other machines
    port: Annotated[int, Field(description="a TCP port in [1, 65535]", ge=1, le=65535)]


class Search(Settings):
    evaluator: Literal["profile", "run"]
    n_trials: Count
    sampler: Literal[SAMPLERS]
    seed: Seed
    objectives: Annotated[list[Literal[OBJECTIVES]], Field(min_length=1, description="a non-empty list of distinct "
                                                         f"objectives among {', '.join(OBJECTIVES)}"),
                          AfterValidator(_unique)]
    storage: Name  # its form is checked where the storage opens, which names the driver or the fix
    study_name: Name
    heartbeat_s: Count
    storage_timeout_s: Positive  # how long opening search.storage waits for its server or proxy (each proxy call too)
    proxy: StorageProxy  # python src/storage_proxy.py: Optuna's gRPC proxy in front of search.storage
    load_rps: Positive
    space: dict[str, StageSpace]


class Profiling(Settings):
    repeats: Count
    min_repeats: Count
    tolerance: NonNegative
    timed_batch_sizes: NonNegativeInt
    batch_fit: Literal["linear", "quadratic"]
    budget_s: NonNegative
    lazy: Switch
    import_from: Optional[FilePath]  # or runs:/<run id>/profiles.csv
    export_to: Optional[WritableFile]
    refresh: Switch
    cache_dir: WritableFolder  # checked here: a file in its place would fail only after profiling
    retries: NonNegativeInt
    max_others_cpu_share: Share
    max_steal_share: Share
    max_p90_over_p50: AtLeastOne


# report/ ---------------------------------------------------------------------------------------------------------
class Report(Settings):
    experiment: Optional[Name]
    sweep_id: Optional[Name]
    study: Optional[Name]
    out_dir: WritableFolder
    request_rate_rps: Positive
    regions: Annotated[list[Name], Field(min_length=1)]


# adapt/ ----------------------------------------------------------------------------------------------------------
class DeferrableJob(Settings):
    duration_s: Positive
    window_s: Positive


def _time_zone(name: str) -> str:
    from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(f"{name!r} is no IANA time zone") from None
    return name


def _moment(value):
    """adapt.start: seconds after the load trace's first row, or an ISO 8601 time."""
    from datetime import datetime

    if isinstance(value, str):
        try:
            datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
        except ValueError:
            raise ValueError("seconds ≥ 0 from the load trace's first row, or an ISO 8601 time") from None
    return value


TimeZone = Annotated[str, AfterValidator(_time_zone), Field(description="an IANA time zone (UTC, Europe/Berlin)")]
Moment = Annotated[Union[NonNegative, str], AfterValidator(_moment),
                   Field(description="seconds ≥ 0 from the load trace's first row, or an ISO 8601 time")]


class Forecast(Settings):
    window: Count  # intervals of history the headroom quantile and the learned models look at
    quantile: Probability  # headroom: the quantile of that window planned for
    level: Optional[_described(int, "an integer in [50, 99]", ge=50, le=99)]  # ets/arima: plan for the upper bound


class Adapt(Settings):
    load: Name    # steady | bursty | diurnal | a CSV path or IPA's raw workload file (the trace reader names them)
    carbon: Name  # flat | diurnal | a CSV path
    duration_s: Positive
    step_s: Positive
    trace_tz: TimeZone  # the zone of a trace's naive timestamps
    start: Optional[Moment]  # where the replay starts in a trace file (null: its first row)
    fill: Literal["error", "hold", "repeat"]  # a trace that does not cover the replayed span
    load_scale: Positive  # every load multiplied by this (IPA's damping factor 8: 0.125)
    plan_for: Literal["mean", "peak"]  # which aggregate of an interval's load the decision plans for
    predictor: Literal["last", "headroom", "ets", "arima"]  # the load the next interval is planned for
    forecast: Forecast
    mean_rps: Positive
    max_cores: Count
    accuracy: Literal["product", "sum"]
    alpha: NonNegative   # a negative weight would reward cores or power
    beta: NonNegative
    delta_energy: NonNegative
    delta_carbon: NonNegative
    power_budget_w: Optional[Positive]
    carbon_budget_g_per_h: Optional[Positive]
    switch_cost: Literal["none", "measured"]  # measured: bring-ups charged and weighed (adapt/switching.py)
    job: DeferrableJob
    mode: Literal["simulate", "live"]  # live: the real pipeline serves the trace (adapt/live.py)
    speedup: Positive  # live: trace seconds per real second (an interval lasts step_s / speedup)
    live_intervals: Optional[Count]  # live: the first this many intervals of the trace (null: all)
    live_policies: Annotated[list[Literal["ipa", "energy", "carbon"]], Field(min_length=1)]


# the whole config ------------------------------------------------------------------------------------------------
class Config(Settings):
    pipeline: Pipeline
    adaptation: Adaptation
    hardware: Hardware
    trial: Trial
    dataset: Dataset
    tracking: Tracking
    energy: Energy
    search: Search
    profiling: Profiling
    report: Report
    adapt: Adapt
    weights: Name  # auto | pretrained | random | a folder: models/weights.py names the choices
    weights_dir: Name
    export_dir: WritableFolder  # exported models (OpenVINO IR), one folder per key of what they depend on


def check_settings(cfg: DictConfig) -> Config:
    """The composed config, typed; the first setting that is missing or not allowed raises one UserError."""
    try:
        values = OmegaConf.to_container(cfg, resolve=True, throw_on_missing=False)
    except OmegaConfBaseException as err:  # an interpolation that cannot resolve (`${oc.env:…}` without a default)
        key = _unresolvable(cfg) or getattr(err, "full_key", None) or "a setting"
        reason = str(err).splitlines()[0]  # OmegaConf appends the key and the node's type on lines of their own
        raise UserError(f"{key} cannot be resolved: {reason}", f"pass {key}=… explicitly") from None
    return check_values(values)


_REFERENCE = re.compile(r"^\$\{[\w.]+\}$")  # `${trial.rate_rps}`: a value taken from another setting


def _unresolvable(cfg: DictConfig) -> str | None:
    """The setting whose own interpolation fails, not one that only refers to it (`search.load_rps` is
    `${trial.rate_rps}`; the user set `trial.rate_rps`)."""
    raw = OmegaConf.to_container(cfg, resolve=False)
    for key, value in _leaves(raw):
        if isinstance(value, str) and "${" in value and not _REFERENCE.match(value):
            try:
                OmegaConf.select(cfg, key, throw_on_resolution_failure=True)
            except OmegaConfBaseException:
                return key
    return None


def _leaves(node, prefix: str = ""):
    if isinstance(node, dict):
        for key, value in node.items():
            yield from _leaves(value, f"{prefix}{key}.")
    else:
        yield prefix[:-1], node


def check_values(values: dict) -> Config:
    """The plain values of a composed config (resolved), typed; or one UserError for the first bad setting."""
    missing = _first_missing(values)
    if missing:
        raise UserError(f"{missing} is not set", f"pass {missing}=…")
    try:
        return Config.model_validate(values)
    except ValidationError as err:
        raise _one_line(err.errors()[0]) from None


def _first_missing(node, prefix: str = "") -> str | None:
    if isinstance(node, dict):
        items = node.items()
    elif isinstance(node, list):
        items = enumerate(node)
    else:
        return prefix[:-1] if node == MISSING else None
    for key, value in items:
        found = _first_missing(value, f"{prefix}{key}.")
        if found:
            return found
    return None


def _one_line(error: dict) -> UserError:
    path = setting_path(error["loc"])
    allowed = _allowed(error)
    if error["type"] == "extra_forbidden":
        return UserError(f"{path} is not a setting of this project",
                         "check its spelling against the files under conf/ (a '+' override adds a key nobody reads)")
    if error["type"] == "union_tag_invalid":  # the dataset's `name` picks its model
        ctx = error["ctx"]
        return UserError(f"{path}.{ctx['discriminator'].strip(chr(39))}={shown(ctx['tag'])} is not a kind of {path} this "
                         f"project reads", f"choose one of {ctx['expected_tags']} (files in conf/{path}/)")
    if error["type"] == "missing":
        return UserError(f"{path} is not set", f"pass {path}=<{allowed}>")
    reason = error["msg"].removeprefix("Value error, ")
    setting = path.partition("[")[0]  # Hydra overrides a whole list, not one item
    fix = f"pass {setting}=<{allowed}>" if setting == path else f"pass {setting}=[…] with each item {allowed}"
    return UserError(f"{path}={shown(error['input'])} is not allowed: {reason[0].lower()}{reason[1:]}", fix)


def setting_path(loc: tuple) -> str:
    """Pydantic's error location as the dotted key a Hydra override names. The dataset's discriminator tag is
    pydantic's, not a key; list positions are written `[i]`."""
    parts: list[str] = []
    for i, part in enumerate(loc):
        if i == 1 and loc[0] == "dataset" and part in DATASET_NAMES:
            continue
        if isinstance(part, int):
            parts[-1] += f"[{part}]"
        else:
            parts.append("_target_" if part == "target" else str(part))
    return ".".join(parts)


def _allowed(error: dict) -> str:
    """The description of the type that refused the value; pydantic's own wording where the type has none."""
    description = _description_at(error["loc"])
    if description:
        return description
    expected = error.get("ctx", {}).get("expected")
    return f"one of {expected}" if expected else error["msg"].removeprefix("Input should be ").removeprefix("Value error, ")


def _description_at(loc: tuple) -> str | None:
    """Walk the annotations along an error's location: model fields by name, dict values by key (a stage, a
    variant), list items by position, the dataset union by its tag."""
    annotation, description = Config, None
    for part in loc:
        annotation, description = _step(annotation, part)
        if annotation is None:
            return None
    return description


def _step(annotation, part):
    origin, args = get_origin(annotation), get_args(annotation)
    if origin is Annotated:
        return _step(args[0], part)
    if origin in (Union, UnionType):
        for arg in args:
            found = _step(arg, part)
            if found[0] is not None:
                return found
        return None, None
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        if isinstance(part, str) and part in annotation.model_fields:
            field = annotation.model_fields[part]
            return field.annotation, field.description
        extra = get_type_hints(annotation).get("__pydantic_extra__")
        if extra is not None and get_origin(extra) is dict:  # typed extras: Adaptation's stages
            return _value_type(get_args(extra)[1])
        tag = annotation.model_fields.get("name")
        return (annotation, None) if tag is not None and get_args(tag.annotation) == (part,) else (None, None)
    if origin is dict:
        return _value_type(args[1])
    if origin is list and isinstance(part, int):
        return _value_type(args[0])
    return None, None


def _value_type(annotation):
    """An item type, with the description its Annotated alias carries."""
    if get_origin(annotation) is Annotated:
        for meta in get_args(annotation)[1:]:
            if isinstance(meta, FieldInfo) and meta.description:
                return annotation, meta.description
    return annotation, None


def shown(value) -> str:
    """A value as it would be typed on the command line."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return "null"
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    return repr(value) if isinstance(value, str) else str(value)
