"""The settings schema: every field's bad values, generated from the schema itself, are one line naming the setting;
the cases users hit go through an entry point and stop before anything is loaded, recorded or cached."""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import functools
import io
import math
import os
import signal
import subprocess
import sys
import tempfile
from typing import Annotated, Any, Literal, Union, get_args, get_origin

import pytest
from omegaconf import OmegaConf
from pydantic import BaseModel
from pydantic.fields import FieldInfo

from helpers import store_overrides
from sustainable_ipa import schema
from sustainable_ipa.config import PROJECT_ROOT, compose
from sustainable_ipa.errors import UserError
from sustainable_ipa.search.space import PipelineChoice, StageChoice

# Configs whose fields together cover every model of the schema (the datasets and the cuda hardware add theirs).
VARIANTS = [[], ["dataset=coco", "dataset.root=/d", "dataset.annotations=/a.json"], ["dataset=video", "dataset.path=/v.mp4"],
            ["hardware=cuda"], ["dataset=audio-qa-sample"], ["dataset=sum-qa-sample"]]


# An existing folder where a file goes and an existing file where a folder goes, both writable: refused for what
# they are, not for access.
_PATHS = tempfile.TemporaryDirectory(prefix="schema-paths-")
A_FOLDER = _PATHS.name
A_FILE = os.path.join(_PATHS.name, "a-file")
open(A_FILE, "w").close()
WANTS_A_FILE = (schema._not_a_folder,)
WANTS_A_FOLDER = (schema._not_a_file, schema._local_writable)


def bad_values(annotation, metadata=()) -> list:
    """Values the type must refuse: the wrong type, out of its range, not finite or near float's limits, a folder
    where a file goes and the reverse."""
    origin, args = get_origin(annotation), get_args(annotation)
    if origin is Annotated:
        inner = [m for meta in args[1:] if isinstance(meta, FieldInfo) for m in meta.metadata]
        return bad_values(args[0], [*metadata, *inner, *[m for m in args[1:] if not isinstance(m, FieldInfo)]])
    if origin is Union:  # Optional[X]: X's bad values (None is allowed)
        return [v for arg in args if arg is not type(None) for v in bad_values(arg, metadata)]
    if origin is Literal:
        return ["bogus", 1]
    if origin is list:
        return ["not-a-list", *[[v] for v in bad_values(args[0])[:2]]] + \
            ([[]] if any(hasattr(m, 'min_length') for m in metadata) else [])
    if annotation is bool:
        return [2, "yes"]
    if annotation in (int, float):
        values = [True, "abc"] + ([1.5, sys.maxsize + 1, 10**30] if annotation is int else
                                  [math.inf, -math.inf, math.nan, sys.float_info.max, -sys.float_info.max, 1e300])
        for m in metadata:
            step = 1 if annotation is int else 0.5
            bound = {name: getattr(m, name) for name in ("ge", "gt", "le", "lt") if hasattr(m, name)}
            values += [bound["ge"] - step] if "ge" in bound else [bound["gt"]] if "gt" in bound else \
                [bound["le"] + step] if "le" in bound else [bound["lt"]] if "lt" in bound else []
        return values
    if annotation is str:
        values = [["a", "list"]]
        values += [""] if any(hasattr(m, 'min_length') for m in metadata) else []
        values += ["France"] if any(getattr(m, "pattern", None) for m in metadata) else []
        checks = {getattr(m, "func", None) for m in metadata}
        values += [A_FOLDER] if checks & set(WANTS_A_FILE) else []
        values += [A_FILE] if checks & set(WANTS_A_FOLDER) else []
        return values
    return []


def leaves(model: type[BaseModel], values: dict, prefix: str = ""):
    """(dotted setting, its annotation with metadata) for every field the config holds, models and dicts walked."""
    for name, field in model.model_fields.items():
        key = field.alias or name
        if key not in values:
            continue
        path, annotation = f"{prefix}{key}", field.annotation
        if field.discriminator:  # the dataset: the model its `name` picks
            value = values[key]
            model_ = next(m for m in get_args(annotation) if get_args(m.model_fields["name"].annotation) == (value["name"],))
            yield from leaves(model_, value, f"{path}.")
            continue
        yield from _walk(annotation, field.metadata, values[key], path)
    if model.model_config.get("extra") == "allow":  # typed extras: the adaptation's stages
        item = get_args(_extra_type(model))[1]
        for key in values:
            if key not in model.model_fields:
                yield from _walk(item, [], values[key], f"{prefix}{key}")


def _extra_type(model):
    from typing import get_type_hints

    return get_type_hints(model)["__pydantic_extra__"]


def _walk(annotation, metadata, value, path):
    origin, args = get_origin(annotation), get_args(annotation)
    if annotation is Any:  # a family's own settings (params, a variant's model): tests/families check theirs
        return
    if origin is Annotated and get_origin(args[0]) is dict:  # a dict with a length bound: walk its items
        yield from _walk(args[0], [], value, path)
    elif isinstance(annotation, type) and issubclass(annotation, BaseModel):
        yield from leaves(annotation, value, f"{path}.")
    elif origin is dict:
        for key, item in value.items():
            yield from _walk(args[1], [], item, f"{path}.{key}")
    else:
        yield path, Annotated[(annotation, *metadata)] if metadata else annotation


def generated_cases():
    cases, seen = [], set()
    for overrides in VARIANTS:
        values = OmegaConf.to_container(compose(overrides), resolve=True)
        for path, annotation in leaves(schema.Config, values):
            for value in bad_values(annotation):
                key = (path, repr(value))
                if key not in seen:
                    seen.add(key)
                    cases.append((overrides, path, value))
    return cases


CASES = generated_cases()


def test_every_field_of_the_schema_has_bad_values_to_try():
    """The generator reaches every setting: a field it cannot build bad values for would go untested."""
    values = OmegaConf.to_container(compose(), resolve=True)
    untested = [path for path, annotation in leaves(schema.Config, values) if not bad_values(annotation)]
    assert not untested
    assert len({path for _, path, _ in CASES}) > 80, len({path for _, path, _ in CASES})


def test_every_generated_bad_value_is_one_line_naming_the_setting():
    failures = []
    for overrides, path, value in CASES:
        values = copy.deepcopy(composed(tuple(overrides)))
        _set(values, path, value)
        try:
            schema.check_values(values)
            failures.append(f"{path}={value!r} accepted")
        except UserError as err:
            line = str(err)
            fix = "Fix: choose one of" if path == "dataset.name" else "Fix: pass " + path.partition("[")[0]
            if path not in line or fix not in line or "\n" in line:
                failures.append(f"{path}={value!r}: {line}")
    assert not failures, "\n".join(failures[:20])


@functools.cache
def composed(overrides: tuple) -> dict:
    return OmegaConf.to_container(compose(list(overrides)), resolve=True)


def _set(values: dict, path: str, value) -> None:
    *parents, last = path.split(".")
    for key in parents:
        values = values[key]
    values[last] = value


def test_the_check_reads_the_composed_config():
    """check_settings resolves interpolations and sees Hydra's values: the user's override reaches the check."""
    cfg = compose(["trial.rate_rps=-1"])
    with pytest.raises(UserError, match=r"^trial.rate_rps=-1 is not allowed"):
        schema.check_settings(cfg)
    with pytest.raises(UserError, match=r"cannot be resolved.*Fix: pass trial.rate_rps=") as err:
        schema.check_settings(compose(["trial.rate_rps=${oc.env:SIPA_NO_SUCH_VARIABLE}"]))
    assert "\n" not in str(err.value)


def test_the_shipped_configs_pass():
    for overrides in VARIANTS:
        schema.check_settings(compose(overrides))


def test_the_schema_names_the_choices_the_code_has():
    from sustainable_ipa.energy import factory
    from sustainable_ipa.search.objectives import OBJECTIVES
    from sustainable_ipa.search.samplers import make_sampler

    assert factory.METERS is schema.METERS
    assert set(schema.OBJECTIVES) == set(OBJECTIVES)
    for name in schema.SAMPLERS:
        make_sampler(name, seed=0)


# Cases users met (issue 17), through the entry point: one line, exit 2, the job's work never started.
USER_CASES = [
    ("hardware.pue=-1", "hardware.pue=-1"),
    ("hardware.estimate.idle_w=-20", "hardware.estimate.idle_w=-20"),
    ("trial.requests=true", "trial.requests=true"),
    ("trial.warmup=true", "trial.warmup=true"),
    ("trial.sla_s=inf", "trial.sla_s=inf"),
    ("trial.rate_rps=inf", "trial.rate_rps=inf"),
    ("energy.idle_s=-5", "energy.idle_s=-5"),
    ("energy.poll_interval_s=0", "energy.poll_interval_s=0"),
    ("adapt.max_cores=0", "adapt.max_cores=0"),
    ("adapt.mean_rps=-4", "adapt.mean_rps=-4"),
    ("energy.fallback=bogus", "energy.fallback='bogus'"),
    ("energy.carbon_intensity_g_per_kwh=abc", "energy.carbon_intensity_g_per_kwh='abc'"),
    ("hardware.pue=abc", "hardware.pue='abc'"),
    ("hardware.cores=abc", "hardware.cores='abc'"),
    ("energy.lock_path=/etc/hostname/energy.lock", "/etc/hostname is a file"),
    ("energy.idle_cache=/etc/hostname/idle.json", "/etc/hostname is a file"),
    ("profiling.cache_dir=/etc/hostname", "/etc/hostname is a file, and a folder goes here"),  # not lost profiles
    ("energy.idle_cache=/tmp", "/tmp is a folder, and a file goes here"),
    ("hardware.price_usd_per_core_hour=1.7e308", "hardware.price_usd_per_core_hour=1.7e+308"),
    ("adapt.load_scale=1e300", "adapt.load_scale=1e+300"),
    ("trial.requests=100000000000000000000", "trial.requests=100000000000000000000"),  # past what islice takes
    ("hardware.pue=1e9", "hardware.pue=1000000000.0"),
    ("trial.seed=-1", "trial.seed=-1"),
    ("adapt.step_s=0", "adapt.step_s=0"),
    ("adapt.step_s=-900", "adapt.step_s=-900"),
    ("adapt.duration_s=0", "adapt.duration_s=0"),
    ("search.n_trials=0", "search.n_trials=0"),
    ("+trial.reqests=5", "trial.reqests is not a setting"),
]


def test_user_cases_stop_at_the_entry_point(tmp_path):
    """All in one process, as `hydra_entry` runs them: exit 2, one line, `work` never called, nothing written."""
    from sustainable_ipa.cli import hydra_entry

    started = []
    handlers = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
    argv = sys.argv
    results = []
    try:
        for override, expected in USER_CASES:
            sys.argv = ["main.py", *store_overrides(tmp_path), f"profiling.cache_dir={tmp_path}/profiles",
                        override, f"hydra.run.dir={tmp_path}/hydra", "hydra.output_subdir=null"]
            stderr = io.StringIO()
            with contextlib.redirect_stderr(stderr), pytest.raises(SystemExit) as stopped:
                hydra_entry(started.append, from_mlflow=False)
            results.append((override, expected, stopped.value.code, stderr.getvalue()))
    finally:
        sys.argv = argv
        for sig, handler in handlers.items():
            signal.signal(sig, handler)
    for override, expected, code, err in results:
        lines = err.strip().splitlines()
        assert code == 2 and len(lines) == 1 and expected in lines[0] and "Fix:" in lines[0], (override, err)
    assert not started  # no work began: nothing loaded, profiled or recorded
    assert sorted(p.name for p in tmp_path.iterdir()) == ["hydra"] or not (tmp_path / "mlruns").exists()
    assert not (tmp_path / "energy.lock").exists() and not (tmp_path / "profiles").exists()


def test_every_entry_point_checks_the_schema(tmp_path):
    scripts = ["main.py", "search.py", "profiling.py", "adapt.py", "report.py"]
    started = {script: subprocess.Popen([sys.executable, str(PROJECT_ROOT / "src" / script), "trial.requests=0",
                                         *store_overrides(tmp_path)], cwd=tmp_path, text=True,
                                        stdout=subprocess.PIPE, stderr=subprocess.PIPE) for script in scripts}
    for script, process in started.items():
        _, err = process.communicate(timeout=180)
        assert process.returncode == 2, (script, err)
        assert err.strip().splitlines() == [
            "error: trial.requests=0 is not allowed: input should be greater than or equal to 1. Fix: pass "
            "trial.requests=<an integer in [1, 1e9]>"], script
    assert not (tmp_path / "mlruns").exists()


def test_the_schema_checks_the_knobs_a_search_or_adapter_choice_sets():
    """`schema.StageChoice` validates `adaptation.<stage>`, whose keys a `search.space.StageChoice` writes
    (`PipelineChoice.overrides`): the same knobs in the same order, and the space's defaults pass the schema."""
    assert list(schema.StageChoice.model_fields) == [f.name for f in dataclasses.fields(StageChoice)]
    choice = StageChoice("yolov5n", 1, 1, 1)
    schema.StageChoice(**dataclasses.asdict(choice))
    assert [key.removeprefix("detector.") for key in PipelineChoice(detector=choice).params()] == \
        list(schema.StageChoice.model_fields)
